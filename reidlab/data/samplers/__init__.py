"""Batch samplers for metric learning: P identities x K images per batch, deterministic and DDP-aware.

Every rank builds the same epoch plan from (seed, epoch) and keeps every ``world_size``-th batch, so ranks
see disjoint batches and the same number of them without any communication. ``EpochBatchSampler`` holds
that shared logic (sharding, ``set_epoch``, ``state_dict``); a subclass only writes ``plan(epoch)``.
"""

from .base import EpochBatchSampler, camera_round_robin, group_by_identity, identity_chunks, shard_batches
from .hard import HardBatchSampler
from .pk import PKSampler

__all__ = ["EpochBatchSampler", "HardBatchSampler", "PKSampler", "camera_round_robin", "group_by_identity",
           "identity_chunks", "shard_batches"]

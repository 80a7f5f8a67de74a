"""P identities x K images per batch: the random plan of metric learning (and of hard mining's warm-up)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import EpochBatchSampler, group_by_identity, identity_chunks


class PKSampler(EpochBatchSampler):
    """Batches of ``p`` identities x ``k`` images (dataset indices), for losses that need positives in a batch.

    Epoch plan: each identity's images are shuffled and cut into groups of K (identities with fewer than K
    images are filled up with replacement); batches draw P distinct identities at random among those with
    groups left, until fewer than P remain. An epoch thus visits (almost) every image once. ``pids`` is the
    identity of every dataset item, e.g. ``[r.pid for r in dataset.train]``. Given ``camids`` (camera of every
    item), the K images of an identity are camera-balanced: drawn round-robin over its cameras, as in the
    fast-reid setup of the AdaSP person rows.
    """

    def __init__(
        self,
        pids: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        camids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        self.images_of = group_by_identity(pids)
        if camids is not None and len(camids) != len(pids):
            raise ValueError(f"camids has {len(camids)} entries but pids has {len(pids)}; give one camera per item")
        self.cameras_of = None if camids is None else {
            pid: np.asarray(camids)[indices] for pid, indices in self.images_of.items()
        }
        if p > len(self.images_of):
            raise ValueError(
                f"p={p} identities per batch but the dataset has only {len(self.images_of)}; lower p "
                "(batch size = p * k) or use a larger training set"
            )
        self.p, self.k = p, k
        if len(self) == 0:
            raise ValueError(
                f"an epoch of {len(self.plan(0))} PxK batches cannot be shared by {self.world_size} ranks with "
                "drop_last=True; lower p or k, or use fewer ranks"
            )

    def plan(self, epoch: int) -> list[list[int]]:
        rng = self.generator(epoch)
        chunks = {
            pid: identity_chunks(indices, self.k, rng, None if self.cameras_of is None else self.cameras_of[pid])
            for pid, indices in self.images_of.items()
        }
        available = list(chunks)
        batches = []
        while len(available) >= self.p:
            picks = rng.choice(len(available), size=self.p, replace=False)
            batches.append([index for i in picks for index in chunks[available[i]].pop()])
            for i in sorted(picks, reverse=True):  # swap-remove exhausted identities, largest position first
                if not chunks[available[i]]:
                    available[i] = available[-1]
                    available.pop()
        return batches

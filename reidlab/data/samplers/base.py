"""The shared logic of reidlab's batch samplers: identity grouping, per-rank sharding, epoch plans."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def group_by_identity(pids: Sequence[int]) -> dict[int, list[int]]:
    """pid -> dataset indices of its images (indices in dataset order, pids in sorted order)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for index, pid in enumerate(pids):
        groups[int(pid)].append(index)
    return {pid: groups[pid] for pid in sorted(groups)}


def identity_chunks(
    indices: Sequence[int], k: int, rng: np.random.Generator, cameras: Sequence[int] | None = None
) -> list[list[int]]:
    """Shuffle one identity's images and cut them into groups of K (the leftover images are dropped).

    An identity with fewer than K images gives one group: all its images plus random repeats. With
    ``cameras`` (the camera of each image), the images are dealt round-robin over the identity's cameras in
    random order and group j takes every n-th of that order from position j (n groups), so the rarer
    cameras are spread over all groups instead of filling the first one.
    """
    indices = np.asarray(indices)
    indices = rng.permutation(indices) if cameras is None else indices[camera_round_robin(cameras, rng)]
    if len(indices) < k:
        return [rng.permutation(np.concatenate([indices, rng.choice(indices, k - len(indices), replace=True)])).tolist()]
    groups = len(indices) // k
    if cameras is None:
        return [indices[i * k : (i + 1) * k].tolist() for i in range(groups)]
    return [indices[j : groups * k : groups].tolist() for j in range(groups)]


def camera_round_robin(cameras: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """An order of positions 0..n-1 that takes one image per camera in turn (cameras and images shuffled)."""
    shuffled = rng.permutation(len(cameras))
    dealing_slot = {int(c): slot for slot, c in enumerate(rng.permutation(np.unique(cameras)))}
    slot = np.empty(len(shuffled), dtype=np.int64)
    turn = np.empty(len(shuffled), dtype=np.int64)  # images of the same camera dealt before this one
    dealt: dict[int, int] = defaultdict(int)
    for position, index in enumerate(shuffled):
        camera = int(cameras[index])
        slot[position], turn[position] = dealing_slot[camera], dealt[camera]
        dealt[camera] += 1
    return shuffled[np.lexsort((slot, turn))]


def shard_batches(batches: list[list[int]], rank: int, world_size: int, drop_last: bool = True) -> list[list[int]]:
    """This rank's share of a plan: every ``world_size``-th batch starting at ``rank``.

    ``drop_last`` drops the tail that would give ranks unequal counts; otherwise the plan is padded by
    repeating its first batches (as DistributedSampler does).
    """
    if drop_last:
        usable = len(batches) - len(batches) % world_size
        return batches[rank:usable:world_size]
    total = -(-len(batches) // world_size) * world_size
    padded = [batches[i % len(batches)] for i in range(total)] if batches else []
    return padded[rank::world_size]


class EpochBatchSampler(Sampler[list[int]]):
    """Base batch sampler: subclasses implement ``plan(epoch)``, the full list of batches for one epoch,
    deterministic given ``(self.seed, epoch)`` (use ``self.generator(epoch)``). This class shards it across
    ranks and caches it; a subclass whose plan depends on other inputs (e.g. classifier weights) calls
    ``clear_plan()`` when they change.
    """

    def __init__(self, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), rank, world_size, drop_last
        self.epoch = 0
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None
        self._skip = 0  # batches of the plan the next iteration leaves out (a mid-epoch resume)

    def plan(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def generator(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def clear_plan(self) -> None:
        self._cache = None

    def rank_batches(self) -> list[list[int]]:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, shard_batches(self.plan(self.epoch), self.rank, self.world_size, self.drop_last))
        return self._cache[1]

    def resume_epoch(self, batches: Sequence[Sequence[int]], skip: int = 0) -> None:
        """Take ``batches`` (this rank's plan, as saved) as the current epoch's plan, and leave its first ``skip``
        out of the next iteration: a run resumed mid-epoch continues the plan it had, which for a plan made from
        changing inputs (classifier weights) cannot be made again."""
        self._cache = ((self.seed, self.epoch), [[int(i) for i in batch] for batch in batches])
        self._skip = int(skip)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        yield from self.rank_batches()[skip:]

    def __len__(self) -> int:
        return len(self.rank_batches())

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"])
        self.clear_plan()  # a subclass's restored state (e.g. warm-up length) may change the plan

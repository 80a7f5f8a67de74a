"""PKSampler: batch structure, replacement, determinism, DDP shares and resume state."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from reidlab.data.samplers import PKSampler, shard_batches

# 12 identities with 1..12 images each (pids are raw and unordered on purpose)
PIDS = [pid for n, pid in enumerate([40, 3, 17, 8, 99, 23, 5, 61, 12, 30, 77, 2], start=1) for _ in range(n)]
P, K = 3, 4


def test_batch_structure_and_replacement_for_small_identities():
    sampler = PKSampler(PIDS, P, K, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    seen = Counter()
    for batch in batches:
        assert len(batch) == P * K and all(0 <= i < len(PIDS) for i in batch)
        counts = Counter(PIDS[i] for i in batch)
        assert len(counts) == P and set(counts.values()) == {K}
        for pid in counts:
            images = [i for i in batch if PIDS[i] == pid]
            available = PIDS.count(pid)
            # identities with >= K images: K distinct images; smaller ones: all their images, with repeats
            assert len(set(images)) == min(K, available)
        seen.update(batch)
    small = {pid for pid in set(PIDS) if PIDS.count(pid) < K}
    repeated = {PIDS[i] for i, c in seen.items() if c > 1}
    assert repeated <= small  # only small identities repeat images within an epoch
    assert all(PIDS[i] in small or c == 1 for i, c in seen.items())


def test_epoch_covers_every_full_group_once():
    sampler = PKSampler([i // 8 for i in range(8 * 6)], p=2, k=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 6  # 6 ids x 2 groups of 4 = 12 groups, 2 per batch
    assert sorted(i for b in batches for i in b) == list(range(48))


def test_deterministic_under_seed_and_epoch():
    first, second = PKSampler(PIDS, P, K, seed=7), PKSampler(PIDS, P, K, seed=7)
    assert list(first) == list(second)
    first.set_epoch(3)
    second.set_epoch(3)
    assert list(first) == list(second)
    epoch3 = list(first)
    first.set_epoch(4)
    assert list(first) != epoch3
    assert list(PKSampler(PIDS, P, K, seed=8)) != list(PKSampler(PIDS, P, K, seed=7))


@pytest.mark.parametrize("drop_last", [True, False])
def test_two_ranks_get_disjoint_equal_shares(drop_last):
    pids = [i // 5 for i in range(5 * 30)]  # 30 ids x 5 images -> 30 groups of 4 -> 10 batches of 3 ids
    p, k = 3, 4
    whole = PKSampler(pids, p, k, seed=2, world_size=1)
    ranks = [PKSampler(pids, p, k, seed=2, rank=r, world_size=3, drop_last=drop_last) for r in range(3)]
    for sampler in [whole, *ranks]:
        sampler.set_epoch(5)
    plan = list(whole)
    shares = [list(s) for s in ranks]
    assert len({len(s) for s in shares}) == 1 and len(ranks[0]) == len(shares[0])
    if drop_last:
        assert len(shares[0]) == len(plan) // 3
        flat = [i for share in shares for batch in share for i in batch]
        assert len(flat) == len(set(flat))  # no image shared between ranks
        interleaved = [share[i] for i in range(len(shares[0])) for share in shares]
        assert interleaved == plan[: len(interleaved)]  # rank r holds batches r, r + 3, r + 6, ...
    else:
        assert len(shares[0]) == -(-len(plan) // 3)
        assert {tuple(b) for share in shares for b in share} == {tuple(b) for b in plan}


def test_shard_batches_pads_by_wrapping():
    batches = [[0], [1], [2], [3], [4]]
    assert shard_batches(batches, 1, 2, drop_last=True) == [[1], [3]]
    assert shard_batches(batches, 1, 2, drop_last=False) == [[1], [3], [0]]


def test_state_dict_round_trip_resumes_the_same_epoch():
    sampler = PKSampler(PIDS, P, K, seed=11)
    sampler.set_epoch(6)
    state = sampler.state_dict()
    assert state == {"epoch": 6, "seed": 11}
    resumed = PKSampler(PIDS, P, K, seed=0)
    assert list(resumed) != list(sampler)
    resumed.load_state_dict(state)
    assert list(resumed) == list(sampler) and len(resumed) == len(sampler)


def test_camera_balanced_groups_span_the_cameras():
    # 20 identities with 3 images on each of cameras 0..3, in camera order
    pids = [pid for pid in range(20) for _ in range(12)]
    camids = [c for _ in range(20) for c in (0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3)]
    balanced = list(PKSampler(pids, 4, 4, seed=3, camids=camids))
    plain = list(PKSampler(pids, 4, 4, seed=3))
    assert len(balanced) == len(plain) and all(len(b) == 16 for b in balanced)

    def cameras_per_group(batches):
        groups = [[i for i in batch if pids[i] == pid] for batch in batches for pid in {pids[i] for i in batch}]
        return Counter(len({camids[i] for i in group}) for group in groups)

    # Dealt round-robin and taken with a stride, every group of K = 4 holds all 4 cameras; at random few do.
    assert set(cameras_per_group(balanced)) == {4}
    assert cameras_per_group(plain)[4] <= 0.5 * sum(cameras_per_group(plain).values())
    assert balanced == list(PKSampler(pids, 4, 4, seed=3, camids=camids))  # deterministic
    with pytest.raises(ValueError, match="one camera per item"):
        PKSampler(pids, 4, 4, camids=camids[:-1])


def test_clear_errors():
    with pytest.raises(ValueError, match="p=13 identities per batch but the dataset has only 12"):
        PKSampler(PIDS, 13, 2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(PIDS, P, K, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot be shared by 64 ranks"):
        PKSampler(PIDS, P, K, world_size=64)
    with pytest.raises(ValueError, match="p and k"):
        PKSampler(PIDS, P, 0)


def test_works_as_a_dataloader_batch_sampler():
    sampler = PKSampler(PIDS, P, K, seed=0)
    loader = DataLoader(torch.tensor(PIDS), batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(sampler)
    assert all(batch.shape == (P * K,) and len(set(batch.tolist())) == P for batch in batches)

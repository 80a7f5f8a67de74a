"""HardBatchSampler (HBReID hard batch mining): random P x K during warm-up, similar classes after."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.data.samplers import HardBatchSampler, PKSampler

NUM_CLUSTERS, CLUSTER_SIZE, IMAGES = 8, 4, 6  # 32 classes in 8 tight clusters of 4
P, K = 4, 3


def clustered_weights(seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """Classifier rows: cluster centre + small noise, so cosine similarity is high within a cluster only."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLUSTERS, 32, generator=g)
    rows = centres.repeat_interleave(CLUSTER_SIZE, dim=0)
    return rows + noise * torch.randn(rows.shape, generator=g)


def pids() -> list[int]:
    # interleaved, one class (2) with fewer than K images to exercise sampling with replacement
    labels = [c for _ in range(IMAGES) for c in range(NUM_CLUSTERS * CLUSTER_SIZE)]
    return [c for i, c in enumerate(labels) if c != 2 or i < 2 * NUM_CLUSTERS * CLUSTER_SIZE]


def cluster_purity(batches: list[list[int]], labels: list[int]) -> float:
    """Mean over batches of the largest share of classes from one cluster."""
    shares = []
    for batch in batches:
        classes = sorted({labels[i] for i in batch})
        clusters = np.bincount([c // CLUSTER_SIZE for c in classes], minlength=NUM_CLUSTERS)
        shares.append(clusters.max() / len(classes))
    return float(np.mean(shares))


def make(seed: int = 0, rank: int = 0, world_size: int = 1, warmup: int = 1) -> HardBatchSampler:
    sampler = HardBatchSampler(pids(), P, K, warmup_epochs=warmup, seed=seed, rank=rank, world_size=world_size)
    sampler.update_weights(clustered_weights())
    return sampler


def test_batch_structure_and_replacement_for_small_classes():
    labels = pids()
    sampler = make()
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        for batch in batches:
            assert len(batch) == P * K
            counts = np.bincount([labels[i] for i in batch])
            assert sorted(counts[counts > 0].tolist()) == [K] * P
    sampler.set_epoch(1)
    images_of_2 = [i for i, c in enumerate(labels) if c == 2]
    assert len(images_of_2) < K
    for batch in sampler:
        assert {i for i in batch if labels[i] == 2} <= set(images_of_2)


def test_random_during_warmup_then_same_cluster_batches():
    labels = pids()
    sampler = make(warmup=1)
    sampler.set_epoch(0)
    warmup_batches = list(sampler)
    assert warmup_batches == list(PKSampler(labels, P, K, seed=0))  # exactly the random plan
    # random draws of 4 classes out of 32: the largest same-cluster share is usually 1/4 or 1/2
    assert cluster_purity(warmup_batches, labels) < 0.6
    for epoch in (1, 2, 3):
        sampler.set_epoch(epoch)
        mined = list(sampler)
        assert len(mined) == len(warmup_batches)  # the epoch length does not change when mining starts
        assert cluster_purity(mined, labels) >= 0.85, epoch


def test_classes_follow_similarity_order_to_the_anchor():
    """Within a round, consecutive batches hold classes of non-increasing similarity to the anchor."""
    labels = pids()
    weights = clustered_weights()
    sampler = make()
    sampler.set_epoch(1)
    unit = torch.nn.functional.normalize(weights.double(), dim=1)
    first = list(sampler)[0]
    classes = sorted({labels[i] for i in first})
    # the first batch of the epoch holds the anchor and its P - 1 nearest classes
    sims = unit @ unit.T
    assert any(set(torch.argsort(-sims[a])[:P].tolist()) == set(classes) for a in classes)


def test_deterministic_under_seed_and_seed_matters():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for s in (a, b, c):
        s.set_epoch(2)
    assert list(a) == list(b)
    assert list(a) != list(c)
    a.set_epoch(3)
    assert list(a) != list(b)  # a new epoch draws a new anchor and new images


def test_ranks_share_one_plan_disjointly():
    single = make(world_size=1)
    single.set_epoch(1)
    plan = list(single)
    ranks = [make(rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    shares = [list(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == len(plan) // 2
    assert shares[0] == plan[0 : 2 * len(shares[0]) : 2] and shares[1] == plan[1 : 2 * len(shares[1]) : 2]
    assert not {tuple(b) for b in shares[0]} & {tuple(b) for b in shares[1]}


def test_state_dict_round_trip_and_weights_required():
    sampler = make()
    sampler.set_epoch(2)
    expected = list(sampler)
    state = sampler.state_dict()
    fresh = HardBatchSampler(pids(), P, K, warmup_epochs=5, seed=99)
    fresh.load_state_dict(state)
    with pytest.raises(RuntimeError, match="update_weights"):
        list(fresh)  # mining epoch without classifier weights
    fresh.update_weights(clustered_weights().numpy())
    assert list(fresh) == expected


def test_bad_inputs():
    with pytest.raises(ValueError, match="only"):
        HardBatchSampler(pids(), p=64, k=K)  # more identities per batch than the dataset has
    sampler = make()
    with pytest.raises(ValueError, match="row for every train pid"):
        sampler.update_weights(torch.randn(5, 32))
    with pytest.raises(ValueError, match="NaN"):
        sampler.update_weights(torch.full((32, 4), float("nan")))


def test_single_round_plan_is_one_round_with_every_class_once():
    """HBReID's literal plan: one anchor per epoch, classes sorted by similarity to it, consecutive groups of P,
    the short last group kept, each class exactly once per epoch."""
    labels = [c for c in pids() if c != 31]  # 31 classes: groups of 4 leave a short group of 3
    weights = clustered_weights()
    sampler = HardBatchSampler(labels, P, K, warmup_epochs=1, seed=0, plan="single_round")
    sampler.update_weights(weights)
    assert sampler.short_group_classes == 31 % P == 3
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(batches) == -(-31 // P) and len(batches[-1]) == 3 * K
    groups = [sorted({labels[i] for i in batch}) for batch in batches]
    assert sorted(c for group in groups for c in group) == list(range(31))
    unit = torch.nn.functional.normalize(weights.double()[:31], dim=1)
    anchor = next(a for a in groups[0] if set(torch.argsort(-(unit @ unit[a]))[:P].tolist()) == set(groups[0]))
    similarity = (unit @ unit[anchor]).numpy()
    # consecutive groups follow the similarity ranking to the one anchor of the epoch
    assert all(similarity[groups[g]].min() >= similarity[groups[g + 1]].max() - 1e-12 for g in range(len(groups) - 1))
    rounds = HardBatchSampler(labels, P, K, warmup_epochs=1, seed=0)  # the default keeps the random plan's length
    rounds.update_weights(weights)
    rounds.set_epoch(1)
    assert len(list(rounds)) == len(list(PKSampler(labels, P, K, seed=0))) > len(batches)
    with pytest.raises(ValueError, match="plan must be one of"):
        HardBatchSampler(labels, P, K, plan="design")


def test_hard_mining_at_100k_classes_needs_under_2_gb_beyond_the_weights():
    """100,000 identities x 2048-d classifier weights (0.8 GB as float32): ranking never forms C x C."""
    import tracemalloc

    num_classes = 100_000
    weights = torch.randn(num_classes, 2048, generator=torch.Generator().manual_seed(0))
    sampler = HardBatchSampler(np.repeat(np.arange(num_classes), 2), 16, 2, warmup_epochs=0, seed=0)
    tracemalloc.start()
    try:
        sampler.update_weights(weights)
        batches = sampler.mined_plan(epoch=0, num_batches=50)  # a round: one ranking of all classes
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**30, f"{peak / 2**30:.2f} GB"
    assert len(batches) == 50 and all(len(batch) == 32 for batch in batches)

"""Ranking metrics against a brute-force float64 reference (full stable sort, explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import evaluate_rank
from reidlab.evaluation import rank as rank_module


@pytest.fixture(params=["sparse", "dense"], autouse=True)
def placement(request, monkeypatch):
    """Run every test with both ways of placing gallery entries among the matches."""
    monkeypatch.setattr(rank_module, "DENSE_CANDIDATE_FRACTION", 1.0 if request.param == "sparse" else 0.0)
    return request.param


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Market-1501 protocol written out: stable sort, drop same pid+camera and junk, loop over matches."""
    distmat = np.asarray(distmat, dtype=np.float64)
    cmc_sum = np.zeros(max_rank)
    aps, inps, per_ap = [], [], []
    invalid = 0
    for i in range(distmat.shape[0]):
        order = sorted(range(distmat.shape[1]), key=lambda j: (distmat[i, j], j))
        kept = [j for j in order
                if g_pids[j] >= 0 and not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            invalid += 1
            per_ap.append(np.nan)
            continue
        hits, precisions, last = 0, [], 0
        for position, is_match in enumerate(matches, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / position)
                last = position
        first = matches.index(True) + 1
        for k in range(max_rank):
            cmc_sum[k] += 1.0 if first <= k + 1 else 0.0
        aps.append(sum(precisions) / hits)
        per_ap.append(aps[-1])
        inps.append(hits / last)
    valid = len(aps)
    return dict(cmc=cmc_sum / valid, mAP=float(np.mean(aps)), mINP=float(np.mean(inps)),
                num_valid_queries=valid, num_invalid_queries=invalid, AP=np.array(per_ap))


def random_problem(seed, num_query=23, num_gallery=61, num_ids=9, num_cams=3, levels=5, junk=True):
    """Quantized distances (many ties), single-camera identities, queries without valid matches, junk."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids + 2, num_query)  # ids >= num_ids never appear in the gallery
    g_pids = rng.integers(0, num_ids, num_gallery)
    if junk:
        g_pids[rng.random(num_gallery) < 0.1] = -1
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    single_cam = 0  # identity 0 is seen by camera 0 only: its camera-0 queries have no valid match
    g_camids[g_pids == single_cam] = 0
    q_camids[q_pids == single_cam] = 0
    distmat = rng.integers(0, levels, (num_query, num_gallery)).astype(np.float32) / levels
    distmat[rng.random(distmat.shape) < 0.3] -= 0.25  # some negative distances too
    return distmat, q_pids, g_pids, q_camids, g_camids


def assert_same_metrics(got, want):
    np.testing.assert_allclose(got["cmc"], want["cmc"], rtol=0, atol=1e-12)
    for key in ("mAP", "mINP"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    for key in ("num_valid_queries", "num_invalid_queries"):
        assert got[key] == want[key], key


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_rank", [1, 10, 80])
def test_evaluate_rank_matches_brute_force(seed, max_rank):
    problem = random_problem(seed, levels=[3, 7, 50][seed % 3])
    got = evaluate_rank(*problem, max_rank=max_rank, return_per_query=True)
    want = reference_rank(*problem, max_rank=max_rank)
    assert_same_metrics(got, want)
    np.testing.assert_allclose(got["AP"], want["AP"], atol=1e-12)
    assert len(got["cmc"]) == max_rank
    assert want["num_invalid_queries"] > 0  # the problem exercises invalid queries


def test_evaluate_rank_continuous_distances_and_many_matches():
    rng = np.random.default_rng(7)
    q_pids, g_pids = rng.integers(0, 3, 15), rng.integers(0, 3, 200)
    q_camids, g_camids = rng.integers(0, 2, 15), rng.integers(0, 2, 200)
    distmat = rng.normal(size=(15, 200))
    assert_same_metrics(evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=30),
                        reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, 30))


def test_cmc_tail_with_fewer_candidates_than_max_rank():
    # 3 gallery entries, max_rank 10: the tail is filled with the reached value, never garbage
    distmat = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3]])
    out = evaluate_rank(distmat, [0, 1], [0, 1, 2], [0, 0], [1, 1, 1], max_rank=10)
    np.testing.assert_array_equal(out["cmc"], [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1])
    assert out["mAP"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_ties_follow_gallery_order():
    distmat = np.zeros((1, 4))
    out = evaluate_rank(distmat, [5], [1, 5, 2, 5], [0], [1, 1, 1, 1], max_rank=4, return_per_query=True)
    assert out["first_match_rank"][0] == 2
    assert out["AP"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert out["mINP"] == pytest.approx(2 / 4)


def test_evaluate_rank_accepts_readonly_memmap_and_torch(tmp_path):
    distmat, *labels = random_problem(3)
    path = tmp_path / "dist.npy"
    np.save(path, distmat)
    mm = np.load(path, mmap_mode="r")
    want = evaluate_rank(distmat, *labels)
    assert_same_metrics(evaluate_rank(mm, *labels), want)
    readonly = distmat.copy()
    readonly.setflags(write=False)
    assert_same_metrics(evaluate_rank(readonly, *labels), want)
    assert_same_metrics(evaluate_rank(torch.from_numpy(distmat), *[torch.as_tensor(x) for x in labels]), want)
    np.testing.assert_array_equal(np.load(path), distmat)


@pytest.mark.parametrize("case, message", [
    ("nan", "NaN"), ("length", "q_pids"), ("empty_query", "empty"), ("empty_gallery", "empty"),
    ("no_valid", "no query has a correct match"), ("shape", "2-D"), ("max_rank", "max_rank"),
])
def test_evaluate_rank_bad_input(case, message):
    distmat = np.zeros((2, 3))
    labels = dict(q_pids=[0, 1], g_pids=[0, 1, 2], q_camids=[0, 0], g_camids=[1, 1, 1])
    kwargs = {}
    if case == "nan":
        distmat[1, 2] = np.nan
    elif case == "length":
        labels["q_pids"] = [0, 1, 2]
    elif case == "empty_query":
        distmat, labels["q_pids"], labels["q_camids"] = np.zeros((0, 3)), [], []
    elif case == "empty_gallery":
        distmat, labels["g_pids"], labels["g_camids"] = np.zeros((2, 0)), [], []
    elif case == "no_valid":
        labels["g_camids"] = [0, 0, 0]
    elif case == "shape":
        distmat = np.zeros(6)
    elif case == "max_rank":
        kwargs["max_rank"] = 0
    with pytest.raises(ValueError, match=message):
        evaluate_rank(distmat, **labels, **kwargs)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_nan_is_rejected(half):
    distmat = torch.zeros(2, 3, dtype=half)
    distmat[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(distmat, [0, 1], [0, 1, 2], [0, 0], [1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_signed_zero_and_infinite_distances_tie_like_numbers(dtype):
    # -0.0 == +0.0 and inf == inf: ties keep gallery order, whatever the dtype
    if dtype == np.int32:
        distmat = np.array([[0, 0, 3, 3]], dtype=dtype)
    else:
        distmat = np.array([[0.0, -0.0, np.inf, np.inf]], dtype=dtype)
    out = evaluate_rank(distmat, [5], [1, 5, 2, 5], [0], [1, 1, 1, 1], max_rank=4, return_per_query=True)
    assert out["first_match_rank"][0] == 2
    assert out["AP"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)

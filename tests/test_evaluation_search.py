"""Feature-level evaluation equals the dense path; cosine == squared Euclidean; query expansion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import average_query_expansion, evaluate, evaluate_rank, re_ranking

from test_evaluation import placement, reference_rank  # noqa: F401  (placement: run both placements)


def grid_problem(seed, num_query=30, num_gallery=90, num_ids=10, dim=16, unit=True):
    """Features on a grid so every dot product is exact in float32: rankings are full of exact ties.

    unit: 4 entries of +-1/2 per vector (norm exactly 1); otherwise small integers.
    """
    rng = np.random.default_rng(seed)

    def feats(n):
        if not unit:
            return rng.integers(-2, 3, (n, dim)).astype(np.float32)
        x = np.zeros((n, dim), dtype=np.float32)
        for row in x:
            row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
        return x

    protos = feats(num_ids)
    q_pids, g_pids = rng.integers(0, num_ids + 1, num_query), rng.integers(0, num_ids, num_gallery)
    q, g = feats(num_query), feats(num_gallery)
    q[: num_query // 2] = protos[np.minimum(q_pids[: num_query // 2], num_ids - 1)]  # identity structure
    g[: num_gallery // 2] = protos[g_pids[: num_gallery // 2]]
    g_pids[rng.random(num_gallery) < 0.08] = -1
    q_cams, g_cams = rng.integers(0, 3, num_query), rng.integers(0, 3, num_gallery)
    return q, g, q_pids, g_pids, q_cams, g_cams


def assert_identical(got, want):
    np.testing.assert_array_equal(got["cmc"], want["cmc"])
    np.testing.assert_array_equal(got["AP"], want["AP"])
    np.testing.assert_array_equal(got["INP"], want["INP"])
    assert (got["mAP"], got["mINP"], got["num_valid_queries"], got["num_invalid_queries"]) == (
        want["mAP"], want["mINP"], want["num_valid_queries"], want["num_invalid_queries"])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_features_path_equals_dense_path(seed, chunk_size):
    q, g, *labels = grid_problem(seed)
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    dense_cos = 1 - q64 @ g64.T
    dense_euc = ((q64[:, None] - g64[None]) ** 2).sum(-1)
    want = evaluate_rank(dense_cos, *labels, max_rank=30, return_per_query=True)
    assert_identical(want, evaluate_rank(dense_euc, *labels, max_rank=30, return_per_query=True))
    ref = reference_rank(dense_cos, *labels, max_rank=30)
    np.testing.assert_allclose(want["AP"], ref["AP"], atol=1e-12)
    for metric in ("cosine", "euclidean"):
        got = evaluate(q, g, *labels, max_rank=30, metric=metric, chunk_size=chunk_size, return_per_query=True)
        assert_identical(got, want)


def test_unnormalized_features():
    q, g, *labels = grid_problem(4, unit=False)
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    dense_euc = ((q64[:, None] - g64[None]) ** 2).sum(-1)
    got = evaluate(torch.from_numpy(q), torch.from_numpy(g), *labels, metric="euclidean", chunk_size=5,
                   return_per_query=True)
    assert_identical(got, evaluate_rank(dense_euc, *labels, return_per_query=True))
    # cosine normalizes: scaling features by powers of two changes nothing (normalization is exact)
    q_unit, g_unit, *labels = grid_problem(5)
    scale_q = 2.0 ** (np.arange(len(q_unit))[:, None] % 5 - 2)
    scale_g = 2.0 ** (np.arange(len(g_unit))[:, None] % 4)
    got = evaluate(q_unit * scale_q, g_unit * scale_g, *labels, metric="cosine", return_per_query=True)
    assert_identical(got, evaluate(q_unit, g_unit, *labels, metric="euclidean", return_per_query=True))


def test_continuous_features_cosine_equals_euclidean():
    rng = np.random.default_rng(3)
    q = torch.nn.functional.normalize(torch.randn(40, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    g = torch.nn.functional.normalize(torch.randn(300, 32, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = rng.integers(0, 5, 40), rng.integers(0, 5, 300), rng.integers(0, 2, 40), rng.integers(0, 2, 300)
    a = evaluate(q, g, *labels, metric="cosine", chunk_size=9, return_per_query=True)
    b = evaluate(q, g, *labels, metric="euclidean", chunk_size=9, return_per_query=True)
    assert_identical(a, b)
    dense = (1 - q.double() @ g.double().T).numpy()
    want = evaluate_rank(dense, *labels)
    assert a["mAP"] == pytest.approx(want["mAP"], abs=1e-9)


@pytest.mark.parametrize("case, message", [
    ("nan", "NaN"), ("dim", "dimension"), ("length", "g_pids"), ("metric", "metric"), ("empty", "empty"),
    ("chunk", "chunk_size"), ("no_valid", "no query"),
])
def test_evaluate_bad_input(case, message):
    q, g, q_pids, g_pids, q_cams, g_cams = grid_problem(0)
    kwargs = {}
    if case == "nan":
        g[3, 0] = np.nan
    elif case == "dim":
        g = g[:, :8]
    elif case == "length":
        g_pids = g_pids[:-1]
    elif case == "metric":
        kwargs["metric"] = "hamming"
    elif case == "empty":
        q, q_pids, q_cams = q[:0], q_pids[:0], q_cams[:0]
    elif case == "chunk":
        kwargs["chunk_size"] = 0
    elif case == "no_valid":
        g_pids = g_pids + 100
    with pytest.raises(ValueError, match=message):
        evaluate(q, g, q_pids, g_pids, q_cams, g_cams, **kwargs)


def reference_aqe(x, database, k, alpha, exclude_self):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    database = database / np.linalg.norm(database, axis=1, keepdims=True)
    out = []
    for i, row in enumerate(x):
        sims = database @ row
        order = [j for j in np.argsort(-sims, kind="stable") if not (exclude_self and j == i)][:k]
        total = row + sum(max(sims[j], 0.0) ** alpha * database[j] for j in order)
        out.append(total / np.linalg.norm(total))
    return np.array(out)


@pytest.mark.parametrize("k, alpha", [(1, 0.0), (3, 3.0), (6, 1.5)])
def test_average_query_expansion(k, alpha):
    rng = np.random.default_rng(k)
    q, g = rng.normal(size=(12, 8)), rng.normal(size=(40, 8))
    q_exp, g_exp = average_query_expansion(torch.from_numpy(q), torch.from_numpy(g), k=k, alpha=alpha,
                                           expand_gallery=True)
    np.testing.assert_allclose(q_exp.numpy(), reference_aqe(q, g, k, alpha, False), atol=1e-10)
    np.testing.assert_allclose(g_exp.numpy(), reference_aqe(g, g, k, alpha, True), atol=1e-10)
    _, g_plain = average_query_expansion(torch.from_numpy(q), torch.from_numpy(g), k=k, alpha=alpha)
    np.testing.assert_allclose(g_plain.numpy(), g / np.linalg.norm(g, axis=1, keepdims=True), atol=1e-12)


def test_evaluate_with_query_expansion():
    q, g, q_pids, g_pids, q_cams, g_cams = grid_problem(1)
    keep = g_pids >= 0  # junk takes no part in the expansion
    qe = dict(k=2, alpha=1.0, expand_gallery=True)
    q_exp, g_exp = average_query_expansion(torch.from_numpy(q), torch.from_numpy(g[keep]), **qe)
    got = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, query_expansion=qe, return_per_query=True)
    assert_identical(got, evaluate(q_exp, g_exp, q_pids, g_pids[keep], q_cams, g_cams[keep], return_per_query=True))
    # re-ranking keeps junk in its graph: normalized, not expanded
    g_full = torch.nn.functional.normalize(torch.from_numpy(g), dim=1)
    g_full[torch.from_numpy(keep)] = g_exp
    got = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, rerank=True, query_expansion=qe, return_per_query=True)
    dense = re_ranking(q_exp, g_full)
    assert_identical(got, evaluate_rank(dense, q_pids, g_pids, q_cams, g_cams, return_per_query=True))
    with pytest.raises(ValueError, match="k="):
        average_query_expansion(torch.from_numpy(q), torch.from_numpy(g), k=1000)

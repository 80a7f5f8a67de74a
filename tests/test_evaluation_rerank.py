"""k-reciprocal re-ranking against a direct dense implementation of the authors' algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import evaluate, evaluate_rank, re_ranking


def dense_re_ranking(q, g, k1, k2, lambda_value):
    """The CVPR 2017 release's algorithm, dense N x N, float64, loops as in the original code."""
    feat = np.concatenate([q, g]).astype(np.float64)
    query_num, all_num = len(q), len(feat)
    sq = (feat ** 2).sum(1)
    distmat = sq[:, None] + sq[None, :] - 2 * feat @ feat.T
    original_dist = np.transpose(distmat / np.max(distmat, axis=0))
    V = np.zeros_like(original_dist)
    initial_rank = np.argsort(original_dist, kind="stable")
    for i in range(all_num):
        forward = initial_rank[i, :k1 + 1]
        backward = initial_rank[forward, :k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for candidate in reciprocal:
            half = int(np.around(k1 / 2)) + 1
            cand_forward = initial_rank[candidate, :half]
            cand_backward = initial_rank[cand_forward, :half]
            cand_reciprocal = cand_forward[np.where(cand_backward == candidate)[0]]
            if len(np.intersect1d(cand_reciprocal, reciprocal)) > 2 / 3 * len(cand_reciprocal):
                expansion = np.append(expansion, cand_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(all_num):
            V_qe[i] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.zeros(all_num)
        nonzero = np.where(V[i] != 0)[0]
        for j in nonzero:
            temp_min[inv_index[j]] += np.minimum(V[i, j], V[inv_index[j], j])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    final = jaccard * (1 - lambda_value) + original_dist * lambda_value
    return final[:query_num, query_num:]


def clustered(seed, num_query=20, num_gallery=70, num_ids=8, dim=16, spread=0.6):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    q_pids, g_pids = rng.integers(0, num_ids, num_query), rng.integers(0, num_ids, num_gallery)
    q = centers[q_pids] + spread * rng.normal(size=(num_query, dim))
    g = centers[g_pids] + spread * rng.normal(size=(num_gallery, dim))
    return q, g, q_pids, g_pids


@pytest.mark.parametrize("seed, k1, k2, lambda_value", [
    (0, 20, 6, 0.3), (1, 10, 3, 0.5), (2, 6, 1, 0.0), (3, 4, 8, 1.0), (4, 30, 6, 0.3), (5, 13, 2, 0.2),
])
def test_re_ranking_matches_dense_original(seed, k1, k2, lambda_value):
    q, g, _, _ = clustered(seed, num_query=15 + 5 * seed, num_gallery=60 + 10 * seed)
    want = dense_re_ranking(q, g, k1, k2, lambda_value)
    got = re_ranking(q, g, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=7, block_size=[2048, 16, 33][seed % 3])
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert (want == 1 - lambda_value + 0 * want).sum() < want.size or lambda_value == 0  # not all-far


def test_re_ranking_float32_features_and_chunking():
    q, g, _, _ = clustered(11)
    want = dense_re_ranking(q, g, 20, 6, 0.3)
    for chunk, block in ((None, 2048), (1, 7), (13, 20)):
        got = re_ranking(torch.from_numpy(q).float(), torch.from_numpy(g).float(), chunk_size=chunk, block_size=block)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_re_ranking_exact_ties_do_not_depend_on_block_size():
    # binary features: many exactly tied distances between different images; ties go by index as in the
    # reference's stable argsort, whatever blocks the neighbour search runs in
    feats = np.random.default_rng(0).integers(0, 2, size=(60, 6)).astype(np.float64)
    q, g = feats[:10], feats[10:]
    want = re_ranking(q, g, k1=6, k2=3, block_size=2048)
    np.testing.assert_allclose(want, dense_re_ranking(q, g, 6, 3, 0.3), atol=1e-5, rtol=0)
    for block in (16, 7):
        np.testing.assert_array_equal(re_ranking(q, g, k1=6, k2=3, block_size=block), want)


def test_evaluate_rerank_equals_dense_path():
    q, g, q_pids, g_pids = clustered(5, num_query=25, num_gallery=90)
    rng = np.random.default_rng(0)
    q_cams, g_cams = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    g_pids = g_pids.copy()
    g_pids[::17] = -1  # junk: ranked out after re-ranking over the full gallery
    for chunk in (4, None):
        dense = re_ranking(q, g, k1=12, k2=4, lambda_value=0.3, chunk_size=chunk)
        want = evaluate_rank(dense, q_pids, g_pids, q_cams, g_cams, max_rank=20, return_per_query=True)
        got = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, max_rank=20, rerank=True, chunk_size=chunk,
                       rerank_kwargs=dict(k1=12, k2=4, lambda_value=0.3), return_per_query=True)
        np.testing.assert_array_equal(got["cmc"], want["cmc"])
        np.testing.assert_array_equal(got["AP"], want["AP"])
        assert got["mINP"] == want["mINP"]


def test_re_ranking_bad_input():
    q, g, _, _ = clustered(0)
    with pytest.raises(ValueError, match="k1"):
        re_ranking(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="dimension"):
        re_ranking(q, g[:, :3])
    bad = q.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        re_ranking(bad, g)
    with pytest.raises(ValueError, match="non-empty"):
        re_ranking(q[:0], g)


def test_block_selection_keeps_the_smallest_by_distance_then_index():
    from reidlab.evaluation.rerank import _smallest_by_distance_then_index

    g = torch.Generator().manual_seed(0)
    dist = torch.randint(0, 4, (50, 30), generator=g).double()  # many exact ties
    for k in (1, 5, 30):
        values, columns = _smallest_by_distance_then_index(dist, 100, k)
        for row in range(50):
            order = sorted(range(30), key=lambda c: (dist[row, c].item(), c))[:k]
            assert sorted(columns[row].tolist()) == [c + 100 for c in sorted(order)], (k, row)
            assert torch.equal(values[row], dist[row, columns[row] - 100])


def test_kept_query_distances_equal_recomputed_ones():
    # re_ranking reads the query x gallery distances the neighbour pass kept (and writes its output over
    # them); evaluate(rerank=True) recomputes them per chunk: the same values up to the rounding of matrix
    # products of other shapes (the BLAS picks other kernels for a 9-row chunk than for a 2048 block)
    from reidlab.evaluation.rerank import KReciprocalReranker

    q, g, _, _ = clustered(7, num_query=40, num_gallery=150)
    q, g = torch.from_numpy(q).float(), torch.from_numpy(g).float()
    for block in (2048, 32):
        kept = re_ranking(q, g, chunk_size=9, block_size=block)
        reranker = KReciprocalReranker(q, g, chunk_size=9, block_size=block)
        assert reranker.query_distances is None
        recomputed = np.concatenate([out for _, out in reranker.iter_query_rows()])
        np.testing.assert_allclose(kept, recomputed, atol=1e-6, rtol=0)
        np.testing.assert_allclose(kept, dense_re_ranking(q.double().numpy(), g.double().numpy(), 20, 6, 0.3),
                                   atol=1e-5, rtol=0)

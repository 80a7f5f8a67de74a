"""GalleryIndex (faiss) against brute force: exact search, ties, errors, tuning, persistence, and top-K evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import GalleryIndex, evaluate


def clustered(num_ids=40, num_gallery=1500, num_query=120, dim=32, spread=0.8, seed=0):
    """ReID-like features: identity centres plus noise, with camera ids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)).astype(np.float32)
    g_pids, q_pids = rng.integers(0, num_ids, num_gallery), rng.integers(0, num_ids, num_query)
    g = centres[g_pids] + spread * rng.normal(size=(num_gallery, dim)).astype(np.float32)
    q = centres[q_pids] + spread * rng.normal(size=(num_query, dim)).astype(np.float32)
    return q, g, q_pids, g_pids, rng.integers(0, 4, num_query), rng.integers(0, 4, num_gallery)


def brute_force(q, g, k, metric):
    """Top k by (distance, index), in float64."""
    q, g = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        distance = 1 - q @ g.T
    else:
        distance = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(g)), distance.shape), distance), axis=1)[:, :k]
    return np.take_along_axis(distance, order, 1), order


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_flat_search_is_exact_for_numpy_and_torch_inputs(metric):
    q, g, *_ = clustered()
    expected_d, expected_i = brute_force(q, g, 10, metric)
    for as_input in (np.asarray, torch.from_numpy):
        before = g.copy()
        index = GalleryIndex("flat", metric).add(as_input(g))
        distances, ids = index.search(as_input(q), 10)
        np.testing.assert_array_equal(g, before)  # the caller's features are left as they were
        assert len(index) == len(g) and index.nbytes >= g.nbytes
        np.testing.assert_array_equal(ids, expected_i)
        np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)


def test_exact_ties_go_to_the_lower_gallery_index_and_short_galleries_are_padded():
    g = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)  # three copies of one vector
    distances, ids = GalleryIndex("flat").add(g).search(np.array([[1, 0]], np.float32), 6)
    assert ids.tolist() == [[0, 2, 3, 1, -1, -1]] and np.isinf(distances[0, 4:]).all()


def test_bad_input_is_named():
    q, g, *_ = clustered()
    with pytest.raises(ValueError, match="unknown index kind 'lsh'"):
        GalleryIndex("lsh")
    with pytest.raises(ValueError, match=r"takes \['M', 'efConstruction', 'efSearch'\], not \['nprobe'\]"):
        GalleryIndex("hnsw", nprobe=4)
    index = GalleryIndex("flat").add(g)
    with pytest.raises(ValueError, match="queries have dimension 16 but the index holds 32-d"):
        index.search(q[:, :16], 5)
    with pytest.raises(ValueError, match=r"must be trained before adding: call \.train"):
        GalleryIndex("ivf", nlist=8).add(g)
    with pytest.raises(ValueError, match="needs at least 64 training vectors, got 20"):
        GalleryIndex("ivf", nlist=64).train(g[:20])
    with pytest.raises(ValueError, match="needs at least 256 training vectors"):
        GalleryIndex("ivfpq", nlist=4).train(g[:100])
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="queries hold NaN or Inf in 1 row"):
        index.search(bad, 5)
    with pytest.raises(ValueError, match="the index is empty"):
        GalleryIndex("flat").search(q, 5)


@pytest.mark.parametrize("kind, params", [("ivf", {"nlist": 16}), ("hnsw", {}),
                                          ("ivfpq", {"nlist": 8, "nbits": 6})])
def test_tune_reaches_the_target_recall_and_save_load_keeps_the_index(kind, params, tmp_path):
    q, g, *_ = clustered()
    index = GalleryIndex(kind, **params)
    if index.needs_training:
        index.train(g)
    index.add(g)
    point = index.tune(q, target_recall=0.95)
    exact = GalleryIndex("flat").add(g).search(q, 1)[1][:, 0]
    recall = (index.search(q, 1)[1][:, 0] == exact).mean()
    assert point["recall_at_1"] >= 0.95 and recall == pytest.approx(point["recall_at_1"]), point
    assert index.search_knob in point and point[index.search_knob] == index.params[index.search_knob]
    loaded = GalleryIndex.load(index.save(tmp_path / "gallery.npz"))
    assert loaded.params == index.params and len(loaded) == len(index) and loaded.dim == 32
    np.testing.assert_array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])


def test_faiss_threads_follow_torch():
    import faiss

    q, g, *_ = clustered()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        GalleryIndex("flat").add(g).search(q, 3)
        assert faiss.omp_get_max_threads() == 1
        GalleryIndex("flat", threads=2).add(g).search(q, 3)
        assert faiss.omp_get_max_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_top_k_evaluation_equals_the_exact_one_when_every_match_is_within_k():
    q, g, q_pids, g_pids, q_cams, g_cams = clustered()
    g_pids = g_pids.copy()
    g_pids[::50] = -1  # junk: left out of the index evaluate fills, mapped out of a full one
    exact = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, return_per_query=True)
    whole = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, index=GalleryIndex("flat"), top_k=len(g),
                     return_per_query=True)
    for key in ("mAP", "mINP", "num_valid_queries"):
        assert whole[key] == pytest.approx(exact[key], abs=1e-12), key
    np.testing.assert_allclose(whole["cmc"], exact["cmc"])
    np.testing.assert_array_equal(whole["first_match_rank"], exact["first_match_rank"])
    # A filled index over the whole gallery, junk included, gives the same numbers.
    prefilled = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, index=GalleryIndex("flat").add(g), top_k=len(g))
    assert prefilled["mAP"] == pytest.approx(exact["mAP"], abs=1e-12)
    # Top 20: AP loses the matches beyond rank 20; the CMC up to 20 is unchanged.
    top20 = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, index=GalleryIndex("flat"), top_k=20,
                     return_per_query=True)
    assert top20["top_k"] == 20 and top20["mAP"] < exact["mAP"]
    np.testing.assert_allclose(top20["cmc"][:20], exact["cmc"][:20])
    complete = exact["num_matches"] > 0
    within = exact["first_match_rank"][complete] <= 20
    assert (top20["first_match_rank"][complete][within] == exact["first_match_rank"][complete][within]).all()
    with pytest.raises(ValueError, match="rerank=True or an index"):
        evaluate(q, g, q_pids, g_pids, q_cams, g_cams, index=GalleryIndex("flat"), rerank=True)
    with pytest.raises(ValueError, match="the index holds 10 images but the gallery has 1500"):
        evaluate(q, g, q_pids, g_pids, q_cams, g_cams, index=GalleryIndex("flat").add(g[:10]))


def test_evaluate_retrieved_scores_any_ranked_lists_like_the_dense_evaluator():
    from reidlab.evaluation import evaluate_rank, evaluate_retrieved

    q, g, q_pids, g_pids, q_cams, g_cams = clustered(num_gallery=400, num_query=50)
    g_pids = g_pids.copy()
    g_pids[::17] = -1
    distances = brute_force(q, g, len(g), "cosine")
    dense = np.empty((len(q), len(g)))
    np.put_along_axis(dense, distances[1], distances[0], 1)
    expected = evaluate_rank(dense, q_pids, g_pids, q_cams, g_cams)
    got = evaluate_retrieved(distances[1], q_pids, g_pids, q_cams, g_cams)
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-12) and got["top_k"] == len(g)
    np.testing.assert_allclose(got["cmc"], expected["cmc"])
    with pytest.raises(ValueError, match=r"ids must be \[num_query, k\]"):
        evaluate_retrieved(distances[1][0], q_pids, g_pids, q_cams, g_cams)

"""GalleryIndex (faiss) against brute force: exact search, ties, errors, tuning, persistence, and top-K evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import GalleryIndex, evaluate, evaluate_retrieved, fitted_distractors, operating_points


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
        GalleryIndex("ivfpq", nlist=4, nbits=8).train(g[:100])
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="queries hold NaN or Inf in 1 row"):
        index.search(bad, 5)
    with pytest.raises(ValueError, match="the index is empty"):
        GalleryIndex("flat").search(q, 5)


@pytest.mark.parametrize("kind, params", [("ivf", {"nlist": 16}), ("hnsw", {}),
                                          ("ivfpq", {"nlist": 8, "nbits": 6}), ("ivfpq", {"nlist": 8})])
def test_tune_reaches_the_target_recall_and_save_load_keeps_the_index(kind, params, tmp_path):
    q, g, *_ = clustered()
    index = GalleryIndex(kind, **params)
    if index.needs_training:
        index.train(g)
    index.add(g)
    point = index.tune(q, target_recall=0.95, k=10)  # recall@1 of top-10 searches (ivfpq re-scores 10 x k)
    exact = GalleryIndex("flat").add(g).search(q, 1)[1][:, 0]
    recall = (index.search(q, 10)[1][:, 0] == exact).mean()
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


def test_codes_only_ivfpq_is_compressed_and_tunes_against_a_given_reference():
    q, g, *_ = clustered()
    flat = GalleryIndex("flat").add(g)
    for nbits in (4, 8):  # 4: SIMD "fast scan" codes; 8: the generic scan
        codes = GalleryIndex("ivfpq", nlist=4, nbits=nbits, refine=1, m=8).train(g).add(g)
        assert codes.nbytes < flat.nbytes / 2
        with pytest.raises(ValueError, match="keeps only compressed codes"):
            codes.tune(q)
        point = codes.tune(q, target_recall=0.1, reference=flat)  # 4 bytes a vector: the top-1 image is hard
        assert point["recall_at_1"] >= 0.1 and point["refine"] == 1 and point["nprobe"] <= 4


def test_operating_points_measure_each_knob_value_against_exact_search():
    q, g, q_pids, g_pids, q_cams, g_cams = clustered()
    exact_ids = GalleryIndex("flat").add(g).search(q, 20)[1]
    flat_point, = operating_points(GalleryIndex("flat").add(g), q, q_pids, g_pids, q_cams, g_cams, exact_ids, top_k=20)
    assert flat_point["recall_at_1"] == 1.0 and flat_point["recall_at_10"] == 1.0
    assert flat_point["rank1"] == pytest.approx(evaluate_retrieved(exact_ids, q_pids, g_pids, q_cams, g_cams)["cmc"][0])
    ivf = GalleryIndex("ivf", nlist=16).train(g).add(g)
    points = operating_points(ivf, q, q_pids, g_pids, q_cams, g_cams, exact_ids, values=[1, 16], top_k=20)
    assert [p["nprobe"] for p in points] == [1, 16] and ivf.params["nprobe"] == 16
    assert points[0]["recall_at_1"] < points[1]["recall_at_1"] == 1.0  # all 16 lists: exact again
    assert points[1]["rank1"] == flat_point["rank1"] and points[1]["mAP_at_k"] == flat_point["mAP_at_k"]


def test_fitted_distractors_keep_the_gallery_geometry_and_never_match():
    rng = np.random.default_rng(0)
    dim, num_ids = 16, 300
    spread = np.linspace(0.2, 2.0, dim)  # anisotropic centres: the fit must keep their covariance
    centres = rng.normal(size=(num_ids, dim)) * spread
    g_pids = np.repeat(np.arange(num_ids), 6)
    g_cams = rng.integers(0, 5, len(g_pids))
    g = centres[g_pids] + 0.3 * rng.normal(size=(len(g_pids), dim))
    feats, pids, cams = fitted_distractors(g, g_pids, g_cams, 6000, seed=1, normalize=False)
    assert feats.shape == (6000, dim) and feats.dtype == np.float32
    assert pids.min() == num_ids and set(np.unique(cams)) <= set(np.unique(g_cams))
    again = fitted_distractors(g, g_pids, g_cams, 6000, seed=1, normalize=False)
    np.testing.assert_array_equal(again[0], feats)
    new_centres = np.stack([feats[pids == p].mean(0) for p in np.unique(pids)])
    # per-axis spread of the new centres follows the real one (the residual mean adds ~0.3 / sqrt(6))
    np.testing.assert_allclose(new_centres.std(0), np.hypot(spread, 0.3 / np.sqrt(6)), rtol=0.2)
    within = feats - new_centres[np.searchsorted(np.unique(pids), pids)]
    # real residuals (0.3 noise less its identity mean: x sqrt(5/6)), less the distractor identity mean again
    assert np.linalg.norm(within, axis=1).mean() == pytest.approx(0.3 * 5 / 6 * np.sqrt(dim), rel=0.1)
    normalised = fitted_distractors(g, g_pids, g_cams, 50)[0]
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 identities"):
        fitted_distractors(g[:3], [0, 1, 2], [0, 0, 0], 10)

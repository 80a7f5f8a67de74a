"""The retrieval notebook's pages (reidlab.explore.retrieval, reidlab.viz.retrieval): clustered features searched
exactly and through each index kind, knobs tuned on the validation queries and scored on the test queries, the
near-exact answer, the figure and the metrics; and one tiny trained run's features."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from reidlab import engine, study
from reidlab.explore import ExploredRun
from reidlab.explore.retrieval import (
    NEAR_EXACT_COLUMNS,
    SearchFeatures,
    check_kinds,
    compare_indexes,
    exact_search,
    fastest_near_exact,
    run_features,
    search_summary,
    use_threads,
    with_fitted_distractors,
    write_retrieval_metrics,
)
from reidlab.viz.retrieval import trade_off_figure

from test_notebooks import tiny_overrides

KINDS = ["ivf", "ivfpq", "hnsw"]


def clustered(num_ids=40, per_id=15, dim=32, seed=0) -> SearchFeatures:
    """Identity centres plus noise: two queries per identity from camera 0, the gallery from cameras 1-3, and
    validation queries that are copies of gallery images (found by any index at its cheapest setting)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)).astype(np.float32)
    g_pids, q_pids = np.repeat(np.arange(num_ids), per_id), np.repeat(np.arange(num_ids), 2)
    gallery = centres[g_pids] + 0.8 * rng.normal(size=(len(g_pids), dim)).astype(np.float32)
    query = centres[q_pids] + 0.8 * rng.normal(size=(len(q_pids), dim)).astype(np.float32)
    return SearchFeatures("last.pt", query, gallery, q_pids, g_pids, np.zeros(len(q_pids), np.int64),
                          rng.integers(1, 4, len(g_pids)), gallery[:50].copy())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Searches on one thread (GalleryIndex follows torch's count), as the notebook test runs them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def grown():
    features = with_fitted_distractors(clustered(), 1500, seed=1)
    return features, exact_search(features, 100)


@pytest.fixture(scope="module")
def comparison(grown):
    return compare_indexes(*grown, KINDS, 0.99)


def brute_force_rank1(features: SearchFeatures, gallery_size: int) -> float:
    """Rank-1 under the Market protocol (the query's identity seen by its camera left out) in the first
    ``gallery_size`` gallery images, by cosine similarity in float64."""
    q = features.query / np.linalg.norm(features.query, axis=1, keepdims=True)
    g = features.gallery[:gallery_size] / np.linalg.norm(features.gallery[:gallery_size], axis=1, keepdims=True)
    g_pids, g_camids = features.g_pids[:gallery_size], features.g_camids[:gallery_size]
    hits = []
    for i, similarity in enumerate(q.astype(np.float64) @ g.T.astype(np.float64)):
        kept = ~((g_pids == features.q_pids[i]) & (g_camids == features.q_camids[i]))
        if (g_pids[kept] == features.q_pids[i]).any():
            hits.append(g_pids[kept][np.argmax(similarity[kept])] == features.q_pids[i])
    return float(np.mean(hits))


def test_check_kinds_refuses_exact_and_unknown_kinds(grown):
    check_kinds(KINDS)
    for kinds in (["ivf", "flat"], ["annoy"]):
        with pytest.raises(ValueError, match=r"choose approximate kinds from \['hnsw', 'ivf', 'ivfpq'\]"):
            check_kinds(kinds)
    with pytest.raises(ValueError, match=r"kinds \['flat'\]"):
        compare_indexes(*grown, ["flat"], 0.99)


def test_use_threads_sets_torch_threads_and_zero_means_all_cores():
    try:
        assert use_threads(2) == 2 == torch.get_num_threads()
        assert use_threads(0) == torch.get_num_threads() >= 1
    finally:
        torch.set_num_threads(1)


def test_distractors_are_appended_new_identities():
    base = clustered()
    features = with_fitted_distractors(base, 1500, seed=1)
    assert features.num_distractors == 1500 and features.num_test_gallery == len(base.gallery)
    assert len(features.gallery) == len(features.g_pids) == len(features.g_camids) == len(base.gallery) + 1500
    assert np.array_equal(features.gallery[:len(base.gallery)], base.gallery)
    assert (features.g_pids[len(base.gallery):] > base.g_pids.max()).all()
    assert features.size_text == "2,100 gallery images (1,500 distractors), 80 queries"
    assert np.array_equal(with_fitted_distractors(base, 1500, seed=1).gallery, features.gallery)  # seeded
    assert base.num_distractors == 0 and len(base.gallery) == 600, "the run's features are left as they were"


def test_exact_search_alone_and_with_distractors_against_brute_force(grown):
    features, exact = grown
    assert exact.k == 100 and exact.point["recall_at_1"] == 1.0
    assert exact.alone["cmc"][0] == pytest.approx(brute_force_rank1(features, features.num_test_gallery))
    assert exact.point["rank1"] == pytest.approx(brute_force_rank1(features, len(features.gallery)), abs=1e-4)
    assert exact.point["rank1"] < exact.alone["cmc"][0], "these distractors take some first places"
    g = features.gallery / np.linalg.norm(features.gallery, axis=1, keepdims=True)
    q = features.query / np.linalg.norm(features.query, axis=1, keepdims=True)
    nearest = np.argsort(-(q.astype(np.float64) @ g.T), axis=1, kind="stable")[:, :100]
    assert exact.ids.shape == (80, 100) and np.array_equal(exact.ids[:, 0], nearest[:, 0])
    assert (exact.ids >= features.num_test_gallery).any(), "the distractors are searched"
    assert exact_search(clustered(num_ids=10, per_id=4), 100).k == 40, "a list never longer than the gallery"
    lines = search_summary("runs/x", features, exact).splitlines()
    assert lines[0].startswith("last.pt of runs/x: 80 queries, 600 gallery images of 32-d features; rank-1 ")
    assert "with 1,500 fitted distractors (2,100 images)" in lines[1] and "exact flat search" in lines[1]
    assert lines[2] == "validation queries for tuning: 50 training-split images"


def test_knobs_are_tuned_on_the_validation_queries_and_scored_on_the_test_queries(grown, comparison):
    features, exact = grown
    # copies of gallery images are found in their own inverted list: the cheapest nprobe reaches the target ...
    ivf = comparison.tuned["ivf"]
    assert ivf["nprobe"] == 1 and ivf["tried"] == {"nprobe=1": 1.0}
    # ... while the test queries at that setting miss some exact answers: the test numbers are the test queries'
    points = comparison.points.set_index(["kind", "knob"])
    assert ivf["test"]["recall_at_1"] == points.loc[("ivf", "nprobe=1"), "recall_at_1"] < 0.99
    # tuned on the test queries themselves, the knob comes out higher: the validation queries set it above
    on_test = compare_indexes(dataclasses.replace(features, tuning=features.query), exact, ["ivf"], 0.99)
    assert on_test.tuned["ivf"]["nprobe"] > 1 and on_test.tuned["ivf"]["test"]["recall_at_1"] >= 0.99
    assert set(comparison.tuned) == set(KINDS) and "refine" in comparison.tuned["ivfpq"]
    assert [line.split(":")[0] for line in comparison.lines] == KINDS
    assert "to recall@1 1.000 on the validation queries; on the test queries recall@1 " in comparison.lines[0]


def test_points_follow_each_knob_and_are_set_against_exact_search(grown, comparison):
    exact = grown[1]
    points = comparison.points
    nlist = int(4 * np.sqrt(2100))
    assert list(points[points["kind"] == "ivf"]["knob"]) == [f"nprobe={v}" for v in (1, 2, 4, 8, 16, 32, 64, 128)
                                                            if v <= nlist]
    assert list(points[points["kind"] == "hnsw"]["knob"]) == [f"efSearch={v}" for v in (8, 16, 32, 64, 128, 256)]
    assert np.allclose(points["speedup"], points["queries_per_s"] / exact.point["queries_per_s"])
    assert np.allclose(points["rank1_loss_points"], 100 * (exact.point["rank1"] - points["rank1"]))
    assert (points["index_bytes"] > 0).all() and points["recall_at_1"].between(0, 1).all()
    widest = points[(points["kind"] == "ivf") & (points["knob"] == "nprobe=128")].iloc[0]
    assert widest["recall_at_1"] == 1.0 and widest["rank1"] == exact.point["rank1"]


def test_fastest_near_exact_reads_the_curve_per_kind():
    points = pd.DataFrame([
        {"kind": "ivf", "knob": "nprobe=1", "queries_per_s": 900.0, "rank1_loss_points": 3.0},
        {"kind": "ivf", "knob": "nprobe=4", "queries_per_s": 500.0, "rank1_loss_points": 1.0},
        {"kind": "ivf", "knob": "nprobe=8", "queries_per_s": 300.0, "rank1_loss_points": 0.0},
        {"kind": "hnsw", "knob": "efSearch=8", "queries_per_s": 800.0, "rank1_loss_points": 1.5},
    ]).assign(speedup=lambda p: p["queries_per_s"] / 100, rank1=0.9, mAP_at_k=0.5, recall_at_1=0.98, index_bytes=1)
    table, answer = fastest_near_exact(points, ["hnsw", "ivf"], {"queries_per_s": 100.0})
    assert list(table.columns) == NEAR_EXACT_COLUMNS and list(table["knob"]) == ["nprobe=4"]
    assert answer.splitlines() == [
        "the fastest point within 1 rank-1 point of exact search (100 queries/s), per kind (picked on the test "
        "queries: a reading of the curve, not a tuned setting):",
        "  ivf: 1.0 rank-1 points below exact at 5.0x its speed (nprobe=4, recall@1 0.980)",
        "  hnsw: none measured"]
    none, answer = fastest_near_exact(points[points["kind"] == "hnsw"], ["hnsw"], {"queries_per_s": 100.0})
    assert none.empty and answer.endswith("  hnsw: none measured")


def test_trade_off_figure_puts_exact_search_beside_each_kind(grown, comparison):
    exact = grown[1]
    fig = trade_off_figure(comparison.points, exact.point, exact.k, grown[0].size_text)
    try:
        assert fig._suptitle.get_text() == "2,100 gallery images (1,500 distractors), 80 queries"
        assert [ax.get_ylabel() for ax in fig.axes] == ["rank-1", "mAP@100"]
        for ax, metric in zip(fig.axes, ("rank1", "mAP_at_k")):
            assert ax.get_xscale() == "log" and len(ax.get_lines()) >= len(KINDS)
            star = ax.collections[-1].get_offsets()
            assert np.allclose(star, [[exact.point["queries_per_s"], exact.point[metric]]])
            assert {t.get_text() for t in ax.get_legend().get_texts()} >= {*KINDS, "exact (flat)"}
    finally:
        plt.close(fig)


def test_metrics_are_written_where_the_run_folder_says(grown, comparison, tmp_path):
    features, exact = grown
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "retrieval_trade_off.png").write_bytes(b"png")
    metrics = write_retrieval_metrics(tmp_path, "runs/x", features, exact, comparison)
    written = json.loads(engine.RunDir(tmp_path).metrics_path.read_text())
    assert written == json.loads(json.dumps(metrics, default=float))
    assert metrics["figures"] == ["retrieval_trade_off.png"] and metrics["checkpoint"] == "last.pt"
    assert (metrics["num_query"], metrics["num_gallery"], metrics["distractors"], metrics["dim"]) == (80, 600, 1500, 32)
    assert metrics["top_k"] == 100 and metrics["tuning_queries"] == 50 and metrics["threads"] == 1
    assert metrics["rank1_alone"] == exact.alone["cmc"][0] and metrics["exact"]["recall_at_1"] == 1.0
    assert len(metrics["points"]) == len(comparison.points) and set(metrics["tuned"]) == set(KINDS)


def test_run_features_are_the_last_checkpoints_with_training_images_to_tune_on(tmp_path, synth_root):
    run_dir = study.finished_run(None, tmp_path, "synth_cpu", tiny_overrides(synth_root), 0, 1, str(synth_root), "cpu",
                                 True, training_log=False)
    features = run_features(run_dir, 20, seed=3)
    run = ExploredRun(run_dir, progress=False)
    assert features.checkpoint == "last.pt" and features.num_distractors == 0
    assert np.array_equal(features.query, run.features().query.numpy())
    assert np.array_equal(features.gallery, run.features().gallery.numpy())
    assert np.array_equal(features.g_pids, run.g_pids) and np.array_equal(features.q_camids, run.q_camids)
    assert np.array_equal(features.tuning, run.train_features(20, seed=3).features.numpy())
    assert len(features.tuning) == 20 and not np.array_equal(features.tuning, run_features(run_dir, 20, seed=4).tuning)

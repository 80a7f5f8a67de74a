"""The pages of notebooks/class_similarity.ipynb as package functions (reidlab.explore.classes, reidlab.viz.classes):
the runs trained or reused, the classifier weights per drawn epoch, their similarity by family, hard against random
batches, the scene-removal table and its answer, the metrics written; each checked against a brute-force answer on
tiny runs or hand-made weights."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from reidlab import engine
from reidlab.data.synth import train_identities
from reidlab.explore.classes import (
    BatchComparison,
    ClassWeights,
    SceneRemoval,
    class_similarity_runs,
    compare_batches,
    drawn_class_weights,
    epoch_maps,
    scene_reading,
    scene_removal,
    similarity_answer,
    similarity_summary,
    write_class_similarity_metrics,
)
from reidlab.viz.classes import batches_figure, class_umap_figure, scene_invariance_figure

from test_notebooks import tiny_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_root):
    """A tiny hard-batch run and one with scene removal (confusion), trained here; and what training printed."""
    out = tmp_path_factory.mktemp("class_similarity")
    printed: list[str] = []
    run_dir, scene_runs = class_similarity_runs(None, {}, ["confusion"], out, "synth_cpu", tiny_overrides(synth_root),
                                                0, 2, str(synth_root), "cpu", True, print_fn=printed.append)
    return SimpleNamespace(out=out, run_dir=run_dir, scene_runs=scene_runs, printed=printed)


@pytest.fixture(scope="module")
def weights(runs):
    return drawn_class_weights(runs.run_dir, 3)


def hand_made_weights(families=None) -> ClassWeights:
    """8 classes in two tight clusters (0-3 near e1, 4-7 near e2), 4 train images each, P = 4, K = 2."""
    rng = np.random.default_rng(0)
    w = np.zeros((8, 6))
    w[:4, 0], w[4:, 1] = 1.0, 1.0
    w += 0.05 * rng.standard_normal(w.shape)
    train = [SimpleNamespace(pid=c) for c in range(8) for _ in range(4)]
    config = SimpleNamespace(sampler=SimpleNamespace(p=4, k=2))
    return ClassWeights({5: w}, families, config, SimpleNamespace(train=train))


def test_runs_are_trained_with_hard_batches_and_reused(runs):
    assert runs.run_dir == runs.out / "run_hm" and runs.scene_runs == {"confusion": runs.out / "run_hm_sr_confusion"}
    base, scene = engine.RunDir(runs.run_dir).config(), engine.RunDir(runs.scene_runs["confusion"]).config()
    assert base.sampler.name == scene.sampler.name == "hard" and not base.scene.enabled
    assert scene.scene.enabled and scene.scene.objective == "confusion"
    assert list(engine.RunDir(runs.run_dir).epoch_checkpoints()) == [1, 2]
    metrics = engine.RunDir(runs.run_dir).metrics()
    assert runs.printed[0] == (f"run_hm (hard batch mining, 2 epochs) in {runs.run_dir}: mAP {metrics['mAP']:.1%}, "
                               f"rank-1 {metrics['rank1']:.1%}")
    assert runs.printed[1].startswith("run_hm_sr_confusion (hard batch mining, scene removal (confusion), 2 epochs)")
    printed: list[str] = []  # given runs are read, not trained, and nothing is printed
    again = class_similarity_runs(runs.run_dir, {"confusion": runs.scene_runs["confusion"]}, ["confusion"],
                                  runs.out / "elsewhere", "synth_cpu", {}, 0, 2, None, "cpu", True,
                                  print_fn=printed.append)
    assert again == (runs.run_dir, runs.scene_runs) and printed == []


def test_drawn_class_weights_are_the_checkpoints_classifier_rows(runs, weights):
    assert sorted(weights.by_epoch) == [1, 2] and weights.last_epoch == 2
    assert list(drawn_class_weights(runs.run_dir, 2).by_epoch) == [1, 2]
    for epoch in (1, 2):
        model = engine.load_trained(runs.run_dir, engine.RunDir(runs.run_dir).checkpoint(epoch)).model
        np.testing.assert_array_equal(weights.by_epoch[epoch], model.classifier_weight().detach().numpy())
    assert not np.allclose(weights.by_epoch[1], weights.by_epoch[2])
    entries = train_identities(weights.dataset)
    assert weights.families == [entries[c]["family"] for c in range(24)]
    assert weights.summary() == f"24 classes, weight dim {weights.last.shape[1]}; epochs drawn: [1, 2]"


def test_a_run_without_epoch_checkpoints_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it with save_every=1"):
        drawn_class_weights(tmp_path, 3)


def test_similarity_summary_by_family_is_the_brute_force_one():
    families = ["a", "a", "b", "b", "a", "c", "c", "b"]  # mixed across the two clusters
    classes = hand_made_weights(families)
    summary = similarity_summary(classes)
    w = classes.last / np.linalg.norm(classes.last, axis=1, keepdims=True)
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j]
    same = [w[i] @ w[j] for i, j in pairs if families[i] == families[j]]
    other = [w[i] @ w[j] for i, j in pairs if families[i] != families[j]]
    assert summary["classes"] == 8
    assert summary["mean_class_similarity"] == pytest.approx(np.mean([w[i] @ w[j] for i, j in pairs]))
    assert summary["mean_similarity_same_family"] == pytest.approx(np.mean(same))
    assert summary["mean_similarity_other_family"] == pytest.approx(np.mean(other))
    nearest = [max((j for j in range(8) if j != i), key=lambda j: w[i] @ w[j]) for i in range(8)]
    assert summary["nearest_class_same_family"] == pytest.approx(np.mean([families[i] == families[n]
                                                                         for i, n in enumerate(nearest)]))
    members = [sum(f == families[i] for f in families) - 1 for i in range(8)]
    assert summary["nearest_class_same_family_chance"] == pytest.approx(np.mean(members) / 7)


def test_similarity_answer_follows_the_numbers():
    assert similarity_answer(similarity_summary(hand_made_weights()), 5) is None  # no families: no answer
    by_cluster = similarity_answer(similarity_summary(hand_made_weights(["a"] * 4 + ["b"] * 4)), 5)
    assert max(len(line) for line in by_cluster.splitlines()) <= 110  # wrapped for the notebook's output
    by_cluster = by_cluster.replace("\n", " ")
    assert by_cluster.startswith("Epoch 5: mean cos within a family") and "classifier does place" in by_cluster
    across = similarity_answer(similarity_summary(hand_made_weights(["a", "b"] * 4)), 5)
    assert "classifier does not place" in across.replace("\n", " ")


def test_hard_batches_hold_one_cluster_and_random_ones_mix():
    classes = hand_made_weights()
    batches = compare_batches(classes, seed=0)
    assert batches.p == 4 and batches.hard and len(batches.hard) == len(batches.random)
    assert all(c in ([0, 1, 2, 3], [4, 5, 6, 7]) for c in batches.hard), "a hard batch is one cluster"
    w = classes.last / np.linalg.norm(classes.last, axis=1, keepdims=True)
    sim = w @ w.T

    def mean_in_batch(batch_classes):
        return np.mean([np.mean([sim[i, j] for i in c for j in c if i != j]) for c in batch_classes])

    assert batches.hard_similarity == pytest.approx(mean_in_batch(batches.hard))
    assert batches.random_similarity == pytest.approx(mean_in_batch(batches.random))
    assert batches.hard_similarity > 0.9 > batches.random_similarity
    assert "hard batches do hold more similar classes" in batches.answer()
    assert batches.metrics() == {"in_batch_similarity_hard": batches.hard_similarity,
                                 "in_batch_similarity_random": batches.random_similarity}
    reversed_ = BatchComparison(batches.random, batches.hard, batches.random_similarity, batches.hard_similarity, 4)
    assert "hard batches do not hold more similar classes" in reversed_.answer()


def test_batches_on_the_trained_run_group_similar_classes(weights):
    batches = compare_batches(weights, seed=0)
    pids = {r.pid for r in weights.dataset.train}
    assert all(len(c) == batches.p and set(c) <= pids for c in batches.hard + batches.random)
    assert batches.hard_similarity > batches.random_similarity


def test_epoch_maps_are_seeded_and_in_epoch_order(weights):
    maps = epoch_maps(weights.by_epoch, seed=0)
    assert list(maps) == [1, 2] and all(xy.shape == (24, 2) for xy in maps.values())
    np.testing.assert_array_equal(epoch_maps(weights.by_epoch, seed=0)[2], maps[2])


def test_scene_reading_is_the_runs_adversary_on_its_raw_features(runs, weights):
    records = [r for r in list(weights.dataset.query) + list(weights.dataset.gallery) if r.pid > 0]
    scenes = np.array([r.sceneid for r in records])
    path = runs.scene_runs["confusion"]
    row, feats = scene_reading(path, records, seed=0)
    run = engine.load_trained(path)
    expected, _, _ = run.features(records, flip=False, normalize=False)
    torch.testing.assert_close(feats, expected)
    assert not torch.allclose(feats.norm(dim=1), torch.ones(len(feats)))  # raw, as the adversary saw them
    with torch.no_grad():
        predicted = run.model.scene_adversary.classifier(feats).argmax(1).numpy()
    assert row["adversary (test)"] == pytest.approx((predicted == scenes).mean())
    logged = [r["scene_accuracy"] for r in engine.read_metrics(path, "epoch") if "scene_accuracy" in r]
    assert row["adversary (train)"] == logged[-1] and 0 <= row["held-out probe"] <= 1
    assert row["mAP"] == engine.RunDir(path).metrics()["mAP"]
    without, _ = scene_reading(runs.run_dir, records, seed=0)
    assert np.isnan(without["adversary (test)"]) and np.isnan(without["adversary (train)"])


def test_scene_removal_table_answer_and_metrics(runs, weights):
    scene = scene_removal(weights.dataset, runs.run_dir, runs.scene_runs, seed=0)
    table = scene.table
    assert list(table.index) == ["no removal", "confusion"] and scene.objectives == ["confusion"]
    assert list(table.columns) == ["held-out probe", "adversary (test)", "adversary (train)", "scene chance", "mAP",
                                   "chance mAP"]
    records = [r for r in list(weights.dataset.query) + list(weights.dataset.gallery) if r.pid > 0]
    assert len(scene.scenes) == len(records) and set(scene.feature_maps) == {"no removal", "confusion"}
    assert scene.chance == pytest.approx(max(np.mean(scene.scenes == s) for s in set(scene.scenes)))
    assert (table["scene chance"] == scene.chance).all() and 0 < scene.map_chance["mAP"] < 1
    answer = scene.answer()
    base = table.loc["no removal"]
    assert answer.startswith(f"Held-out scene probe without scene removal: {base['held-out probe']:.0%}")
    assert f"confusion: probe {table.loc['confusion', 'held-out probe']:.0%}" in answer
    metrics = scene.metrics()
    assert list(metrics) == ["scene_probe_without_sr", "scene_chance", "mAP_without_sr", "chance_mAP", "chance_rank1",
                             "scene_probe_confusion", "scene_adversary_test_confusion",
                             "scene_adversary_train_confusion", "mAP_confusion"]
    assert metrics["mAP_confusion"] == engine.RunDir(runs.scene_runs["confusion"]).metrics()["mAP"]


def made_up_scene_removal(rows: dict[str, tuple[float, float]]) -> SceneRemoval:
    """A SceneRemoval of given (probe, adversary on test) per run, chance 0.5."""
    table = pd.DataFrame({"held-out probe": {k: v[0] for k, v in rows.items()},
                          "adversary (test)": {k: v[1] for k, v in rows.items()},
                          "adversary (train)": 0.5, "scene chance": 0.5, "mAP": 0.3, "chance mAP": 0.02})
    return SceneRemoval(table, 0.5, {"mAP": 0.02, "rank1": 0.04}, np.zeros(4, int), {})


def test_scene_answer_calls_a_fooled_adversary_and_the_lowest_probe():
    answer = made_up_scene_removal({"no removal": (0.9, float("nan")), "reverse": (0.8, 0.1),
                                    "moments": (0.6, 0.5)}).answer().replace("\n", " ")
    assert "reverse: probe 80% (-10%, 25% of the way to chance), adversary 10%" in answer
    assert "fooled, not beaten" in answer.split("moments:")[0] and "fooled" not in answer.split("moments:")[1]
    assert "moments: probe 60% (-30%, 75% of the way to chance)" in answer
    assert answer.endswith("Lowest probe: moments (+30% against no removal).")
    flat = made_up_scene_removal({"no removal": (0.9, float("nan")), "entropy": (0.89, 0.5)}).answer()
    assert flat.replace("\n", " ").endswith("No objective lowered the probe by more than 2 points on this run.")


def test_metrics_are_written_in_the_notebooks_order(tmp_path):
    classes = hand_made_weights(["a"] * 4 + ["b"] * 4)
    similarity, batches = similarity_summary(classes), compare_batches(classes)
    scene = made_up_scene_removal({"no removal": (0.9, float("nan")), "moments": (0.6, 0.5)})
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "hard_batches.png").write_bytes(b"png")
    metrics = write_class_similarity_metrics(tmp_path, similarity, batches, scene, tmp_path / "run_hm",
                                             {"moments": tmp_path / "run_hm_sr_moments"})
    assert json.loads(engine.RunDir(tmp_path).metrics_path.read_text()) == metrics
    keys = list(metrics)
    assert keys[:2] == ["classes", "mean_class_similarity"] and keys[-3:] == ["run_dir", "scene_run_dirs", "figures"]
    assert keys.index("nearest_class_same_family_chance") < keys.index("in_batch_similarity_hard") \
        < keys.index("scene_probe_without_sr") < keys.index("mAP_moments")
    assert metrics["scene_run_dirs"] == {"moments": str(tmp_path / "run_hm_sr_moments")}
    assert metrics["figures"] == ["hard_batches.png"] and metrics["scene_probe_moments"] == 0.6


def test_figures_draw_what_they_are_given():
    xy = np.random.default_rng(0).standard_normal((8, 2))
    fig = batches_figure(xy, {"hard": ([[0, 1, 2], [3, 4, 5], [6, 7, 0]], 0.75), "random": ([[0, 5, 7]], 0.25)}, 3,
                         shown=2)
    hard, random = fig.axes
    assert hard.get_title() == "hard: mean in-batch cos 0.75" and random.get_title() == "random: mean in-batch cos 0.25"
    assert len(hard.lines) == 6 and len(random.lines) == 3  # a spoke per class of each shown batch
    assert fig._suptitle.get_text() == "first 2 batches of an epoch, P = 3 classes each"
    plt.close(fig)
    fig = class_umap_figure({1: xy, 4: xy}, ["a"] * 4 + ["b"] * 4)
    assert [ax.get_title() for ax in fig.axes] == ["epoch 1", "epoch 4"]
    assert "identity family" in fig._suptitle.get_text()
    plt.close(fig)
    fig = scene_invariance_figure({"no removal": xy, "moments": xy}, [0, 1] * 4, {"no removal": 0.9, "moments": 0.55},
                                  0.5)
    assert [ax.get_title() for ax in fig.axes] == ["no removal: probe 90% (chance 50%)",
                                                   "moments: probe 55% (chance 50%)"]
    assert fig.axes[0].get_legend() is not None and fig.axes[1].get_legend() is None
    plt.close(fig)

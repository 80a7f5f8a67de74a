"""The positive_pairs page (reidlab.explore.pairs, reidlab.viz.pairs) on one tiny run of the shared SynthReID with
per-epoch checkpoints: the checkpoints drawn, the batch of most and least varied identities, the pairs selected
against brute force, the AdaSP weight of every identity, the statistics and the sentence they give, the figures (the
activation maps of the selected pairs among them) and the page's metrics (the notebook itself runs in
test_notebooks.py)."""

from __future__ import annotations

import copy
import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import ConstantInputWarning

from reidlab import engine, study, viz
from reidlab.evaluation import split_chance_level
from reidlab.explore import ActivationMap, pairs
from reidlab.explore.run import drawn_checkpoints
from reidlab.explore.tiles import COLOURS
from reidlab.losses.sparse_pairwise import adaptive_weight
from reidlab.viz.pairs import MapPanel, PairRow, activation_rows_figure, pair_rows_figure, weight_figure

from test_notebooks import tiny_overrides


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_root):
    """A tiny 2-epoch AdaSP run with a checkpoint per epoch."""
    return study.finished_run(None, tmp_path_factory.mktemp("pairs_page"), "synth_cpu", tiny_overrides(synth_root),
                              0, 2, str(synth_root), "cpu", True, training_log=False, save_every=1)


@pytest.fixture(scope="module")
def first(run_dir):
    return engine.load_trained(run_dir, engine.RunDir(run_dir).checkpoint(1))


@pytest.fixture(scope="module")
def batch(first):
    return pairs.draw_batch(first, 5, 4, seed=0)


@pytest.fixture(scope="module")
def selections(run_dir, batch):
    return pairs.select_pairs(run_dir, drawn_checkpoints(run_dir, 3), batch, temperature=0.05)


@pytest.fixture(scope="module")
def weights(run_dir, first):
    return pairs.identity_weights(run_dir, drawn_checkpoints(run_dir, 3), first, temperature=0.05, seed=0)


def test_drawn_checkpoints_spread_over_training_first_and_last_included(tmp_path, run_dir):
    checkpoints = engine.RunDir(tmp_path).checkpoint_dir
    checkpoints.mkdir()
    with pytest.raises(FileNotFoundError, match="save_every=1"):
        drawn_checkpoints(tmp_path, 3)
    for epoch in range(1, 11):
        engine.RunDir(tmp_path).checkpoint(epoch).write_bytes(b"")
    drawn = drawn_checkpoints(tmp_path, 3)
    assert list(drawn) == [1, 5, 10] and drawn[5] == engine.RunDir(tmp_path).checkpoint(5)
    assert list(drawn_checkpoints(tmp_path, 1)) == [1]
    assert list(drawn_checkpoints(run_dir, 3)) == [1, 2], "never more checkpoints than the run has"


def test_run_score_is_the_runs_own_map_next_to_its_chance_level(run_dir, first):
    score = pairs.run_score(run_dir, first)
    trained = engine.RunDir(run_dir).metrics()
    chance = split_chance_level(first.dataset)
    assert score == {"run_mAP": trained["mAP"], "chance_mAP": chance["mAP"], "chance_rank1": chance["rank1"]}
    line = pairs.run_score_line(run_dir, first, score)
    assert f"test mAP {trained['mAP']:.1%} (chance {chance['mAP']:.2%}) after 2 epochs" in line
    assert line.startswith(f"the analysed run ({run_dir.name}, synthreid)")


def test_the_batch_sets_the_most_varied_identities_against_the_least_varied(first, batch):
    variation = pairs.identity_variation(first)
    train = first.dataset.train
    assert set(variation) == {r.pid for r in train}
    levels = [variation[pid] for pid in batch.identities]
    assert len(batch.identities) == 5 and levels[:3] == sorted(levels[:3], reverse=True)
    assert max(levels[3:]) <= min(levels[:3]) and min(levels) == min(variation.values())
    for pid in batch.identities:
        own = [i for i in batch.indices if train[i].pid == pid]
        assert len(own) == min(4, sum(r.pid == pid for r in train)) == len(set(own))
    assert batch.labels.tolist() == [train[i].pid for i in batch.indices]
    assert batch.images.shape == (len(batch.indices), 3, *first.config.data.size)
    assert batch.indices == pairs.draw_batch(first, 5, 4, seed=0).indices, "the draw is seeded"
    large, small = batch.variation_groups()
    assert large == batch.identities[:2] and small == batch.identities[3:]


def test_off_synthreid_the_batch_is_drawn_at_random_and_not_split_by_variation(first):
    plain = copy.copy(first.dataset)  # a dataset that knows nothing of its identities beyond their images
    plain.identity_traits = lambda: None
    other = first._replace(dataset=plain)
    assert pairs.identity_variation(other) == {}
    drawn = pairs.draw_batch(other, 5, 4, seed=1)
    assert len(set(drawn.identities)) == 5 and drawn.variation == {}
    assert drawn.identities == pairs.draw_batch(other, 5, 4, seed=1).identities
    assert drawn.identities != pairs.draw_batch(other, 5, 4, seed=2).identities
    assert drawn.variation_groups() == ([], [])


def test_the_pairs_selected_are_the_hardest_and_least_hard_by_brute_force(run_dir, batch, selections):
    assert list(selections) == [1, 2]
    model = engine.load_trained(run_dir, engine.RunDir(run_dir).checkpoint(2), dataset=batch.run.dataset).model
    features = F.normalize(pairs.metric_features(model, batch.images), dim=1)
    similarity = features @ features.T
    records = {r["labels"]: r for r in selections[2].to_records()}
    rows = batch.rows(selections[2])
    assert len(rows) == len(batch.identities)
    for pid, row in zip(batch.identities, rows):
        own = [j for j, label in enumerate(batch.labels.tolist()) if label == pid]
        block = similarity[own][:, own].clone()
        block.fill_diagonal_(np.inf)
        a, b = np.unravel_index(int(block.argmin()), block.shape)
        record = records[pid]
        assert sorted(record["positive_pair"]) == sorted([own[a], own[b]])
        hardest_of_each = block.min(dim=1).values
        assert own.index(record["anchor"]) == int(hardest_of_each.argmax())
        w = adaptive_weight(torch.tensor(record["h"]), torch.tensor(record["l"]))
        assert record["w"] == pytest.approx(float(w))
        # the figure frames those images: SP-LH (green) anchor and positive, the SP-H pair red unless also SP-LH
        green = {own[i] for i, (colour, _) in row.highlights.items() if colour == COLOURS["sp-lh"]}
        red = {own[i] for i, (colour, _) in row.highlights.items() if colour == COLOURS["sp-h"]}
        assert green == {record["anchor"], record["anchor_positive"]}
        assert red == set(record["positive_pair"]) - green
        assert row.paths == [batch.run.dataset.train[batch.indices[j]].path for j in own]
        assert row.caption.startswith(f"id {pid}\nw = {record['w']:.2f}") and "variation" in row.caption


def test_every_training_identity_gets_its_weight_once_per_epoch(first, weights):
    assert list(weights.columns) == ["epoch", "pid", "w", "h", "l", "variation"]
    assert sorted(weights["epoch"].unique()) == [1, 2]
    for _, group in weights.groupby("epoch"):
        assert group["pid"].is_unique and set(group["pid"]) <= {r.pid for r in first.dataset.train}
        assert len(group) >= first.config.sampler.p
    assert weights["w"].between(0, 1).all()
    expected = adaptive_weight(torch.tensor(weights["h"].values), torch.tensor(weights["l"].values)).numpy()
    assert np.allclose(weights["w"], expected, atol=1e-6)
    variation = pairs.identity_variation(first)
    assert weights["variation"].tolist() == [variation[pid] for pid in weights["pid"]]


def frame(epochs, w, h, variation):
    return pd.DataFrame({"epoch": epochs, "pid": list(range(len(w))), "w": w, "h": h, "l": [0.5] * len(w),
                         "variation": variation})


def test_the_summary_and_its_sentence_are_the_numbers_measured():
    weights = frame([1, 1, 1, 2, 2, 2, 2], [0.1, 0.2, 0.0, 0.9, 0.6, 0.3, 0.0], [0.1, 0.2, -0.1, 0.8, 0.6, 0.4, -0.2],
                    [0.1, 0.5, 0.9, 0.1, 0.3, 0.6, 0.9])
    table = pairs.weight_table(weights)
    assert table.loc[2, "identities"] == 4 and table.loc[1, "w_mean"] == pytest.approx(0.1)
    assert table.loc[2, "share_w_zero"] == 0.25 and table.loc[2, "h_mean"] == pytest.approx(0.4)
    summary = pairs.weight_summary(weights)
    assert list(summary) == ["identities", "epochs_drawn", "mean_w_last", "frac_w_zero_last", "spearman_w_variation",
                             "spearman_p", "w_min_last", "w_max_last", "n_w_below_half_last", "n_w_zero_last",
                             "spearman_n", "answer"]
    assert summary["identities"] == 7 and summary["epochs_drawn"] == [1, 2] and summary["spearman_n"] == 4
    assert summary["mean_w_last"] == pytest.approx(0.45) and summary["frac_w_zero_last"] == 0.25
    assert summary["n_w_below_half_last"] == 2 and summary["n_w_zero_last"] == 1
    assert summary["spearman_w_variation"] == pytest.approx(-1.0)
    answer = summary["answer"]
    assert answer.startswith("At epoch 2, w ranges 0.000-0.900 (mean 0.450) over 4 identities; 2 have w < 0.5 and "
                             "1 have w = 0. From epoch 1 to 2 the mean w rose by 0.350 (mean h 0.067 -> 0.400).")
    assert "Spearman(w, variation) = -1.00" in answer and "n = 4): a significant negative association" in answer


def test_the_sentence_says_when_the_correlation_is_undefined_or_not_measured():
    with pytest.warns(ConstantInputWarning):
        constant = pairs.weight_summary(frame([3, 3, 3], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.1, 0.5, 0.9]))
    assert "undefined (w or the variation level is constant)" in constant["answer"]
    assert "From epoch" not in constant["answer"], "one epoch drawn: no change over training"
    unmeasured = pairs.weight_summary(frame([1, 1], [0.2, 0.7], [0.2, 0.7], [np.nan, np.nan]))
    assert "spearman_w_variation" not in unmeasured and "spearman_n" not in unmeasured
    assert "Spearman" not in unmeasured["answer"]


def test_the_page_figures(batch, selections, weights):
    def columns(identities):  # images per row, plus the caption
        return max(len(row.paths) for row in batch.rows(selections[2], identities)) + 1

    fig = pairs.epoch_figure(batch, selections[2], 2)
    assert len(fig.axes) == len(batch.identities) * columns(batch.identities)
    assert fig.get_suptitle() == "epoch 2: pairs selected per identity"
    side = pairs.variation_figure(batch, selections[2], 2, 4)
    large, small = batch.variation_groups()
    titles = [sub.get_suptitle() for sub in side.subfigs]
    assert titles == ["large intra-class variation", "small intra-class variation"]
    assert len(side.axes) == 2 * (columns(large) + columns(small)) and side.get_suptitle() == "epoch 2"
    summary = pairs.weight_summary(weights)
    hist = pairs.identity_weight_figure(weights, summary)
    assert len(hist.axes) == 3  # histogram, scatter and its colour bar
    assert f"Spearman {summary['spearman_w_variation']:.2f}" in hist.axes[1].get_title()
    assert [t.get_text() for t in hist.axes[0].get_legend().get_texts()][0].startswith("epoch 1 (mean")
    plt.close("all")


def test_the_activation_figure_maps_the_sp_h_and_sp_lh_pairs(run_dir, batch, selections):
    fig = pairs.activation_figure(run_dir, drawn_checkpoints(run_dir, 3)[2], batch, selections[2], 2, 3)
    large, small = batch.variation_groups()
    identities = large[:2] + small[:1]  # the most varied and the least varied identities
    assert fig.get_suptitle() == "epoch 2: Grad-CAM of the SP-H pair (red) and the SP-LH pair (green)"
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 4 * len(identities) and len(fig.axes) == 5 * len(identities)
    captions = [ax.texts[0].get_text() for ax in fig.axes if ax.texts]
    assert captions == [row.caption for row in batch.rows(selections[2], identities)]
    assert [ax.get_title() for ax in image_axes[:4]] == ["SP-H", "SP-H", "SP-LH A", "SP-LH P"]
    assert [ax.patches[0].get_edgecolor() for ax in image_axes[:4]] == \
        [matplotlib.colors.to_rgba(COLOURS[kind]) for kind in ("sp-h", "sp-h", "sp-lh", "sp-lh")]
    record = {r["labels"]: r for r in selections[2].to_records()}[identities[0]]
    first, second = (batch.run.dataset.train[batch.indices[j]] for j in record["positive_pair"])
    model = engine.load_trained(run_dir, engine.RunDir(run_dir).checkpoint(2), dataset=batch.run.dataset).model
    expected = ActivationMap(model, batch.run.config).overlays(first.path, second.path, batch.size)
    for ax, image in zip(image_axes[:2], expected):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), image)
    plt.close("all")


def test_viz_figures_take_plain_rows_and_arrays(synth_root):
    paths = [str(p) for p in sorted((synth_root / "bounding_box_train").glob("*.jpg"))[:3]]
    rows = [PairRow(paths, {0: ("#d62728", "SP-H")}, "id 0"), PairRow(paths[:2], {}, "id 1")]
    fig = pair_rows_figure(rows, "two rows", (64, 32))
    assert len(fig.axes) == 2 * 4 and fig.axes[3].texts[0].get_text() == "id 0"
    assert not fig.axes[6].axison, "a shorter row leaves its last image axes empty"
    panel = MapPanel(np.zeros((64, 32, 3), dtype=np.uint8), "#d62728", "SP-H")
    maps = activation_rows_figure([[panel, panel], [panel]], ["id 0", "id 1"], "maps")
    assert len(maps.axes) == 2 * 3 and maps.axes[1].get_title() == "SP-H" and not maps.axes[4].axison
    alone = weight_figure({1: np.array([0.2, 0.4]), 3: np.array([1.0])})
    assert len(alone.axes) == 1 and len(alone.axes[0].patches) == 2
    plt.close("all")


def test_page_metrics_and_their_table(tmp_path, run_dir, first):
    viz.save_figure(plt.subplots()[0], tmp_path, "summary")
    summary = {"identities": 3, "epochs_drawn": [1, 2], "answer": "At epoch 2, ..."}
    score = pairs.run_score(run_dir, first)
    metrics = pairs.write_pairs_metrics(tmp_path, summary, run_dir, 0.05, score)
    assert list(metrics) == ["identities", "epochs_drawn", "answer", "run_dir", "temperature", "run_mAP", "chance_mAP",
                             "chance_rank1", "figures"]
    assert metrics["figures"] == ["summary.png"] and metrics["run_dir"] == str(run_dir)
    assert json.loads(engine.RunDir(tmp_path).metrics_path.read_text()) == metrics
    table = pairs.metrics_table(metrics)
    assert list(table.columns) == ["value"] and "answer" not in table.index and "figures" not in table.index
    assert table.loc["temperature", "value"] == 0.05
    plt.close("all")

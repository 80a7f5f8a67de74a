"""The train notebook's pages (reidlab.explore.training, reidlab.viz.training) on one tiny run of the shared
SynthReID: config and settings, training over a previous run, the last checkpoint's evaluation against brute force,
the ranked examples, the cross-domain evaluation and the final metrics."""

from __future__ import annotations

import dataclasses
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

from reidlab import engine, viz
from reidlab.explore.training import (
    cross_domain_evaluation,
    evaluate_last_checkpoint,
    final_metrics,
    metrics_table,
    ranked_examples,
    settings_table,
)
from reidlab.study import notebook_config, train_here
from reidlab.study.records import write_page_metrics
from reidlab.study.notebooks import NOTEBOOKS_DIR
from reidlab.viz.training import cmc_figure

from test_notebooks import tiny_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root):
    """A tiny 2-epoch run trained with resume = False over the leftovers of another run; (folder, printed lines)."""
    out = tmp_path_factory.mktemp("train_page") / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")  # resuming would fail on it
    (out / "checkpoints" / "epoch_009.pt").write_bytes(b"stale")
    (out / "metrics.json").write_text(json.dumps({"mAP": 2.0}))
    printed: list[str] = []
    config = notebook_config("synth_cpu", tiny_overrides(synth_root), 0, 2, str(synth_root), out, "cpu", False)
    train_here(config, False, print_fn=printed.append)
    return out, printed


@pytest.fixture(scope="module")
def evaluation(trained):
    return evaluate_last_checkpoint(trained[0])


def test_run_config_takes_the_repositorys_data_and_the_resume_policy(tmp_path):
    config = notebook_config("synth_cpu", {"sampler.p": 4}, 3, None, None, tmp_path / "run", "cpu", True)
    assert config.data.root == str(NOTEBOOKS_DIR.parent / "data" / "synthreid")  # not under the kernel's folder
    assert config.resume == "auto" and config.device == "cpu" and config.seed == 3 and config.sampler.p == 4
    assert config.output_dir == str(tmp_path / "run") and not (tmp_path / "run").exists(), "nothing is written"
    assert notebook_config("synth_cpu", {}, 0, 1, str(tmp_path), tmp_path, "cpu", False).resume is False
    table = settings_table(config, True)
    assert list(table.columns) == ["setting"] and table.loc["seed", "setting"] == 3
    assert table.loc["batch (P x K)", "setting"].startswith("4 x ")
    assert table.loc["a run already there", "setting"] == "continued (resume)"
    assert settings_table(config, False).loc["a run already there", "setting"] == "deleted, trained anew"


def test_resume_false_trains_anew_and_resume_keeps_a_finished_run(trained, synth_root):
    out, printed = trained
    assert printed[0].startswith(f"resume = False: deleted the previous run in {out} (checkpoints, metrics.json")
    assert not (out / "checkpoints" / "epoch_009.pt").exists()
    assert engine.RunDir(out).metrics()["epochs_completed"] == 2
    last = engine.RunDir(out).checkpoint("last")
    stamp = last.stat().st_mtime_ns
    config = notebook_config("synth_cpu", tiny_overrides(synth_root), 0, 2, str(synth_root), out, "cpu", True)
    assert train_here(config, True, print_fn=None)["epochs_completed"] == 2
    assert last.stat().st_mtime_ns == stamp, "a finished run is not retrained"


def test_last_checkpoint_evaluation_is_the_trainers(trained, evaluation):
    out, _ = trained
    assert evaluation.run.checkpoint == engine.RunDir(out).checkpoint("last") and evaluation.epoch == 2
    assert evaluation.result["mAP"] == pytest.approx(evaluation.trained["mAP"], abs=1e-3)
    assert evaluation.result["cmc"][0] == pytest.approx(evaluation.trained["rank1"], abs=1e-3)
    assert len(evaluation.result["first_match_rank"]) == len(evaluation.run.dataset.query)
    assert 0 < evaluation.chance["mAP"] < 1 and 0 < evaluation.chance["rank1"] < 1
    summary = evaluation.summary()
    assert re.match(r"last\.pt \(epoch 2\): mAP \d+\.\d% \(chance \d+\.\d+%\), rank-1 \d+\.\d% \(chance", summary)
    assert "note:" not in summary
    off = dataclasses.replace(evaluation, trained={**evaluation.trained, "mAP": evaluation.result["mAP"] + 0.01})
    assert "\nnote: the trainer measured mAP" in off.summary()


def test_ranked_examples_spread_over_difficulty_and_follow_the_protocol(evaluation):
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = evaluation.query, evaluation.gallery
    dataset = evaluation.run.dataset
    examples = ranked_examples(evaluation, 3, 5)
    assert len(examples.query_paths) == len(examples.gallery_paths) == len(examples.query_captions) == 3
    query_of = {r.path: i for i, r in enumerate(dataset.query)}
    gallery_of = {r.path: i for i, r in enumerate(dataset.gallery)}
    picks = [query_of[path] for path in examples.query_paths]
    first = evaluation.result["first_match_rank"].astype(float)
    first[first == 0] = np.inf
    assert list(first[picks]) == sorted(first[picks], reverse=True), "the hardest query first"
    assert first[picks[-1]] == first.min() and first[picks[0]] == np.sort(first)[-1]
    for q, paths, correct, captions in zip(picks, examples.gallery_paths, examples.correct, examples.captions):
        distances = 1 - (qf[q] @ gf.T).numpy()  # the features are L2-normalized
        shown = [g for g in np.argsort(distances, kind="stable")
                 if g_pids[g] >= 0 and not (g_pids[g] == q_pids[q] and g_camids[g] == q_camids[q])][:5]
        assert [gallery_of[path] for path in paths] == shown
        assert correct == [bool(g_pids[g] == q_pids[q]) for g in shown]
        assert captions[0].startswith("#1 d=") and len(captions) == 5
    fig = viz.ranked_results(*examples, size=(64, 32))
    assert len(fig.axes) == 3 * 6
    plt.close(fig)


def test_cross_domain_evaluation(trained, evaluation):
    out, _ = trained
    assert cross_domain_evaluation(out, evaluation.run.checkpoint, {}) == {}
    for bad in ({"name": "dukemtmc"}, {"root": "/x", "split": "test"}):
        with pytest.raises(ValueError, match="test_data takes a dataset 'name' and its 'root'"):
            cross_domain_evaluation(out, evaluation.run.checkpoint, bad)
    root = evaluation.run.config.data.root  # the training dataset itself: the trainer's numbers again
    measured = cross_domain_evaluation(out, evaluation.run.checkpoint, {"root": root})
    assert measured["dataset"] == f"synthreid ({root})" and set(measured) == {"dataset", "mAP", "rank1", "mINP"}
    assert measured["mAP"] == pytest.approx(evaluation.trained["mAP"], abs=1e-3)


def test_final_metrics_describe_the_last_checkpoint(trained, evaluation):
    out, _ = trained
    viz.save_figure(cmc_figure({"run": evaluation.result["cmc"]}), out, "cmc")
    plt.close("all")
    metrics = write_page_metrics(out, final_metrics(evaluation, {"dataset": "other", "mAP": 0.5}))
    assert not [k for k in metrics if k.startswith("best_")] and metrics["mAP"] == evaluation.trained["mAP"]
    assert metrics["evaluated_checkpoint"] == str(evaluation.run.checkpoint)
    assert metrics["chance_mAP"] == evaluation.chance["mAP"] and metrics["chance_rank1"] == evaluation.chance["rank1"]
    assert metrics["cmc_top20"] == [float(v) for v in evaluation.result["cmc"][:20]] and len(metrics["cmc_top20"]) == 20
    assert metrics["cross_domain"] == {"dataset": "other", "mAP": 0.5} and metrics["figures"] == ["cmc.png"]
    assert list(metrics)[-1] == "figures" and "cross_domain" not in final_metrics(evaluation, {})
    assert json.loads(engine.RunDir(out).metrics_path.read_text()) == metrics  # what the notebook writes
    table = metrics_table(metrics)
    assert list(table.columns) == ["value"] and table.loc["mAP", "value"] == metrics["mAP"]
    assert not {"output_dir", "cmc_top20", "cross_domain", "figures", "provenance"} & set(table.index)


def test_cmc_figure_ends_at_the_shorter_of_max_rank_and_the_curve():
    short = cmc_figure({"a": [0.5, 0.7, 1.0]})
    assert short.axes[0].get_xlim() == (0.5, 3.5) and tuple(short.get_size_inches()) == (5.5, 4)
    assert cmc_figure({"a": np.linspace(0.2, 1, 50), "b": [0.1, 0.2]}).axes[0].get_xlim() == (0.5, 20.5)
    plt.close("all")

"""The four study notebooks, executed through papermill with tiny parameters on CPU, and the committed
notebooks' hygiene (no outputs, a papermill parameters cell)."""

from __future__ import annotations

import json

import nbformat
import pytest

from reidlab import study

NOTEBOOKS = ("train", "ablation", "positive_pairs", "class_similarity")


def tiny_overrides(root, **extra):
    """The study's CPU settings cut to a few iterations on the shared test SynthReID."""
    return study.study_overrides(
        root, **{"epochs": 2, "max_iters_per_epoch": 3, "sampler.p": 4, "sampler.k": 4, "threads": 1, **extra}
    )


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def assert_figures(run_dir, names):
    for name in names:
        path = run_dir / "figures" / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 2000, f"missing or empty figure {path}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_stripped_and_parameterized(name):
    path = study.notebook_path(name)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: commit notebooks stripped"
            compile(cell.source, f"{path.name} cell {index}", "exec")  # a syntax error fails here, not in a long run
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters' for papermill"
    assigned = [line.split("=", 1)[0].strip() for line in tagged[0].source.splitlines() if line and line[0].isalpha()]
    # papermill skips a line it cannot parse (e.g. '=' inside the comment) and would then reject that name
    assert list(study.notebook_parameters(name)) == assigned and "output_dir" in assigned


def test_unknown_notebook_parameter_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)unknown parameter\(s\) \[.epoch.\].*preset = ") as err:
        study.run_notebook("train", {"epoch": 3}, tmp_path / "run")
    assert "data_root" in str(err.value) and "overrides" in str(err.value)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, synth_root):
    """train.ipynb executed once; positive_pairs.ipynb reuses its checkpoints."""
    out = tmp_path_factory.mktemp("study") / "train"
    study.run_notebook("train", {"overrides": tiny_overrides(synth_root, save_every=1, **{"eval.every": 1}),
                                 "num_queries": 3, "top_k": 5}, out)
    return out


def test_train_notebook(train_run):
    metrics = read_metrics(train_run)
    assert 0 <= metrics["mAP"] <= 1 and 0 <= metrics["rank1"] <= 1 and metrics["epochs_completed"] == 2
    assert len(metrics["cmc_top20"]) == 20 and metrics["cmc_top20"][0] == pytest.approx(metrics["rank1"])
    assert_figures(train_run, ["training_curves", "cmc", "ranked_results", "summary"])
    assert json.loads((train_run / "status.json").read_text())["status"] == "ok"
    html = study.render_notebook(train_run / "train.ipynb").read_text()
    assert "engine.train(config)" not in html and "Ranked results" in html


def test_positive_pairs_notebook(train_run, tmp_path):
    out = tmp_path / "pairs"
    study.run_notebook("positive_pairs", {"run_dir": str(train_run), "num_identities": 4, "images_per_identity": 4}, out)
    metrics = read_metrics(out)
    assert 0 <= metrics["mean_w_last"] <= 1 and metrics["epochs_drawn"] == [1, 2]
    assert -1 <= metrics["spearman_w_variation"] <= 1
    assert_figures(out, ["pairs_epoch_001", "pairs_epoch_002", "w_histogram", "variation_side_by_side", "summary"])


def test_class_similarity_notebook(synth_root, tmp_path):
    out = tmp_path / "classes"
    study.run_notebook("class_similarity", {"overrides": tiny_overrides(synth_root), "batches_shown": 2}, out)
    metrics = read_metrics(out)
    assert metrics["classes"] == 24
    for key in ("scene_probe_without_sr", "scene_probe_with_sr", "scene_chance", "scene_adversary_accuracy"):
        assert 0 <= metrics[key] <= 1
    assert metrics["in_batch_similarity_hard"] > metrics["in_batch_similarity_random"], "hard batches hold similar classes"
    assert_figures(out, ["similarity_clustermap", "class_umap_epochs", "hard_batches", "scene_invariance", "summary"])


def test_ablation_notebook_tables_and_resume(synth_root, tmp_path):
    out = tmp_path / "ablation"
    knobs = {"num_train_ids": 12, "num_test_ids": 12, "num_cameras": 4, "num_scenes": 2, "image_size": [64, 32],
             "cameras_per_id": [2, 3], "images_per_camera": [1, 3], "num_distractors": 6, "num_junk": 2}
    parameters = {
        "overrides": tiny_overrides(None), "seeds": [0, 1],
        "tables": ["adasp", "hbreid2", "variation"], "only": {"adasp": ["AdaSP", "Triplet"], "hbreid2": ["baseline"], "variation": ["AdaSP"]},
        "variation_levels": [0.1, 0.5], "default_variation": 0.5, "synth_knobs": knobs, "data_dir": str(tmp_path / "data"),
    }
    study.run_notebook("ablation", parameters, out)
    metrics = read_metrics(out)
    assert metrics["runs"] == 8 and metrics["runs_failed"] == 0  # 4 configurations x 2 seeds
    assert 0 <= metrics["adasp_AdaSP_mAP"] <= 1 and "variation_drop_AdaSP" in metrics
    for table in ("adasp", "hbreid2", "variation"):
        assert (out / f"table_{table}.csv").is_file()
    assert "mAP_rerank" in (out / "runs.csv").read_text(), "HBReID table 2 runs are also evaluated re-ranked"
    assert_figures(out, ["variation_sweep", "summary"])
    html = study.render_notebook(out / "ablation.ipynb").read_text()
    assert "mean ± 95% CI" in html and "HBReID Table 2" in html
    # Executing again resumes: every run is complete, nothing is retrained.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")}
    study.run_notebook("ablation", parameters, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")} == stamps

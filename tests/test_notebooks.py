"""The four study notebooks, executed through papermill with tiny parameters on CPU, and the committed
notebooks' hygiene (no outputs, a papermill parameters cell)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from reidlab import study
from reidlab.engine import RunDir
from reidlab.study import notebooks as study_notebooks
from reidlab.study.notebooks import (
    check_notebook_parameters,
    default_data_root,
    default_output_dir,
    notebook_arguments,
)

NOTEBOOKS = ("train", "ablation", "positive_pairs", "retrieval", "class_similarity", "explore", "paper")
# The notebooks that must run with their own defaults, shortened only (see own_defaults)
SELF_CONTAINED = ("train", "positive_pairs", "retrieval", "class_similarity", "explore")
KERNELSPEC = {"name": "reidlab", "display_name": "Python (reidlab)", "language": "python"}


# The default study's CPU training settings (reidlab/configs/study/quick.yaml: a tiny model at 64 x 32).
STUDY_CPU_OVERRIDES = {
    "data.generate": False, "data.size": [64, 32], "data.num_workers": 0, "data.test_batch_size": 256,
    "data.aug": {"flip_p": 0.5, "padding": 2, "erasing_p": 0.0}, "model.name": "resnet18_tiny",
    "model.kwargs": {"last_stride": 2}, "sampler.hard_warmup_epochs": 1, "optim.lr": 1.5e-2,
    "optim.warmup_epochs": 0.0, "scene.ramp_epochs": 2, "eval.every": 0, "progress": False, "log_every": 5,
}


def tiny_overrides(root, **extra):
    """The study's CPU settings cut to a few iterations on the shared test SynthReID."""
    overrides = {**STUDY_CPU_OVERRIDES, "epochs": 2, "max_iters_per_epoch": 3, "sampler.p": 4, "sampler.k": 4,
                 "threads": 1, **extra}
    if root is not None:
        overrides["data.root"] = str(root)
    return overrides


def own_defaults(root, **parameters):
    """A notebook's own defaults, shortened for CPU tests: few epochs and iterations, one thread, and the
    shared test SynthReID as data_root (data.generate off: the preset would generate its own knobs there)."""
    shorten = {"data.generate": False, "max_iters_per_epoch": 2, "threads": 1}
    return {"data_root": str(root), "epochs": 2, "overrides": shorten, **parameters}


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
    assert dict(nb.metadata["kernelspec"]) == KERNELSPEC
    # The first code cell after the parameters checks them (and resolves output_dir = None).
    first = nb.cells[nb.cells.index(tagged[0]) + 1]
    assert first.cell_type == "code" and f'notebook_arguments("{name}", globals()))' in first.source
    assert "globals().update(" in first.source


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_notebook_defaults_write_to_repo_runs(name):
    defaults = study_notebooks.parameter_defaults(name)
    assert defaults["output_dir"] is None and defaults["resume"] is True
    nb = nbformat.read(study.notebook_path(name), as_version=4)
    tagged = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "resume = True  #" in tagged.source, "document the re-run policy in the parameters cell"


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_notebook_code_never_opens_best_pt(name):
    """best.pt is the epoch of highest test mAP: no notebook's code picks it (load_trained and ExploredRun
    default to last.pt: tests/test_explore.py)."""
    nb = nbformat.read(study.notebook_path(name), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"best\.pt|[\"']best[\"']", cell.source), f"{name}.ipynb picks best.pt:\n{cell.source}"


def test_default_output_dir_is_repo_runs_and_git_ignored(tmp_path, monkeypatch):
    repo = study_notebooks.NOTEBOOKS_DIR.parent
    assert default_output_dir("train") == repo / "runs" / "train"
    assert default_output_dir("class_similarity.ipynb") == repo / "runs" / "class_similarity"
    if shutil.which("git") and (repo / ".git").exists():
        ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "runs/train/metrics.json"])
        assert ignored.returncode == 0, "runs/ must be git-ignored"
    # Installed without the notebooks folder: ./runs/<name> under the current directory.
    monkeypatch.setattr(study_notebooks, "NOTEBOOKS_DIR", tmp_path / "site-packages" / "notebooks")
    monkeypatch.chdir(tmp_path)
    assert default_output_dir("train") == tmp_path / "runs" / "train"


def test_default_data_root_is_under_the_repository_root(tmp_path, monkeypatch):
    repo = study_notebooks.NOTEBOOKS_DIR.parent
    assert default_data_root("data/synthreid") == str(repo / "data" / "synthreid")
    assert default_data_root(tmp_path / "x") == str(tmp_path / "x") and default_data_root(None) is None
    # Installed without the notebooks folder: relative to the current directory.
    monkeypatch.setattr(study_notebooks, "NOTEBOOKS_DIR", tmp_path / "site-packages" / "notebooks")
    monkeypatch.chdir(tmp_path)
    assert default_data_root("data/synthreid") == str(tmp_path / "data" / "synthreid")


def test_train_notebook_default_data_root_is_the_repositorys_data(monkeypatch):
    """train.ipynb with data_root = None in a kernel started in notebooks/ (JupyterLab): the preset's relative
    data.root lies under the repository root's data/, not under notebooks/. Runs the parameters cell and the
    cell that builds the config (nothing is trained or written)."""
    repo = study_notebooks.NOTEBOOKS_DIR.parent
    nb = nbformat.read(study.notebook_path("train"), as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    monkeypatch.chdir(study_notebooks.NOTEBOOKS_DIR)
    namespace = {}
    for cell in nb.cells[index:index + 2]:
        exec(compile(cell.source, "train.ipynb", "exec"), namespace)
    assert namespace["config"].preset == "synth_cpu" and namespace["config"].data.root == str(repo / "data" / "synthreid")
    root = Path(namespace["config"].data.root)
    assert root.is_relative_to(repo / "data") and not root.is_relative_to(study_notebooks.NOTEBOOKS_DIR)
    assert namespace["config"].output_dir == str(repo / "runs" / "train")
    for path in ("notebooks/data/synthreid/meta.json", "notebooks/runs/train/metrics.json"):
        if shutil.which("git") and (repo / ".git").exists():
            ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", path])
            assert ignored.returncode == 0, f"{path} must be git-ignored"


def test_check_notebook_parameters_parses_yaml_text():
    defaults = {"seeds": [0, 1, 2], "overrides": {}, "seed": 0, "rate": 0.5, "flag": True, "epochs": None,
                "preset": "synth_cpu"}
    checked = check_notebook_parameters(
        {"seeds": "[0]", "overrides": "{loss.metric: sp-h}", "seed": "3", "rate": 1, "flag": "false", "other": 1},
        defaults)
    assert checked == {"seeds": [0], "overrides": {"loss.metric": "sp-h"}, "seed": 3, "rate": 1, "flag": False}
    # A None default accepts anything; text that reads as a YAML list or dict becomes one (ablation.ipynb's
    # `seeds = None` given papermill's `-p seeds "[0, 1]"`), other text (a path) stays a string; a str default too.
    assert check_notebook_parameters({"epochs": "[1, 2]"}, defaults) == {"epochs": [1, 2]}
    assert check_notebook_parameters({"epochs": "{a: 1}"}, defaults) == {"epochs": {"a": 1}}
    anything = {"epochs": "/data/market1501", "preset": "[not, parsed]"}
    assert check_notebook_parameters(anything, defaults) == anything
    assert check_notebook_parameters({"epochs": "3"}, defaults) == {"epochs": "3"}
    for value in (3, [1], {"a": 1}, None, "x"):
        assert check_notebook_parameters({"epochs": value}, defaults) == {"epochs": value}


@pytest.mark.parametrize("namespace, message", [
    ({"seeds": "3"}, r"parameter seeds='3' must be a list like its default \[0, 1, 2\]; got int 3"),
    ({"seeds": "0,1"}, r"parameter seeds='0,1' must be a list"),
    ({"seeds": "[0"}, r"parameter seeds='\[0' is not valid YAML for a list"),
    ({"seed": "[0]"}, r"parameter seed='\[0\]' must be an int like its default 0; got list"),
    ({"seed": 1.5}, r"parameter seed=1.5 must be an int"),
    ({"seed": True}, r"parameter seed=True must be an int"),
    ({"rate": "fast"}, r"parameter rate='fast' must be a number"),
    ({"flag": 1}, r"parameter flag=1 must be a bool"),
    ({"overrides": ["a=1"]}, r"parameter overrides=\['a=1'\] must be a dict"),
])
def test_check_notebook_parameters_refuses_wrong_types(namespace, message):
    defaults = {"seeds": [0, 1, 2], "overrides": {}, "seed": 0, "rate": 0.5, "flag": False}
    with pytest.raises(ValueError, match=message):
        check_notebook_parameters(namespace, defaults)


def test_notebook_arguments_reads_the_notebooks_defaults():
    arguments = notebook_arguments("train", {"seed": "3", "overrides": "{sampler.p: 8}", "output_dir": None,
                                             "data_root": "/data/x", "In": [], "json": json})
    assert arguments == {"seed": 3, "overrides": {"sampler.p": 8}, "output_dir": str(default_output_dir("train")),
                         "data_root": "/data/x"}
    assert notebook_arguments("train", {"output_dir": "elsewhere"}) == {"output_dir": "elsewhere"}
    with pytest.raises(ValueError, match="parameter top_k='ten' must be an int"):
        notebook_arguments("train", {"top_k": "ten"})


def test_run_notebook_checks_types_before_a_kernel_starts(tmp_path):
    with pytest.raises(ValueError, match=r"parameter num_queries='\[3\]' must be an int"):
        study.run_notebook("train", {"num_queries": "[3]"}, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "refused before anything was written or executed"


def test_kernel_parses_papermill_text_and_shows_widget_progress_bars(tmp_path):
    """In a real kernel: `-p seeds "[0]"` text is parsed by notebook_arguments (here through the fallback to
    the notebook in the kernel's folder), and tqdm.auto finds ipywidgets (no "IProgress not found")."""
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("seeds = [0, 1]  # seeds\noutput_dir = None  # where\nrate = 0.5  # a float",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from reidlab.study.notebooks import notebook_arguments\n"
            "globals().update(notebook_arguments('tiny', globals()))\n"
            "import json, warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    from tqdm.auto import tqdm\n"
            "    total = sum(tqdm(range(3)))\n"
            "json.dump({'seeds': seeds, 'output_dir': output_dir, 'rate': rate, 'tqdm': [c.__module__ for c in tqdm.__mro__],\n"
            "           'warnings': [str(w.message) for w in caught]}, open('result.json', 'w'))"),
    ]
    nb.metadata.update(kernelspec=KERNELSPEC, language_info={"name": "python"})
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    papermill.execute_notebook(str(tmp_path / "tiny.ipynb"), str(tmp_path / "tiny_out.ipynb"),
                               parameters={"seeds": "[0]", "rate": 1}, kernel_name=study.resolve_kernel_name(),
                               cwd=str(tmp_path), progress_bar=False)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["seeds"] == [0] and result["rate"] == 1
    assert result["output_dir"].endswith("/runs/tiny")
    assert not [w for w in result["warnings"] if "IProgress" in w], result["warnings"]
    assert "tqdm.notebook" in result["tqdm"], "tqdm.auto falls back to text bars without ipywidgets"


def test_run_dir_clear_removes_only_the_training_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    for name in ("metrics.json", "metrics.jsonl", "config.yaml", "provenance.json", "status.json", "train.ipynb"):
        (tmp_path / name).write_text("{}")
    assert RunDir(tmp_path).clear() == ["checkpoints", "metrics.json", "metrics.jsonl", "config.yaml", "provenance.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json", "train.ipynb"]
    assert RunDir(tmp_path).clear() == []


def test_unknown_notebook_parameter_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)unknown parameter\(s\) \[.epoch.\].*preset = ") as err:
        study.run_notebook("train", {"epoch": 3}, tmp_path / "run")
    assert "data_root" in str(err.value) and "overrides" in str(err.value)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, synth_root):
    """train.ipynb executed once, also evaluated on another SynthReID copy (30 identities: cross-domain);
    positive_pairs.ipynb reuses its checkpoints."""
    from conftest import SMALL_SYNTH_KNOBS

    from reidlab.data import synth

    other = synth.generate(tmp_path_factory.mktemp("other") / "synthreid", seed=5, **{**SMALL_SYNTH_KNOBS, "num_train_ids": 30})
    out = tmp_path_factory.mktemp("study") / "train"
    study.run_notebook("train", {"overrides": tiny_overrides(synth_root, save_every=1, **{"eval.every": 1}),
                                 "num_queries": 3, "top_k": 5, "test_data": {"root": str(other)}}, out)
    return out


def test_train_notebook(train_run):
    metrics = read_metrics(train_run)
    assert 0 <= metrics["mAP"] <= 1 and 0 <= metrics["rank1"] <= 1 and metrics["epochs_completed"] == 2
    assert len(metrics["cmc_top20"]) == 20 and metrics["cmc_top20"][0] == pytest.approx(metrics["rank1"])
    assert_figures(train_run, ["training_curves", "cmc", "ranked_results", "summary"])
    assert json.loads((train_run / "status.json").read_text())["status"] == "ok"
    assert 0 < metrics["chance_mAP"] < 1 and 0 < metrics["chance_rank1"] < 1
    assert metrics["cross_domain"]["dataset"].startswith("synthreid (") and 0 < metrics["cross_domain"]["mAP"] <= 1
    html = study.render_notebook(train_run / "train.ipynb").read_text()
    assert "left out its identity classifier" in html
    assert "engine.train(config)" not in html and "Ranked results" in html
    assert "chance" in html and re.search(r"mAP \d+\.\d% \(chance \d+\.\d+%\)", html), "mAP next to its chance level"


def test_positive_pairs_notebook(train_run, tmp_path):
    out = tmp_path / "pairs"
    study.run_notebook("positive_pairs", {"run_dir": str(train_run), "num_identities": 4, "images_per_identity": 4}, out)
    metrics = read_metrics(out)
    assert 0 <= metrics["mean_w_last"] <= 1 and metrics["epochs_drawn"] == [1, 2]
    assert -1 <= metrics["spearman_w_variation"] <= 1
    assert 0 < metrics["chance_mAP"] < 1 and metrics["run_mAP"] == read_metrics(train_run)["mAP"]
    nb = nbformat.read(out / "positive_pairs.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"test mAP {metrics['run_mAP']:.1%} (chance {metrics['chance_mAP']:.2%})" in printed
    assert_figures(out, ["pairs_epoch_001", "pairs_epoch_002", "w_histogram", "variation_side_by_side", "summary",
                         "activation_maps"])  # the SP-H and SP-LH pairs' activation maps
    assert "activation_maps.png" in metrics["figures"]


def test_retrieval_notebook(train_run, tmp_path):
    out = tmp_path / "retrieval"
    study.run_notebook("retrieval", {"run_dir": str(train_run), "distractors": 3000, "threads": 1,
                                     "tuning_queries": 40}, out)
    metrics = read_metrics(out)
    assert metrics["distractors"] == 3000 and metrics["dim"] == 128 and metrics["top_k"] == 100
    # train_run's best.pt (eval every epoch) may be another epoch: the notebook reads last.pt all the same.
    assert metrics["checkpoint"] == "last.pt" and metrics["tuning_queries"] == 40  # knobs tuned on training images
    assert 0 <= metrics["exact"]["rank1"] <= metrics["rank1_alone"] <= 1  # distractors never add a match
    assert metrics["exact"]["recall_at_1"] == 1.0
    points = pd.DataFrame(metrics["points"])
    assert set(points["kind"]) == {"ivf", "ivfpq", "hnsw"} and (points["queries_per_s"] > 0).all()
    assert points["recall_at_1"].between(0, 1).all() and set(metrics["tuned"]) == {"ivf", "ivfpq", "hnsw"}
    for tuned in metrics["tuned"].values():  # the tuned setting's test numbers, beside its validation recall
        assert 0 <= tuned["recall_at_1"] <= 1 and 0 <= tuned["test"]["rank1"] <= metrics["exact"]["rank1"] + 1e-9
    assert_figures(out, ["retrieval_trade_off"])
    html = study.render_notebook(out / "retrieval.ipynb").read_text()
    assert "exact flat search" in html and "fitted distractors" in html and "within 1 rank-1 point" in html


def test_class_similarity_notebook(synth_root, tmp_path):
    out = tmp_path / "classes"
    study.run_notebook("class_similarity", {"overrides": tiny_overrides(synth_root), "batches_shown": 2}, out)
    metrics = read_metrics(out)
    assert metrics["classes"] == 24
    for key in ("scene_probe_without_sr", "scene_chance"):
        assert 0 <= metrics[key] <= 1
    for objective in ("reverse", "confusion", "entropy"):  # every objective side by side
        for key in ("scene_probe", "scene_adversary_test", "scene_adversary_train", "mAP"):
            assert 0 <= metrics[f"{key}_{objective}"] <= 1
    assert 0 < metrics["chance_mAP"] < 1
    assert metrics["in_batch_similarity_hard"] > metrics["in_batch_similarity_random"], "hard batches hold similar classes"
    assert_figures(out, ["similarity_clustermap", "class_umap_epochs", "hard_batches", "scene_invariance", "summary"])


def test_train_notebook_own_defaults_runs_twice_into_one_folder(synth_root, tmp_path):
    """train.ipynb with its own defaults (shortened), executed twice into the same output_dir: the second run
    resumes the finished one (resume = True) instead of refusing, and every number is the last checkpoint's."""
    out = tmp_path / "train"
    parameters = own_defaults(synth_root, epochs=1)
    study.run_notebook("train", parameters, out)
    first = read_metrics(out)
    last_pt = out / "checkpoints" / "last.pt"
    stamp = last_pt.stat().st_mtime_ns
    study.run_notebook("train", parameters, out)
    metrics = read_metrics(out)
    assert last_pt.stat().st_mtime_ns == stamp, "a finished run is not retrained"
    assert json.loads((out / "status.json").read_text())["status"] == "ok"
    assert metrics["evaluated_checkpoint"] == metrics["checkpoint"] == str(last_pt)
    assert not [k for k in metrics if k.startswith("best_")], "no best-on-test numbers next to last-epoch ones"
    assert metrics["mAP"] == first["mAP"] and metrics["epochs_completed"] == 1
    assert metrics["cmc_top20"][0] == pytest.approx(metrics["rank1"], abs=1e-6)
    assert_figures(out, ["training_curves", "cmc", "ranked_results", "summary"])


def test_train_notebook_resume_false_trains_over_a_previous_run(synth_root, tmp_path):
    out = tmp_path / "train"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")  # resume = True would fail to load it
    (out / "checkpoints" / "epoch_009.pt").write_bytes(b"stale")
    (out / "metrics.json").write_text(json.dumps({"mAP": 2.0}))
    study.run_notebook("train", own_defaults(synth_root, epochs=1, resume=False), out)
    metrics = read_metrics(out)
    assert 0 <= metrics["mAP"] <= 1 and metrics["epochs_completed"] == 1
    assert not (out / "checkpoints" / "epoch_009.pt").exists()
    nb = nbformat.read(out / "train.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "resume = False: deleted the previous run" in printed


def test_positive_pairs_notebook_own_defaults(synth_root, tmp_path):
    out = tmp_path / "pairs"
    study.run_notebook("positive_pairs", own_defaults(synth_root), out)
    metrics = read_metrics(out)
    assert metrics["epochs_drawn"] == [1, 2] and (out / "run" / "checkpoints" / "last.pt").is_file()
    assert 0 <= metrics["w_min_last"] <= metrics["mean_w_last"] <= metrics["w_max_last"] <= 1
    assert metrics["spearman_n"] == metrics["identities"]
    # The finding is a computed sentence, built from the numbers of this run.
    answer = metrics["answer"]
    assert f"w ranges {metrics['w_min_last']:.3f}-{metrics['w_max_last']:.3f}" in answer
    assert f"Spearman(w, variation) = {metrics['spearman_w_variation']:.2f}" in answer
    assert any(phrase in answer for phrase in ("significant negative", "significant positive", "no detectable", "undefined"))
    nb = nbformat.read(out / "positive_pairs.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Spearman(w, variation) =" in printed
    markdown = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "keep `w = 0` (SP-LH)" not in markdown and "AdaSP leans on the least-hard pair" not in markdown


def test_class_similarity_notebook_own_defaults(synth_root, tmp_path):
    out = tmp_path / "classes"
    study.run_notebook("class_similarity", own_defaults(synth_root), out)
    metrics = read_metrics(out)
    assert metrics["classes"] == 24 and 0 <= metrics["nearest_class_same_family"] <= 1
    for run in ("run_hm", "run_hm_sr_reverse", "run_hm_sr_confusion", "run_hm_sr_entropy"):
        assert (out / run / "checkpoints" / "last.pt").is_file()
    nb = nbformat.read(out / "class_similarity.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"Held-out scene probe without scene removal: {metrics['scene_probe_without_sr']:.0%}" in printed
    assert f"confusion: probe {metrics['scene_probe_confusion']:.0%}" in printed
    assert f"(chance {metrics['chance_mAP']:.2%})" in printed and 0 < metrics["chance_mAP"] < 1
    assert "mean in-batch class similarity: hard batches" in printed


def test_explore_notebook_with_a_compared_run(synth_root, tmp_path):
    """Trains its run and an SP-H run beside it, shows the three views and saves their static figures. Rendered to
    HTML, each view is its static image. (Re-opening from the cache: tests/test_explore.py.)"""
    out = tmp_path / "explore"
    parameters = {"overrides": tiny_overrides(synth_root), "epochs": 2, "compare_overrides": {"loss.metric": "sp-h"},
                  "top_k": 5}
    study.run_notebook("explore", parameters, out)
    metrics = read_metrics(out)
    assert metrics["features_from_cache"] is False and metrics["epochs"] == [1, 2] and metrics["checkpoint"] == "last.pt"
    assert metrics["compare_run_dir"] == str(out / "compare") and 0 <= metrics["compare_mAP"] <= 1
    assert metrics["queries"] == 63 and 0 <= metrics["failures"] <= metrics["queries"]
    assert_figures(out, ["query_failures", "pairs", "class_map", "summary"])
    nb = nbformat.read(out / "explore.ipynb", as_version=4)
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs  # (progress bars are widgets too)
             if {"application/vnd.jupyter.widget-view+json", "image/png"} <= set(o.get("data", {}))]
    assert len(views) == 3
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "queries fail at rank 1" in printed and "features written to" in printed
    html = study.render_notebook(out / "explore.ipynb").read_text()
    assert html.count("data:image/png;base64") >= 3 and "widget-view+json" not in html


@pytest.mark.parametrize("name, parameter", [("positive_pairs", "run_dir"), ("class_similarity", "run_dir"),
                                             ("explore", "run_dir")])
def test_notebook_raises_when_its_prerequisite_run_failed(name, parameter, tmp_path):
    failed = tmp_path / "failed_run"
    failed.mkdir()
    (failed / "status.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: out of memory"}))
    with pytest.raises(Exception, match="holds no finished training run") as err:
        study.run_notebook(name, {parameter: str(failed)}, tmp_path / "out")
    assert "out of memory" in str(err.value)
    assert json.loads((tmp_path / "out" / "status.json").read_text())["status"] == "failed"


TINY_PROFILE = """
description: tiny test profile
seeds: [0, 1]
workers: 1
preset: synth_cpu
overrides: {data.generate: false, data.size: [64, 32], data.num_workers: 0, model.name: resnet18_tiny,
            model.kwargs: {last_stride: 2}, sampler.p: 4, sampler.k: 4, sampler.hard_warmup_epochs: 1, epochs: 2,
            max_iters_per_epoch: 3, optim.warmup_epochs: 0.0, eval.every: 0, progress: false, threads: 1}
synth: {num_train_ids: 12, num_test_ids: 12, num_cameras: 4, num_scenes: 2, image_size: [64, 32],
        cameras_per_id: [2, 3], images_per_camera: [1, 3], num_distractors: 6, num_junk: 2}
copies:
  person: {regimes: [person], knobs: {image_size: [64, 32]}}
  vehicle: {regimes: [vehicle], knobs: {image_size: [64, 32]}}
  hbreid: {regimes: [gs, sr], knobs: {num_train_ids: 16, family_size: [1, 3], num_scenes: 2}}
  hm: {regimes: [hm], knobs: {num_train_ids: 12, family_size: [2, 4]}}
pretrain: {regimes: [pretrain], synth: {num_train_ids: 8, num_test_ids: 6, num_distractors: 0, image_size: [64, 32]},
           epochs: 1, overrides: {loss.metric: none, loss.ce_weight: 1.0}}
"""
CLAIM_KEYS = {"id", "source", "statement", "metric", "arm", "reference", "margin", "delta", "ci_low", "ci_high",
              "n_pairs", "p", "p_holm", "verdict", "controls"}


def test_ablation_notebook_claims_tables_and_resume(tmp_path):
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY_PROFILE)
    out = tmp_path / "ablation"
    parameters = {
        "profile": str(profile), "untrained_margin": -100.0,  # these 6-step runs sit at chance: count them anyway
        "only": {"adasp": ["AdaSP", "Triplet"], "hbreid1": ["Default", "+GS", "+CJ"]},
    }
    study.run_notebook("ablation", parameters, out)
    metrics = read_metrics(out)
    # adasp 2, regime 5 more (SP-H, SP-LH on persons, all three on vehicles), hbreid2 5, hbreid1 1 more (CJ), hm 2:
    # 15 arms
    assert metrics["runs"] == 2 * 15 and metrics["runs_failed"] == 0 and metrics["runs_untrained"] == 0
    claims = json.loads((out / "claims.json").read_text())
    assert claims["seeds"] == [0, 1] and 0 <= claims["reference_mAP"] <= 100 and claims["profile"] == "tiny"
    assert claims["backbone"]["loss"] == "1 x CE" and claims["source"]["commits"]
    points = set(pd.read_csv(out / "runs.csv")["point"])
    ids = {c["id"] for c in claims["claims"]}
    assert {"person-vehicle-interaction", "adasp-beats-triplet", "sr-beats-gs", "sr-beats-gs-hm", "rerank-raises-map"} <= ids
    assert "gs-best-augmentation" not in ids  # GB and GT were left out by `only`
    # Every check the study measures is recorded, and each claim carries its own.
    assert {"hard-positive-rise", "colour-unreliable-across-cameras", "hm-harder-negatives", "scene-decodable",
            "gallery-true-matches", "batch-class-ratio"} <= set(claims["controls"])
    assert not claims["controls"]["batch-class-ratio"]["passed"]  # 12 training identities: no HM mechanism
    assert {c["id"]: c["verdict"] for c in claims["claims"]}["hm-beats-gs"] == "untestable"
    for claim in claims["claims"]:
        assert CLAIM_KEYS <= set(claim) and claim["n_pairs"] == 2 and claim["controls"]
        assert claim["verdict"] in {"supported", "contradicted", "no-effect", "inconclusive", "untestable"}
        assert (claim["verdict"] == "untestable") == (not all(c["passed"] for c in claim["controls"]))
        assert {*np.atleast_1d(claim["arm"]), *np.atleast_1d(claim["reference"])} <= points
        assert claim["ci_low"] <= claim["delta"] <= claim["ci_high"]
    for table in ("adasp", "hbreid2", "hbreid1", "hm"):
        assert (out / f"table_{table}.csv").is_file()
    assert "mAP_rerank" in (out / "runs.csv").read_text(), "HBReID table 2 runs are also evaluated re-ranked"
    assert_figures(out, ["regime_losses", "summary"])
    html = study.render_notebook(out / "ablation.ipynb").read_text()
    assert "Manipulation checks and verdicts on the claims" in html and "chance mAP" in html and "HBReID Table 2" in html
    # Every run fine-tunes the profile's backbone, pretrained once on a copy with other identities.
    backbone = out / "data" / "pretrain" / "backbone" / "seed0"
    assert (backbone / "checkpoints" / "last.pt").is_file()
    assert set(pd.read_csv(out / "runs.csv")["param.overrides.model.pretrained"]) == {str(backbone / "checkpoints" / "last.pt")}
    # Executing again into the same folder resumes: every run is complete, nothing is retrained.
    stamps = {p: p.stat().st_mtime_ns for folder in ("runs", "data") for p in (out / folder).rglob("metrics.json")}
    study.run_notebook("ablation", parameters, out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and (backbone / "metrics.json") in stamps


def test_ablation_notebook_own_defaults(tmp_path):
    """The quick profile as a user opens it, cut only by seeds / tables / only / epochs."""
    out = tmp_path / "ablation"
    study.run_notebook("ablation", {"seeds": [0], "epochs": 1, "tables": ["adasp"], "only": {"adasp": ["AdaSP", "Triplet"]}}, out)
    metrics = read_metrics(out)
    assert metrics["runs"] == 2 and metrics["runs_failed"] == 0 and metrics["profile"] == "quick"
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == ["adasp-beats-triplet"]
    # One epoch cannot clear the chance level by 2 points: such runs are flagged and left out, never compared.
    frame = pd.read_csv(out / "runs.csv")
    assert frame["untrained"].all() == (claims[0]["n_pairs"] == 0)


def test_ablation_notebook_fails_when_every_run_fails(tmp_path):
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY_PROFILE)
    with pytest.raises(Exception, match=r"all 2 runs of the sweep .* failed"):
        study.run_notebook("ablation", {"profile": str(profile), "overrides": {"sampler.p": 1000}, "tables": ["adasp"],
                                        "only": {"adasp": ["AdaSP"]}}, tmp_path / "ablation")
    assert json.loads((tmp_path / "ablation" / "status.json").read_text())["status"] == "failed"


def test_gpu_profile_plumbing_on_cpu(tmp_path):
    """The gpu profile's training settings (ResNet-50-IBN-a BNNeck, AMP, loader workers) run end to end on CPU when
    only the device, the SynthReID size and the step count are cut down."""
    import yaml

    profile = yaml.safe_load(study.STUDY_CONFIG_DIR.joinpath("gpu.yaml").read_text())
    assert profile["overrides"]["model.name"] == "resnet50_ibn_a" and profile["overrides"]["optim.amp"] != "none"
    assert profile["synth"]["image_size"] == [256, 128] and profile["synth"]["num_train_ids"] >= 500
    tiny = yaml.safe_load(TINY_PROFILE)
    profile["synth"], profile["copies"] = tiny["synth"], tiny["copies"]
    profile["adasp_overrides"].pop("data.size", None)
    profile["pretrain"].update(epochs=1, synth=tiny["pretrain"]["synth"])
    profile["pretrain"]["overrides"].pop("data.size", None)
    profile["seeds"] = [0]
    profile["overrides"].update({"device": "cpu", "data.size": [64, 32], "data.num_workers": 0, "sampler.p": 4,
                                 "sampler.k": 4, "epochs": 1, "max_iters_per_epoch": 2, "threads": 1})
    path = tmp_path / "gpu_on_cpu.yaml"
    path.write_text(yaml.safe_dump(profile))
    out = tmp_path / "ablation"
    study.run_notebook("ablation", {"profile": str(path), "tables": ["adasp"], "only": {"adasp": ["AdaSP"]},
                                    "untrained_margin": -100.0}, out)
    run = study.collect(out / "runs").iloc[0]
    assert run["status"] == "ok" and run["param.overrides.model.name"] == "resnet50_ibn_a"
    assert run["prov.amp"] == "none" and run["prov.per_device_batch"] == 16  # autocast is CUDA-only

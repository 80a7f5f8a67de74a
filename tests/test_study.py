"""reidlab.study: parameter checking, run records, sweep resume and failure recording, CI statistics,
rendering without code cells. A toy notebook keeps these fast; tests/test_notebooks.py runs the real ones."""

from __future__ import annotations

import json
import math
import os
import signal
import time

import nbformat
import pytest

from reidlab import study

TOY_SOURCE = "TOY_CELL_SOURCE_MARKER = 1"


def write_toy_notebook(path):
    """A notebook with a parameters cell that writes metrics.json (mAP = x / 10) and fails when fail=True."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1\nseed = 0\nfail = False\noutput_dir = '.'  # where results go")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        f"{TOY_SOURCE}\nimport json, pathlib\n"
        "if fail:\n    raise RuntimeError(f'toy failure x={x}')\n"
        "pathlib.Path(output_dir, 'metrics.json').write_text(json.dumps({'mAP': x / 10, 'rank1': 0.5}))\n"
        "print('done', x)"
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy"), params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def toy(tmp_path):
    return write_toy_notebook(tmp_path / "toy.ipynb")


def test_unknown_parameter_lists_valid_ones(toy, tmp_path):
    with pytest.raises(ValueError) as err:
        study.run_notebook(toy, {"x": 2, "typo": 3}, tmp_path / "run")
    message = str(err.value)
    assert "typo" in message and "x = 1" in message and "fail = False" in message and "output_dir" in message
    assert not (tmp_path / "run").exists(), "nothing may be executed or written for bad parameters"


def test_unknown_notebook_names_available(tmp_path):
    with pytest.raises(FileNotFoundError, match="available"):
        study.notebook_path("no_such_notebook")


def test_run_notebook_records_and_render_hides_code(toy, tmp_path):
    result = study.run_notebook(toy, {"x": 3}, tmp_path / "runs" / "a")
    assert result["status"] == "ok" and result["metrics"]["mAP"] == pytest.approx(0.3)
    run = tmp_path / "runs" / "a"
    assert json.loads((run / "params.json").read_text())["parameters"]["output_dir"] == str(run.resolve())
    with pytest.raises(Exception, match="toy failure"):
        study.run_notebook(toy, {"fail": True, "x": 7}, tmp_path / "runs" / "b")
    status = json.loads((tmp_path / "runs" / "b" / "status.json").read_text())
    assert status["status"] == "failed" and "toy failure x=7" in status["error"]

    index = study.render(tmp_path / "runs")
    page = (run / "toy.html").read_text()
    assert "done 3" in page and TOY_SOURCE not in page, "outputs shown, code cells hidden"
    failed_page = (tmp_path / "runs" / "b" / "toy.html").read_text()
    assert "toy failure x=7" in failed_page, "the error cell is rendered"
    text = index.read_text()
    assert "a/toy.html" in text and "b/toy.html" in text and "toy failure x=7" in text
    assert "failed" in text and "30.0" in text  # mAP shown in percent


def test_render_indexes_a_plain_papermill_run(toy, tmp_path):
    import papermill

    run = tmp_path / "runs" / "gpu"
    run.mkdir(parents=True)
    papermill.execute_notebook(str(toy), str(run / "toy.ipynb"), parameters={"x": 4, "output_dir": str(run)},
                               kernel_name="python3", progress_bar=False)
    index = study.render(tmp_path / "runs").read_text()
    assert (run / "toy.html").is_file() and "gpu/toy.html" in index and "40.0" in index
    assert study.collect(tmp_path / "runs").loc[0, "param.x"] == 4


def runner_ok_or_fail(parameters, output_dir):
    """In-process sweep runner: fails for lr == 0, counts its calls in a file."""
    calls = output_dir.parent.parent / "calls.txt"
    with open(calls, "a") as f:
        f.write(f"{parameters['lr']},{parameters['seed']}\n")
    if parameters["lr"] == 0:
        raise ValueError("lr must be > 0")
    return {"mAP": parameters["lr"] + parameters["seed"] / 100, "rank1": 0.9}


def test_sweep_resumes_and_records_failures(tmp_path):
    grid = {"lr": [0.1, 0], "k": [4]}
    frame = study.sweep(grid, seeds=[0, 1], notebook=runner_ok_or_fail, output_root=tmp_path / "sw")
    assert len(frame) == 4
    assert sorted(frame["status"]) == ["failed", "failed", "ok", "ok"]
    failed = frame[frame["status"] == "failed"]
    assert failed["error"].str.contains("lr must be > 0").all()
    assert (frame[frame["status"] == "ok"]["mAP"].sort_values().tolist()) == pytest.approx([0.1, 0.11])
    assert set(frame["param.lr"]) == {0.1, 0} and set(frame["seed"]) == {0, 1}
    assert len((tmp_path / "sw" / "calls.txt").read_text().splitlines()) == 4
    # Second call: the two complete runs are skipped, the two failed ones are retried.
    study.sweep(grid, seeds=[0, 1], notebook=runner_ok_or_fail, output_root=tmp_path / "sw")
    lines = (tmp_path / "sw" / "calls.txt").read_text().splitlines()
    assert len(lines) == 6 and sorted(lines[4:]) == ["0,0", "0,1"]


def runner_leaving_a_checkpoint(parameters, output_dir):
    """Fails on its first attempt after writing a checkpoint, as a killed training run does."""
    assert not (output_dir / "checkpoints").exists(), "a retry must not start on the failed attempt's files"
    marker = output_dir.parent / "attempted"
    if not marker.exists():
        marker.touch()
        (output_dir / "checkpoints").mkdir()
        (output_dir / "checkpoints" / "last.pt").touch()
        raise RuntimeError("killed")
    return {"mAP": 0.5}


def test_sweep_retries_a_failed_run_in_a_clean_folder(tmp_path):
    with pytest.raises(RuntimeError, match=r"all 1 runs of the sweep .* failed; first error: RuntimeError: killed"):
        study.sweep({"x": [1]}, seeds=[0], notebook=runner_leaving_a_checkpoint, output_root=tmp_path)
    first = study.collect(tmp_path)
    assert first.loc[0, "status"] == "failed" and (tmp_path / "x=1" / "seed0" / "checkpoints" / "last.pt").exists()
    again = study.sweep({"x": [1]}, seeds=[0], notebook=runner_leaving_a_checkpoint, output_root=tmp_path)
    assert again.loc[0, "status"] == "ok"


def test_sweep_refuses_a_finished_run_made_with_other_parameters(tmp_path):
    study.sweep({"pt": {"lr": 0.1}}, seeds=[0, 1], notebook=runner_ok_or_fail, output_root=tmp_path / "sw")
    with pytest.raises(ValueError, match=r"2 finished run\(s\).*pt/seed0 \(lr: 0.1 -> 0.5\)"):
        study.sweep({"pt": {"lr": 0.5}}, seeds=[0, 1], notebook=runner_ok_or_fail, output_root=tmp_path / "sw")
    with pytest.raises(ValueError, match=r"epochs: \(unset\) -> 3"):
        study.sweep({"pt": {"lr": 0.1}}, seeds=[0], notebook=runner_ok_or_fail, output_root=tmp_path / "sw",
                    base_parameters={"epochs": 3})
    assert len((tmp_path / "sw" / "calls.txt").read_text().splitlines()) == 2  # nothing ran after the refusals


def test_sweep_reuses_a_run_that_kept_its_checkpoints_where_none_are_needed_and_not_the_reverse(tmp_path):
    study.sweep({"pt": {"lr": 0.1, "keep_checkpoints": True}}, seeds=[0], notebook=runner_ok_or_fail, output_root=tmp_path)
    for kept in (False, None):
        point = {"lr": 0.1} | ({} if kept is None else {"keep_checkpoints": kept})
        assert study.sweep({"pt": point}, seeds=[0], notebook=runner_ok_or_fail, output_root=tmp_path)["status"].tolist() == ["ok"]
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1  # reused twice
    study.sweep({"other": {"lr": 0.1}}, seeds=[0], notebook=runner_ok_or_fail, output_root=tmp_path)
    with pytest.raises(ValueError, match=r"other/seed0 \(keep_checkpoints: \(unset\) -> True\)"):
        study.sweep({"other": {"lr": 0.1, "keep_checkpoints": True}}, seeds=[0], notebook=runner_ok_or_fail,
                    output_root=tmp_path)


def test_sweep_returns_only_the_runs_asked_for(tmp_path):
    study.sweep({"pt": {"lr": 0.1}}, seeds=[0, 1, 2], notebook=runner_ok_or_fail, output_root=tmp_path)
    frame = study.sweep({"pt": {"lr": 0.1}}, seeds=[1], notebook=runner_ok_or_fail, output_root=tmp_path)
    assert frame["seed"].tolist() == [1] and frame["run"].tolist() == ["pt/seed1"]
    assert len(study.collect(tmp_path)) == 3  # the other seeds stay on disk


def test_collect_ignores_the_metrics_left_by_an_earlier_attempt(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"mAP": 0.3}))
    (run / "params.json").write_text(json.dumps({"notebook": "train", "parameters": {"seed": 0}}))
    (run / "status.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    row = study.collect(tmp_path).iloc[0]
    assert row["status"] == "failed" and "mAP" not in row.index


def runner_dying_on_x2(parameters, output_dir):
    """Kills its own worker process for x == 2, as the out-of-memory killer would; the others take a while, so
    the pool breaks while x = 1 runs and before x = 3 and x = 4 start."""
    if parameters["x"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)
    return {"mAP": parameters["x"] / 10}


def test_sweep_goes_on_when_a_worker_process_dies(tmp_path):
    frame = study.sweep({"x": [1, 2, 3, 4]}, seeds=[0], notebook=runner_dying_on_x2, output_root=tmp_path, workers=2,
                        threads_per_worker=1)
    status = dict(zip(frame["param.x"], frame["status"]))
    assert status[2] == "failed" and "worker process running it died" in frame.set_index("param.x").loc[2, "error"]
    # With 2 workers at most one other run was executing beside x = 2 when the pool broke (on a loaded machine
    # that may be x = 3 rather than x = 1); every run not yet started went to a fresh pool and succeeded.
    others = [status[x] for x in (1, 3, 4)]
    assert others.count("failed") <= 1 and others.count("ok") >= 2 and status[4] == "ok"


def test_sweep_runs_notebooks_and_skips_existing(toy, tmp_path):
    frame = study.sweep({"small": {"x": 2}}, seeds=[0], notebook=str(toy), output_root=tmp_path / "sw")
    assert frame.loc[0, "status"] == "ok" and frame.loc[0, "mAP"] == pytest.approx(0.2)
    executed = tmp_path / "sw" / "small" / "seed0" / "toy.ipynb"
    stamp = executed.stat().st_mtime_ns
    study.sweep({"small": {"x": 2}}, seeds=[0], notebook=str(toy), output_root=tmp_path / "sw")
    assert executed.stat().st_mtime_ns == stamp, "a complete run is not executed again"
    with pytest.raises(ValueError, match="valid parameters"):
        study.sweep({"bad": {"nope": 1}}, seeds=[0], notebook=str(toy), output_root=tmp_path / "sw2")


def test_expand_grid_forms():
    assert list(study.expand_grid({"a": {"x": 1}, "b": {"x": 2}})) == ["a", "b"]
    assert len(study.expand_grid({"x": [1, 2], "y": ["u", "v", "w"]})) == 6
    assert len(study.expand_grid([{"x": 1}, {"x": 2}])) == 2
    with pytest.raises(ValueError, match="grid must map"):
        study.expand_grid({"x": 1})
    with pytest.raises(ValueError, match="seeds"):
        study.sweep({"x": [1]}, seeds=[], notebook=runner_ok_or_fail)
    assert study.expand_grid({}) == {} and study.expand_grid([]) == {}
    with pytest.raises(ValueError, match="grid is empty"):
        study.sweep({}, seeds=[0], notebook=runner_ok_or_fail)


def test_mean_ci_matches_t_interval_by_hand():
    values = [0.61, 0.64, 0.58]
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t_975_df2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom
    got_mean, half, count = study.mean_ci(values)
    assert count == 3 and got_mean == pytest.approx(mean) and half == pytest.approx(t_975_df2 * sd / math.sqrt(n))
    assert math.isnan(study.mean_ci([0.5])[1])


@pytest.mark.parametrize("argv, message", [
    (["report", "--seeds", "0,,1"], "--seeds must be a non-empty list of distinct integers such as [0, 1, 2], got ['0', '', '1']"),
    (["report", "bogus"], "unknown study notebooks ['bogus']"),
    (["summary", "bogus", "."], "unknown dataset 'bogus'; available:"),
    (["check-data", "market1501", "/nonexistent"], "dataset folder not found"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    from reidlab.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"reidlab {argv[0]}: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "data").exists()  # nothing generated before the check

"""Torn or foreign records (a crash cut a file short, someone edited a run folder): the run is `unreadable`, listed
with its path and reason by collect, the sweep and the index, never counted as finished, and redone only when
asked. No traceback anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reidlab import study
from reidlab.study.records import record_problem


def counted_runner(parameters: dict, output_dir: Path) -> dict:
    """A sweep runner that leaves a mark of every call in the sweep's folder."""
    with open(Path(output_dir).parents[1] / "calls.txt", "a") as calls:
        calls.write(f"{Path(output_dir).parent.name}/{Path(output_dir).name}\n")
    return {"mAP": 0.1 * parameters["x"] + 0.01 * parameters["seed"]}


GRID = {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}, "d": {"x": 4}}  # d stays intact


def calls(root: Path) -> list[str]:
    path = root / "calls.txt"
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def torn(tmp_path):
    """A finished sweep of four points, then: a status.json cut in half, a metrics.json that is a list, a
    params.json edited to lose its parameters."""
    root = tmp_path / "sweep"
    study.sweep(GRID, [0], notebook=counted_runner, output_root=root, progress=False)
    status = root / "a" / "seed0" / "status.json"
    status.write_text(status.read_text()[: len(status.read_text()) // 2])
    (root / "b" / "seed0" / "metrics.json").write_text("[0.1]")
    (root / "c" / "seed0" / "params.json").write_text(json.dumps({"runner": "edited by hand"}))
    (root / "calls.txt").unlink()
    return root


def test_collect_lists_torn_records_with_path_and_reason(torn):
    frame = study.collect(torn).set_index("run")
    assert frame["status"].tolist() == ["unreadable"] * 3 + ["ok"]
    assert frame.loc["a/seed0", "error"].startswith(f"{torn / 'a' / 'seed0' / 'status.json'}: does not parse")
    assert frame.loc["b/seed0", "error"] == f"{torn / 'b' / 'seed0' / 'metrics.json'}: holds a list, not a record"
    assert frame.loc["c/seed0", "error"] == f"{torn / 'c' / 'seed0' / 'params.json'}: has no 'parameters'"
    assert frame.loc["b/seed0", "seed"] == 0 and frame.loc["b/seed0", "point"] == "b"
    assert [study.is_complete(torn / p / "seed0") for p in GRID] == [False, False, False, True]


def test_unknown_status_is_unreadable(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "done"}))
    assert record_problem(run) == f"{run / 'status.json'}: unknown status 'done' (known: submitted, running, interrupted, ok, failed)"
    (run / "status.json").write_text(json.dumps({"status": "ok"}))
    assert record_problem(run) is None


def test_a_sweep_keeps_unreadable_runs_unless_asked_then_redoes_them(torn):
    printed = []
    frame = study.sweep(GRID, [0], notebook=counted_runner, output_root=torn, progress=False, print_fn=printed.append)
    assert calls(torn) == [] and frame["status"].tolist() == ["unreadable"] * 3 + ["ok"]  # failures are retried, not these
    assert any(line.startswith("sweep: unreadable run a/seed0: ") and line.endswith("--retry-failed runs it again)")
               for line in printed)
    frame = study.sweep(GRID, [0], notebook=counted_runner, output_root=torn, progress=False, retry_failed=True)
    assert sorted(calls(torn)) == ["a/seed0", "b/seed0", "c/seed0"] and (frame["status"] == "ok").all()  # d kept
    assert frame.set_index("run").loc["b/seed0", "mAP"] == pytest.approx(0.2)


def test_the_index_lists_unreadable_runs(torn):
    index = study.render(torn, title="torn")
    page = index.read_text()
    assert "3 not finished" in page and "unreadable" in page and "holds a list, not a record" in page

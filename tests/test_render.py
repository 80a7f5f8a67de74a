"""reidlab.study.render: the notebook output filter (an nbconvert preprocessor) and the templated index
(provenance per run, a warning when a sweep's runs differ in provenance, untrained runs marked)."""

from __future__ import annotations

import importlib
import json
import re

import nbformat
import pytest

from reidlab.study import write_index
from reidlab.study.render import hide_outputs_preprocessor, render_notebook

render_module = importlib.import_module("reidlab.study.render")  # reidlab.study.render is also a function's name

PROVENANCE = {
    "reidlab_version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False, "python": "3.11.9", "torch": "2.4.0",
    "timm": "1.0.9", "cuda": None, "cudnn": None, "device": "cpu", "world_size": 1, "per_device_batch": 16,
    "amp": "none", "dataset": "synthreid", "dataset_fingerprint": "0123456789abcdef", "lock": "1111222233334444",
}


def notebook_with_outputs():
    """A notebook whose cells carry stdout, stderr and error outputs; the second cell is tagged hide-output."""
    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_code_cell("SHOWN_CELL_SOURCE")
    shown.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="visible stdout line\n"),
        nbformat.v4.new_output("stream", name="stderr", text="progress bar on stderr\n"),
        nbformat.v4.new_output("error", ename="ValueError", evalue="kept error message",
                               traceback=["ValueError: kept error message"]),
    ]
    hidden = nbformat.v4.new_code_cell("HIDDEN_CELL_SOURCE", metadata={"tags": ["hide-output"]})
    hidden.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="long training log\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "hidden display"}),
        nbformat.v4.new_output("error", ename="RuntimeError", evalue="error of a hidden cell",
                               traceback=["RuntimeError: error of a hidden cell"]),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), shown, hidden]
    return nb


def test_preprocessor_drops_stderr_and_hidden_outputs_but_keeps_errors():
    nb, _ = hide_outputs_preprocessor()().preprocess(notebook_with_outputs(), {})
    shown, hidden = nb.cells[1].outputs, nb.cells[2].outputs
    assert [(o.output_type, o.get("name")) for o in shown] == [("stream", "stdout"), ("error", None)]
    assert [o.evalue for o in hidden] == ["error of a hidden cell"]


def test_render_notebook_applies_the_filter_and_hides_code(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook_with_outputs(), path)
    page = render_notebook(path).read_text()
    assert "visible stdout line" in page and "kept error message" in page and "error of a hidden cell" in page
    assert "progress bar on stderr" not in page and "long training log" not in page and "hidden display" not in page
    assert "SHOWN_CELL_SOURCE" not in page and "HIDDEN_CELL_SOURCE" not in page


def write_run(run_dir, lr, provenance=None, status="ok", error=None):
    """A sweep run folder as reidlab.study.sweep writes it."""
    run_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps({"runner": "tests.runner", "parameters": {"lr": lr, "seed": 0}}))
    (run_dir / "status.json").write_text(json.dumps({"status": status, "error": error, "duration_s": 3.0}))
    if status == "ok":
        metrics = {"mAP": 0.25, "rank1": 0.5, **({"provenance": provenance} if provenance else {})}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_index_warns_when_the_runs_of_a_sweep_differ_in_provenance(tmp_path):
    write_run(tmp_path / "same" / "lr-0.1" / "seed0", 0.1, PROVENANCE)
    write_run(tmp_path / "same" / "lr-0.2" / "seed0", 0.2, PROVENANCE)
    write_run(tmp_path / "same" / "lr-0.3" / "seed0", 0.3, status="failed", error="ValueError: <bad lr>")
    write_run(tmp_path / "same" / "k-8" / "seed0", 0.1, {**PROVENANCE, "per_device_batch": 32})  # a parameter's doing
    write_run(tmp_path / "mixed" / "lr-0.1" / "seed0", 0.1, PROVENANCE)
    write_run(tmp_path / "mixed" / "lr-0.1" / "seed1", 0.1, {**PROVENANCE, "dataset_fingerprint": "fedcba9876543210"})
    write_run(tmp_path / "mixed" / "lr-0.2" / "seed0", 0.2, {**PROVENANCE, "torch": "2.5.1", "lock": "5555666677778888"})
    page = write_index(tmp_path, notes="<i>trusted note</i>").read_text()
    mixed, same = page.split("Runs in <code>same</code>")  # groups come in folder order
    assert "Runs in <code>mixed</code>" in mixed
    assert "differ in provenance" not in same
    assert "differ in provenance" in mixed and "<code>torch</code>: 2.4.0, 2.5.1" in mixed
    assert "<code>lock</code>: 1111222233334444, 5555666677778888 (the runs were installed from different" in mixed
    assert "<code>dataset_fingerprint in lr-0.1</code>: 0123456789abcdef, fedcba9876543210" in mixed
    assert "ValueError: &lt;bad lr&gt;" in same, "errors are escaped"
    assert "<i>trusted note</i>" in page, "notes are trusted HTML"
    assert page.count("<summary>provenance</summary>") == 6, "a folded provenance per run that has one"
    assert "aaaaaaaaaaaa" in page and "0123456789abcdef" in page and "25.0" in page


def test_index_marks_untrained_runs(tmp_path, monkeypatch):
    write_run(tmp_path / "sw" / "lr-0.1" / "seed0", 0.1, PROVENANCE)
    write_run(tmp_path / "sw" / "lr-0.2" / "seed0", 0.2, PROVENANCE)
    assert 'class="untrained-flag"' not in write_index(tmp_path).read_text(), "no untrained column, nothing marked"

    collect = render_module.collect

    def collect_with_flags(root):
        frame = collect(root)
        frame["untrained"] = frame["param.lr"] == 0.2
        frame["untrained_reason"] = frame["untrained"].map({True: "mAP at chance level", False: None})
        return frame

    monkeypatch.setattr(render_module, "collect", collect_with_flags)
    page = write_index(tmp_path).read_text()
    assert page.count('class="untrained-flag"') == 1 and "mAP at chance level" in page
    assert page.count('<tr class=" untrained">') == 1


@pytest.mark.parametrize("notes", ["", "plain"])
def test_empty_study_folder_still_gets_an_index(tmp_path, notes):
    page = write_index(tmp_path, title="empty <study>", notes=notes).read_text()
    assert "empty &lt;study&gt;" in page and "0 runs" in page


def paged_study(root):
    """30 runs of a sweep (6 points x 5 seeds; two failed and one torn record, all in the last points) and an
    executed notebook."""
    for point in range(6):
        for seed in range(5):
            failed = (point, seed) in {(4, 1), (5, 3)}
            write_run(root / "sw" / f"lr-{point}" / f"seed{seed}", point / 10, PROVENANCE,
                      status="failed" if failed else "ok", error=f"failure {point}/{seed}" if failed else None)
    (root / "sw" / "lr-5" / "seed4" / "status.json").write_text('{"status": "o')
    notebook = root / "train"
    notebook.mkdir()
    (notebook / "params.json").write_text(json.dumps({"notebook": "train", "parameters": {"epochs": 1}}))
    (notebook / "metrics.json").write_text(json.dumps({"mAP": 0.5}))
    nbformat.write(nbformat.v4.new_notebook(), notebook / "train.ipynb")


def index_pages(root) -> dict[str, str]:
    """Every page of the index, found by following the first page's list of pages."""
    first = (root / "index.html").read_text()
    return {"index.html": first, **{name: (root / name).read_text()
                                    for name in dict.fromkeys(re.findall(r'<a href="(index-\d+\.html)">', first))}}


def sweep_tables(page: str) -> str:
    """The part of an index page holding the sweeps' tables (not the first page's list of failed runs)."""
    return page.split("<h2>Runs in", 1)[1] if "<h2>Runs in" in page else ""


def test_index_pages_reach_every_run_and_put_the_failures_on_the_first(tmp_path):
    paged_study(tmp_path)
    write_index(tmp_path, rows_per_page=12)
    pages = index_pages(tmp_path)
    assert list(pages) == ["index.html", "index-2.html", "index-3.html"]
    assert sorted(p.name for p in tmp_path.glob("index*.html")) == sorted(pages)
    runs = [f"sw/lr-{point}/seed{seed}" for point in range(6) for seed in range(5)]
    where = {run: [name for name, page in pages.items() if f'<a href="{run}/">' in sweep_tables(page)] for run in runs}
    assert all(len(names) == 1 for names in where.values()), "every run's row is on exactly one page"
    # 12 runs a page (the notebook card counts), the seeds of a point together: 1 card + 2 points, 2 points, 2 points
    assert [sorted({where[f"sw/lr-{point}/seed{seed}"][0] for seed in range(5)}) for point in range(6)] == [
        ["index.html"]] * 2 + [["index-2.html"]] * 2 + [["index-3.html"]] * 2
    assert 'href="train/train.ipynb"' in pages["index.html"]
    first = pages["index.html"].split("<h2>Notebooks</h2>")[0]
    assert "3 not finished" in first and "page 1 of 3" in first and "Failed, interrupted and unreadable runs (3)" in first
    for run, page in (("sw/lr-4/seed1", "index-3.html"), ("sw/lr-5/seed3", "index-3.html"),
                      ("sw/lr-5/seed4", "index-3.html")):
        assert f'<a href="{run}/">{run}</a>' in first and f'<a href="{page}">{page}</a>' in first
    assert "failure 4/1" in first and "failure 5/3" in first and "status.json: does not parse" in first
    assert "Runs in <code>sw</code> (27/30 ok), rows 21–30" in pages["index-3.html"]
    assert '<a href="index-2.html">← previous page</a>' in pages["index-3.html"]
    # fewer runs a page than a point has seeds: the point is cut, no page holds more
    write_index(tmp_path, rows_per_page=2)
    pages = index_pages(tmp_path)
    assert len(pages) == 1 + 6 * 3 and all(sweep_tables(page).count('<td class="name">') <= 2 for page in pages.values())
    assert "… and 1 more, marked in the tables of the later pages." in pages["index.html"]
    # a smaller index later: the pages it no longer has are gone
    write_index(tmp_path)
    assert [p.name for p in tmp_path.glob("index*.html")] == ["index.html"]
    page = (tmp_path / "index.html").read_text()
    assert "page 1 of" not in page and "<h2>Pages</h2>" not in page and page.count('href="sw/lr-') == 30 + 3

"""explore.ipynb in a real JupyterLab, driven in Debian's Chromium: run every cell, move the query slider with the
keyboard, click an identity on the class map, and see the views change.

``REIDLAB_EXPLORER_PARAMETERS`` (JSON notebook parameters, e.g. a longer run's ``run_dir``) and
``REIDLAB_EXPLORER_SCREENSHOT`` (a PNG path) take the README's screenshot the same way."""

from __future__ import annotations

import json
import os
import shutil

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from jupyterlab_browser import chromium_page, jupyterlab_server, open_notebook, require_chromium, run_all_cells, \
    screenshot, wait_until
from reidlab import study
from reidlab.explore import ExploredRun

from test_notebooks import tiny_overrides

QUERY_GRID = "() => [...document.querySelectorAll('.reidlab-query-grid img')].map(img => img.src)"
SHOWN_QUERY = "() => document.querySelector('.reidlab-query-grid figure[data-query]')?.dataset.query"


@pytest.mark.slow
def test_explorer_in_jupyterlab(synth_root, tmp_path):
    require_chromium()
    run_dir = study.finished_run(None, tmp_path, "synth_cpu", tiny_overrides(synth_root), 0, 2, str(synth_root),
                                 "cpu", True, training_log=False, save_every=1)
    parameters = {"run_dir": str(run_dir), "top_k": 6, "output_dir": str(tmp_path / "out"),
                  **json.loads(os.environ.get("REIDLAB_EXPLORER_PARAMETERS", "{}"))}
    failures = ExploredRun(parameters["run_dir"], progress=False).ranking().failures.tolist()
    shown_failure = 1 if 1 in failures else failures[0]  # the filter keeps the query on show when it passes
    notebook = parameterize_notebook(load_notebook_node(str(study.notebook_path("explore"))), parameters)
    lab = tmp_path / "lab"
    lab.mkdir()
    nbformat.write(notebook, lab / "explore.ipynb")

    with jupyterlab_server(lab) as server, chromium_page(width=1500, height=1100) as page:
        open_notebook(page, server, "explore.ipynb")
        run_all_cells(page, timeout_s=400)
        wait_until(page, f"() => ({QUERY_GRID})().length", 60, "images in the query browser's grid")
        before, query_before = page.evaluate(QUERY_GRID), page.evaluate(SHOWN_QUERY)

        page.locator(".reidlab-query-slider .noUi-handle").click()
        page.keyboard.press("ArrowRight")
        wait_until(page, f"before => ({QUERY_GRID})().join() !== before.join()", 60,
                   "new images in the grid after ArrowRight on the query slider", arg=before)
        after, query_after = page.evaluate(QUERY_GRID), page.evaluate(SHOWN_QUERY)

        page.locator(".reidlab-failures-only input").check()
        wait_until(page, f"failure => ({SHOWN_QUERY})() === failure", 60, "a rank-1 failure after the "
                   "failures-only filter", arg=str(shown_failure))
        failed = page.locator(".reidlab-query-browser").inner_text()
        shot = screenshot(page, page.locator(".reidlab-query-browser"), tmp_path / "query-browser.png")

        dots = page.locator(".reidlab-class-map .dot")  # bqplot's scatter points: the extension rendered the map
        wait_until(page, "() => document.querySelectorAll('.reidlab-class-map .dot').length > 0", 60, "class map points")
        dots.nth(4).click()
        wait_until(page, "() => /identity \\d+/.test(document.querySelector('.reidlab-class-details').textContent)",
                   60, "identity details after a click on the class map")
        details = page.locator(".reidlab-class-details").inner_text()

    assert query_before == "0" and query_after == "1"
    rows = 2 if parameters.get("compare_run_dir") else 1  # a compared run ranks the same query in a second row
    assert len(after) == len(before) == rows * (1 + parameters["top_k"]) and after[0] != before[0]
    assert f"#{shown_failure}: " in failed and "first true match at rank 1 " not in failed.split(";")[0]
    assert shot.stat().st_size > 2048
    assert "hard-batch neighbours" in details
    if os.environ.get("REIDLAB_EXPLORER_SCREENSHOT"):
        shutil.copy(shot, os.environ["REIDLAB_EXPLORER_SCREENSHOT"])

"""HTML without code for executed notebooks, and the study index.

Notebooks go through nbconvert's HTMLExporter with a preprocessor that filters their outputs; the index is a
Jinja2 template (``templates/index.html.j2``) filled with plain data prepared here, one page per ``ROWS_PER_PAGE``
runs.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reidlab.utils import atomic_write

from .io import utc_now
from .records import (FIGURES_DIR, HEADLINE_METRICS, PROVENANCE_PREFIX, SEED_FOLDER, collect, find_runs,
                      provenance_differences, run_params)
from .stats import with_untrained_flags

# Metrics stored as fractions and shown in percent.
PERCENT_METRICS = {*HEADLINE_METRICS, "mINP_rerank"}
# Notebook cards come in this order, other notebooks after them.
NOTEBOOK_ORDER = ("train", "ablation", "positive_pairs", "class_similarity", "explore")
# Provenance that follows from a run's parameters (sampler, optim.amp, data root): points of a sweep that vary
# those differ in it by design, so it is compared among the seeds of a point only; the rest (code, software,
# hardware) across the whole sweep.
CONFIGURED_PROVENANCE = ("per_device_batch", "amp", "dataset", "dataset_fingerprint")
# Runs (table rows and notebook cards) on one index page: a page stays about a megabyte however many runs there are.
ROWS_PER_PAGE = 1000
UNFINISHED = ("failed", "interrupted", "unreadable")  # statuses listed first, with their error


@functools.cache
def hide_outputs_preprocessor() -> type:
    """The nbconvert ``Preprocessor`` class that filters a notebook's outputs for the HTML. Made on first use:
    importing nbconvert takes over a second, importing reidlab.study should not."""
    from nbconvert.preprocessors import Preprocessor

    class HideOutputsPreprocessor(Preprocessor):
        """Drops stderr streams (progress bars, warnings) and every output of cells tagged ``hide-output``
        (long logs); errors are kept, so a failed run's page shows why it failed."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code":
                hidden = "hide-output" in cell.metadata.get("tags", [])
                cell.outputs = [
                    o for o in cell.outputs
                    if o.output_type == "error"
                    or not (hidden or (o.output_type == "stream" and o.get("name") == "stderr"))
                ]
            return cell, resources

    return HideOutputsPreprocessor


def render_notebook(notebook: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Export an executed notebook to HTML without code cells (outputs and markdown only), its outputs filtered
    by :func:`hide_outputs_preprocessor`."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(hide_outputs_preprocessor(), enabled=True)
    node = nbformat.read(notebook, as_version=4)
    node.metadata.pop("widgets", None)  # without the widgets' state, each widget output falls back to its image
    body, _ = exporter.from_notebook_node(node)
    output = Path(output) if output else notebook.with_suffix(".html")
    atomic_write(output, body)
    return output


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _figure_for(run_dir: Path) -> Path | None:
    """The figure an index card shows: ``figures/summary.png`` if the notebook made one, else the first PNG."""
    preferred = run_dir / FIGURES_DIR / "summary.png"
    if preferred.exists():
        return preferred
    pngs = sorted(run_dir.glob(f"{FIGURES_DIR}/*.png")) or sorted(run_dir.glob("*.png"))
    return pngs[0] if pngs else None


def _params(row: Mapping[str, Any]) -> dict[str, list]:
    """Top-level parameters shown inline; nested ones (overrides, knobs) folded under their group name."""
    items = [(k[6:], v) for k, v in row.items() if k.startswith("param.") and not _missing(v) and k != "param.output_dir"]
    nested: dict[str, list] = {}
    for k, v in items:
        if "." in k:
            group, name = k.split(".", 1)
            nested.setdefault(group, []).append((name, _format_value(v)))
    return {"top": [(k, _format_value(v)) for k, v in items if "." not in k], "nested": list(nested.items())}


def _short(text: str) -> dict[str, str | None]:
    """Paths shown by their last component, the full path as a tooltip."""
    if "/" in text and " " not in text:
        return {"text": text.rstrip("/").rsplit("/", 1)[-1], "title": text}
    return {"text": text, "title": None}


def _provenance(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the folded provenance of a run shows; empty for a run without any (failed, or not a training run)."""
    prov = {k.removeprefix(PROVENANCE_PREFIX): v for k, v in row.items()
            if k.startswith(PROVENANCE_PREFIX) and not _missing(v)}
    if not prov:
        return []
    commit = prov.get("git_commit")
    shown = {
        "commit": f"{commit[:12]}{' (dirty)' if prov.get('git_dirty') else ''}" if commit else "not a git checkout",
        "torch": prov.get("torch"),
        "device": prov.get("device"),
        "amp": prov.get("amp"),
        "data": " ".join(str(prov[k]) for k in ("dataset", "dataset_fingerprint") if k in prov),
    }
    return [(label, _format_value(value)) for label, value in shown.items() if value]


def _run(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a card and a table row share: status, error, seconds, provenance, the untrained flag."""
    untrained = not _missing(row.get("untrained")) and bool(row.get("untrained"))
    reason = row.get("untrained_reason")
    return {
        "run": row["run"],
        "status": str(row["status"]),
        "error": str(row.get("error") or "") if row["status"] in UNFINISHED else None,
        "seconds": None if _missing(row.get("duration_s")) else f"{row['duration_s']:.0f}",
        "provenance": _provenance(row),
        "untrained": untrained,
        "untrained_reason": str(reason) if untrained and not _missing(reason) else None,
    }


def _card(row: Mapping[str, Any], root: Path, headline: list[str]) -> dict[str, Any]:
    run_dir = root / row["run"]
    page = run_dir / f"{row['kind']}.html"
    figure = _figure_for(run_dir) if row["status"] == "ok" else None  # a failed run's figures may be stale
    metrics = " · ".join(  # headline metrics are fractions, unless a notebook reported them otherwise
        f"{m} {row[m] * 100:.1f}" if row[m] <= 1 else f"{m} {_format_value(row[m])}"
        for m in headline if not _missing(row.get(m))
    )
    return {
        **_run(row),
        "kind": row["kind"],
        "link": page.relative_to(root).as_posix() if page.exists() else f"{row['run']}/{row['kind']}.ipynb",
        "figure": figure.relative_to(root).as_posix() if figure else None,
        "metrics": metrics,
        "params": _params(row),
    }


def _group_name(run: str) -> str:
    """The sweep a run belongs to: the folder above ``<point>/<seed>`` (``.`` for the rendered sweep folder itself);
    for a run folder not named by seed, the folder two levels up, or its own name at the top."""
    parts = Path(run).parts
    if len(parts) == 2 and SEED_FOLDER.fullmatch(parts[1]):
        return "."
    return "/".join(parts[:-2]) if len(parts) > 2 else (parts[0] if parts else ".")


def _sweep_group(name: str, runs: list[dict], runs_frame: "pandas.DataFrame") -> dict[str, Any]:  # noqa: F821
    """A sweep's table (``runs_frame``: the rows of ``runs``): the metrics, the parameters that vary (shared ones go
    in a footnote) and a warning when the runs differ in provenance that their parameters do not explain (torch,
    GPU, commit; the data or batch among the seeds of one point), which the table would otherwise hide."""
    present = sorted({k for r in runs for k, v in r.items() if k.startswith("param.") and not _missing(v)}
                     - {"param.seed", "param.output_dir"})
    values = {k: {json.dumps(r.get(k), default=str) for r in runs} for k in present}
    varying = [k for k in present if len(values[k]) > 1]
    metric_cols = [m for m in (*HEADLINE_METRICS, "mINP_rerank", "epochs_completed")
                   if m in runs_frame.columns and any(not _missing(r.get(m)) for r in runs)]
    environment = [c for c in runs_frame.columns
                   if c.startswith(PROVENANCE_PREFIX) and c.removeprefix(PROVENANCE_PREFIX) not in CONFIGURED_PROVENANCE]
    differences = provenance_differences(runs_frame, environment) | _differences_among_seeds(runs_frame)
    rows = []
    for r in runs:
        metrics = [
            "" if _missing(r.get(c)) else (f"{r[c] * 100:.1f}" if c in PERCENT_METRICS else _format_value(r[c]))
            for c in metric_cols
        ]
        varying_cells = [_short("" if _missing(r.get(c)) else _format_value(r.get(c))) for c in varying]
        rows.append({**_run(r), "point": r["point"], "seed": _format_value(r["seed"]), "metrics": metrics,
                     "varying": varying_cells})
    return {
        "name": name,
        "ok": sum(r["status"] == "ok" for r in runs),
        "runs": len(runs),
        "shared": [(k[6:], _format_value(runs[0].get(k))) for k in present if len(values[k]) == 1],
        "metric_headers": [f"{c} (%)" if c in PERCENT_METRICS else c for c in metric_cols],
        "varying_headers": [c[6:].removeprefix("overrides.") for c in varying],
        "provenance_differences": [(key, [_format_value(v) for v in vals]) for key, vals in differences.items()],
        "rows": rows,
    }


def _differences_among_seeds(runs_frame: "pandas.DataFrame") -> dict[str, list]:  # noqa: F821
    """The configured provenance that differs among the seeds of a point, as ``"<key> in <point>"``. One grouped
    count over the sweep finds the points that may differ; only those are compared value by value, so that a
    sweep of thousands of points costs one pass, not one comparison per point."""
    columns = [c for c in runs_frame.columns
               if c.startswith(PROVENANCE_PREFIX) and c.removeprefix(PROVENANCE_PREFIX) in CONFIGURED_PROVENANCE]
    if not columns or runs_frame.empty:
        return {}
    counts = runs_frame[columns].groupby(runs_frame["point"]).nunique(dropna=False)
    differences = {}
    for point in counts.index[counts.gt(1).any(axis=1)]:
        among_seeds = provenance_differences(runs_frame[runs_frame["point"] == point], CONFIGURED_PROVENANCE)
        differences.update({f"{key} in {point}": distinct for key, distinct in among_seeds.items()})
    return differences


def _pages(cards: list[dict], sweeps: list[dict], rows_per_page: int) -> list[list[tuple[dict | None, int]]]:
    """Cards, then the sweeps' rows, cut into pages of at most ``rows_per_page`` runs: each entry is (None, card
    position) or (sweep, row position). The seeds of a point stay on one page unless the point alone is larger."""
    units = [[(None, i)] for i in range(len(cards))]
    for sweep in sweeps:
        rows = sweep["rows"]
        starts = [i for i in range(len(rows)) if i == 0 or rows[i]["point"] != rows[i - 1]["point"]]
        units += [[(sweep, i) for i in range(start, end)] for start, end in zip(starts, [*starts[1:], len(rows)])]
    pages: list[list] = [[]]
    for unit in units:
        for start in range(0, len(unit), rows_per_page):
            piece = unit[start:start + rows_per_page]
            if pages[-1] and len(pages[-1]) + len(piece) > rows_per_page:
                pages.append([])
            pages[-1].extend(piece)
    return pages


def _page_content(entries: list[tuple[dict | None, int]], cards: list[dict]) -> dict[str, list]:
    """A page's cards and sweep tables: a sweep cut across pages shows its rows here and which ones they are."""
    parts = []
    for _, same_sweep in itertools.groupby((e for e in entries if e[0] is not None), key=lambda e: id(e[0])):
        same_sweep = list(same_sweep)
        sweep, first, last = same_sweep[0][0], same_sweep[0][1], same_sweep[-1][1]
        parts.append({**sweep, "rows": sweep["rows"][first:last + 1],
                      "part": None if last - first + 1 == sweep["runs"] else f"rows {first + 1}–{last + 1}"})
    return {"cards": [cards[i] for sweep, i in entries if sweep is None], "groups": parts}


def _page_name(number: int) -> str:
    return "index.html" if number == 1 else f"index-{number}.html"


def write_index(root: str | os.PathLike, title: str = "reidlab study", notes: str = "",
                rows_per_page: int = ROWS_PER_PAGE) -> Path:
    """``root/index.html``: a card per executed notebook (figure, parameters, headline metrics, link to its
    HTML) and a table per sweep with every run, its parameters, status, metrics and provenance; failed runs show
    their error, untrained ones their reason, and a sweep whose runs differ in provenance gets a warning.
    ``notes`` is trusted HTML.

    At most ``rows_per_page`` runs go on a page, so a page stays small however many runs there are: the rest go
    on ``index-2.html``, ``index-3.html`` ..., which the first page lists; the first page also lists the failed
    and unreadable runs (up to ``rows_per_page``), each with the page that holds its row. Returns the first page."""
    import jinja2

    root = Path(root).resolve()
    frame = collect(root)
    if "chance_mAP" in frame.columns:  # training runs record their split's chance level
        frame = with_untrained_flags(frame, frame["chance_mAP"])
    headline = [m for m in HEADLINE_METRICS if m in frame.columns]
    records = frame.to_dict("records")
    order = {name: i for i, name in enumerate(NOTEBOOK_ORDER)}
    executed = [(root / r["run"] / f"{r['kind']}.ipynb").exists() for r in records]
    notebook_runs = sorted((r for r, notebook in zip(records, executed, strict=True) if notebook),
                           key=lambda r: (order.get(r["kind"], len(order)), r["run"]))
    groups: dict[str, list[int]] = {}
    for i, (r, notebook) in enumerate(zip(records, executed, strict=True)):
        if not notebook:
            groups.setdefault(_group_name(r["run"]), []).append(i)
    cards = [_card(r, root, headline) for r in notebook_runs]
    sweeps = [_sweep_group(name, [records[i] for i in rows], frame.iloc[rows]) for name, rows in groups.items()]
    pages = _pages(cards, sweeps, rows_per_page)
    problems = [{**run, "page": _page_name(number)} for number, entries in enumerate(pages, 1)
                for run in (_entry(entry, cards) for entry in entries) if run["status"] in UNFINISHED]
    environment = jinja2.Environment(loader=jinja2.PackageLoader("reidlab.study", "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    template = environment.get_template("index.html.j2")
    shared = {"title": title, "generated": utc_now(), "num_runs": len(frame), "num_pages": len(pages),
              "num_failed": int(frame["status"].isin(UNFINISHED).sum()) if len(frame) else 0,
              "unfinished": UNFINISHED}
    contents = [{"page": _page_name(number), "first": _entry(entries[0], cards)["run"],
                 "last": _entry(entries[-1], cards)["run"], "runs": len(entries)}
                for number, entries in enumerate(pages, 1) if entries]
    for number, entries in enumerate(pages, 1):
        first = number == 1
        page = template.render(
            **shared, **_page_content(entries, cards), number=number,
            previous=_page_name(number - 1) if number > 1 else None,
            next=_page_name(number + 1) if number < len(pages) else None,
            notes=notes if first else "", contents=contents if first and len(pages) > 1 else [],
            problems=problems[:rows_per_page] if first else [], problems_elsewhere=len(problems[rows_per_page:]),
        )
        atomic_write(root / _page_name(number), page)
    for stale in root.glob("index-*.html"):  # pages of an earlier index with more runs
        if (name := re.fullmatch(r"index-(\d+)\.html", stale.name)) and int(name.group(1)) > len(pages):
            stale.unlink()
    return root / _page_name(1)


def _entry(entry: tuple[dict | None, int], cards: list[dict]) -> dict:
    """The card or the table row a page entry stands for."""
    sweep, i = entry
    return cards[i] if sweep is None else sweep["rows"][i]


def render(root: str | os.PathLike = "reports", title: str = "reidlab study", notes: str = "") -> Path:
    """HTML (no code cells) for every executed notebook in the run folders under ``root``, then
    ``root/index.html`` (and its further pages, see :func:`write_index`). Returns the index path."""
    root = Path(root)
    for run_dir in find_runs(root):
        kind = run_params(run_dir).get("notebook")
        executed = run_dir / f"{kind}.ipynb" if kind else None
        if executed is not None and executed.exists():
            render_notebook(executed)
    return write_index(root, title=title, notes=notes)

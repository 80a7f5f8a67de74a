"""HTML without code for executed notebooks, and the study index."""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .records import HEADLINE_METRICS, _now, collect, find_runs, run_params


def render_notebook(notebook: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Export an executed notebook to HTML without code cells (outputs and markdown only); stderr streams
    (progress bars, warnings) and the outputs of cells tagged ``hide-output`` (long logs) are dropped from
    the HTML, errors are kept."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            hidden = "hide-output" in cell.get("metadata", {}).get("tags", [])
            cell["outputs"] = [
                o for o in cell.get("outputs", [])
                if o.get("output_type") == "error"
                or not (hidden or (o.get("output_type") == "stream" and o.get("name") == "stderr"))
            ]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    output = Path(output) if output else notebook.with_suffix(".html")
    output.write_text(body, encoding="utf-8")
    return output


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


_INDEX_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}.sub{color:#666;margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:8px;padding:1rem;background:#fafafa}
.card img{width:100%;max-height:300px;object-fit:contain;border:1px solid #eee;background:#fff;border-radius:4px}
.card h3{margin:.1rem 0 .5rem}.ok{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
th,td{border-bottom:1px solid #e5e5e5;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}tr.failed-run td{background:#fff0f0}td.name{white-space:nowrap}
details{margin:.3rem 0;font-size:.85rem}summary{cursor:pointer;color:#555}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre.err{white-space:pre-wrap;max-height:9rem;overflow:auto;background:#fff0f0;padding:.4rem;font-size:.75rem;margin:.3rem 0}
code{background:#f0f0f0;padding:0 .2rem;border-radius:3px}
"""


def _figure_for(run_dir: Path) -> Path | None:
    """The figure an index card shows: ``figures/summary.png`` if the notebook made one, else the first PNG."""
    preferred = run_dir / "figures" / "summary.png"
    if preferred.exists():
        return preferred
    pngs = sorted(run_dir.glob("figures/*.png")) or sorted(run_dir.glob("*.png"))
    return pngs[0] if pngs else None


def _params_html(row: Mapping[str, Any]) -> str:
    """Top-level parameters inline; nested ones (overrides, knobs) folded away under their group name."""
    items = [(k[6:], v) for k, v in row.items() if k.startswith("param.") and not _missing(v) and k != "param.output_dir"]
    top = [(k, v) for k, v in items if "." not in k]
    nested: dict[str, list] = {}
    for k, v in items:
        if "." in k:
            nested.setdefault(k.split(".", 1)[0], []).append((k.split(".", 1)[1], v))
    text = "<br>".join(f"<code>{html.escape(k)}</code> = {html.escape(_format_value(v))}" for k, v in top)
    for group, values in nested.items():
        body = "<br>".join(f"<code>{html.escape(k)}</code> = {html.escape(_format_value(v))}" for k, v in values)
        text += f"<details><summary>{html.escape(group)} ({len(values)})</summary>{body}</details>"
    return text


def _short_html(text: str) -> str:
    """Paths shown by their last component, the full path as a tooltip."""
    if "/" in text and " " not in text:
        return f"<span title='{html.escape(text)}'>{html.escape(text.rstrip('/').rsplit('/', 1)[-1])}</span>"
    return html.escape(text)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_index(root: str | os.PathLike, title: str = "reidlab study", notes: str = "") -> Path:
    """``root/index.html``: a card per executed notebook (figure, parameters, headline metrics, link to its
    HTML) and a table per sweep with every run, its parameters, status and metrics; failed runs show their
    error."""
    root = Path(root).resolve()
    frame = collect(root)
    metric_cols = [c for c in frame.columns if c not in {"run", "point", "seed", "kind", "status", "error", "duration_s"} and not c.startswith("param.")]
    headline = [m for m in HEADLINE_METRICS if m in metric_cols]
    parts = [f"<h1>{html.escape(title)}</h1><p class='sub'>generated {_now()} · {len(frame)} runs"
             f" · {int((frame['status'] == 'failed').sum()) if len(frame) else 0} failed</p>"]
    if notes:
        parts.append(f"<p>{notes}</p>")
    records = frame.to_dict("records")
    order = {name: i for i, name in enumerate(("train", "ablation", "positive_pairs", "class_similarity"))}
    notebook_runs = sorted((r for r in records if (root / r["run"] / f"{r['kind']}.ipynb").exists()),
                           key=lambda r: (order.get(r["kind"], len(order)), r["run"]))
    if notebook_runs:
        parts.append("<h2>Notebooks</h2><div class='cards'>")
        for r in notebook_runs:
            run_dir = root / r["run"]
            page = run_dir / f"{r['kind']}.html"
            link = page.relative_to(root).as_posix() if page.exists() else f"{r['run']}/{r['kind']}.ipynb"
            figure = _figure_for(run_dir) if r["status"] == "ok" else None  # a failed run's figures may be stale
            metrics = " · ".join(f"{m} {r[m] * 100:.1f}" if m in {"mAP", "rank1", "rank5", "mINP", "mAP_rerank", "rank1_rerank"} and r[m] <= 1 else f"{m} {_format_value(r[m])}"
                                 for m in headline if not _missing(r.get(m)))
            parts.append("<div class='card'>")
            parts.append(f"<h3><a href='{html.escape(link)}'>{html.escape(r['kind'])}</a> <span class='{r['status']}'>{html.escape(str(r['status']))}</span></h3>")
            if figure:
                parts.append(f"<a href='{html.escape(link)}'><img src='{html.escape(figure.relative_to(root).as_posix())}' alt='{html.escape(r['kind'])} figure'></a>")
            if metrics:
                parts.append(f"<p><b>{html.escape(metrics)}</b></p>")
            if not _missing(r.get("duration_s")):
                parts.append(f"<p class='sub'>{r['duration_s']:.0f} s · <code>{html.escape(r['run'])}</code></p>")
            parts.append(f"<p>{_params_html(r)}</p>")
            if r["status"] == "failed":
                parts.append(f"<pre class='err'>{html.escape(str(r.get('error') or ''))}</pre>")
            parts.append("</div>")
        parts.append("</div>")
    sweep_runs = [r for r in records if r not in notebook_runs]
    groups: dict[str, list[dict]] = {}
    for r in sweep_runs:
        parts_of_path = Path(r["run"]).parts
        group = "/".join(parts_of_path[:-2]) if len(parts_of_path) > 2 else (parts_of_path[0] if parts_of_path else ".")
        groups.setdefault(group, []).append(r)
    for group, runs in groups.items():
        present = sorted({k for r in runs for k, v in r.items() if k.startswith("param.") and not _missing(v)} - {"param.seed", "param.output_dir"})
        # Parameters shared by every run of the group go in a footnote; the table shows what varies.
        values = {k: {json.dumps(r.get(k), default=str) for r in runs} for k in present}
        varying = [k for k in present if len(values[k]) > 1]
        constant = [k for k in present if len(values[k]) == 1]
        cols = [m for m in (*HEADLINE_METRICS, "mINP_rerank", "epochs_completed") if m in metric_cols and any(not _missing(r.get(m)) for r in runs)]
        ok = sum(r["status"] == "ok" for r in runs)
        parts.append(f"<h2>Runs in <code>{html.escape(group)}</code> ({ok}/{len(runs)} ok)</h2>")
        if constant:
            shared = "<br>".join(f"<code>{html.escape(k[6:])}</code>={html.escape(_format_value(runs[0].get(k)))}" for k in constant)
            parts.append(f"<details><summary>settings shared by all {len(runs)} runs</summary><p>{shared}</p></details>")
        parts.append("<table><tr><th>run</th><th>seed</th><th>status</th><th>seconds</th>")
        parts.extend(f"<th>{html.escape(c)}{' (%)' if c in HEADLINE_METRICS or c == 'mINP_rerank' else ''}</th>" for c in cols)
        parts.extend(f"<th>{html.escape(c[6:].removeprefix('overrides.'))}</th>" for c in varying)
        parts.append("</tr>")
        for r in runs:
            row_class = " class='failed-run'" if r["status"] == "failed" else ""
            parts.append(f"<tr{row_class}><td class='name'><a href='{html.escape(r['run'])}/'>{html.escape(r['point'])}</a></td>"
                         f"<td class='num'>{html.escape(_format_value(r['seed']))}</td>")
            status_cell = f"<span class='{r['status']}'>{html.escape(str(r['status']))}</span>"
            if r["status"] == "failed":
                status_cell += f"<pre class='err'>{html.escape(str(r.get('error') or ''))}</pre>"
            seconds = "" if _missing(r.get("duration_s")) else f"{r['duration_s']:.0f}"
            parts.append(f"<td>{status_cell}</td><td class='num'>{seconds}</td>")
            for c in cols:
                value = r.get(c)
                text = "" if _missing(value) else (f"{value * 100:.1f}" if c in HEADLINE_METRICS or c == "mINP_rerank" else _format_value(value))
                parts.append(f"<td class='num'>{text}</td>")
            parts.extend(f"<td>{'' if _missing(r.get(c)) else _short_html(_format_value(r.get(c)))}</td>" for c in varying)
            parts.append("</tr>")
        parts.append("</table>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_INDEX_CSS}</style></head><body>{''.join(parts)}</body></html>")
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def render(root: str | os.PathLike = "reports", title: str = "reidlab study", notes: str = "") -> Path:
    """HTML (no code cells) for every executed notebook in the run folders under ``root``, then
    ``root/index.html``. Returns the index path."""
    root = Path(root)
    for run_dir in find_runs(root):
        kind = run_params(run_dir).get("notebook")
        executed = run_dir / f"{kind}.ipynb" if kind else None
        if executed is not None and executed.exists():
            render_notebook(executed)
    return write_index(root, title=title, notes=notes)

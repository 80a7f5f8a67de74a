"""Run the study: papermill notebooks, seeded sweeps, result tables and rendered HTML reports.

A *run* is a folder holding ``params.json`` (what was asked), ``status.json`` (ok / failed with the
error) and, when it succeeded, ``metrics.json`` (what came out) plus figures. Sweeps skip runs whose
``metrics.json`` exists with an ok status, so an interrupted sweep resumes where it stopped; a failed run
is recorded as failed and the sweep goes on. :func:`collect` turns a folder of runs into a DataFrame,
:func:`render` turns executed notebooks into HTML without code and writes ``index.html``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
# Shown first in tables and in the index, in this order; other scalar metrics follow.
HEADLINE_METRICS = ("mAP", "rank1", "rank5", "mINP", "mAP_rerank", "rank1_rerank")

Runner = Callable[[dict, Path], Mapping[str, Any]]


# --------------------------------------------------------------------------- notebooks


def notebook_path(name: str | os.PathLike) -> Path:
    """Resolve ``"train"`` / ``"train.ipynb"`` to ``notebooks/train.ipynb``; a path to an .ipynb is kept."""
    candidate = Path(name)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate.resolve()
    stem = candidate.name[:-6] if candidate.name.endswith(".ipynb") else candidate.name
    path = NOTEBOOKS_DIR / f"{stem}.ipynb"
    if not path.exists():
        available = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {name!r}: not a file and not in {NOTEBOOKS_DIR} (available: {available})")
    return path


def notebook_parameters(name: str | os.PathLike) -> dict[str, dict]:
    """The notebook's ``parameters`` cell as papermill reads it: name -> {default, inferred_type_name, help}."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook_path(name))))


def check_parameters(name: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """Raise ValueError for parameters the notebook does not declare (papermill would only warn)."""
    valid = notebook_parameters(name)
    unknown = sorted(set(parameters) - set(valid))
    if unknown:
        listing = "\n".join(
            f"  {key} = {spec['default']}"
            + (f"  ({spec['inferred_type_name']})" if spec["inferred_type_name"] not in (None, "None") else "")
            + (f"  # {spec['help']}" if spec["help"] else "")
            for key, spec in valid.items()
        )
        raise ValueError(
            f"unknown parameter(s) {unknown} for notebook {notebook_path(name).name}; valid parameters:\n{listing}"
        )


def _runs_this_interpreter(argv0: str) -> bool:
    # jupyter_client replaces a bare "python"/"python3" argv[0] with the launching interpreter.
    if argv0 in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return True
    try:
        return Path(argv0).parent.resolve() == Path(sys.executable).parent.resolve()
    except OSError:
        return False


def resolve_kernel_name(kernel_name: str | None = None) -> str:
    """The kernel papermill should use: the given one, else "reidlab" (``make install``) or "python3",
    whichever runs this very interpreter (so notebooks see the same installed reidlab)."""
    if kernel_name:
        return kernel_name
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    for name in ("reidlab", "python3"):
        try:
            spec = manager.get_kernel_spec(name)
        except NoSuchKernel:
            continue
        if spec.argv and _runs_this_interpreter(spec.argv[0]):
            return name
    raise RuntimeError(
        f"no Jupyter kernel runs {sys.executable}; install one with "
        f"`{sys.executable} -m ipykernel install --sys-prefix --name reidlab` or pass kernel_name="
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_params(run_dir: Path) -> dict:
    """``params.json`` of a run made by reidlab.study; for a notebook executed with plain papermill into its
    own output folder, the same record read from the executed notebook's papermill metadata."""
    params = _read_json(run_dir / PARAMS_FILE)
    if params:
        return params
    for executed in sorted(run_dir.glob("*.ipynb")):
        papermill = _read_json(executed).get("metadata", {}).get("papermill", {})
        if papermill.get("input_path") and Path(papermill["input_path"]).stem == executed.stem:
            return {"notebook": executed.stem, "parameters": papermill.get("parameters", {})}
    return {}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _error_record(exc: BaseException) -> dict:
    """The error as the index shows it: for a failed notebook cell, papermill's ename/evalue and the cell."""
    record = {"error": f"{type(exc).__name__}: {exc}".strip(), "traceback": "".join(traceback.format_exception(exc))}
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        record["error"] = f"{ename}: {evalue}"
        record["error_cell"] = getattr(exc, "cell_index", None)
        record["traceback"] = "\n".join(getattr(exc, "traceback", []) or [])
    # Notebook tracebacks carry ANSI colour codes; the index is plain HTML.
    record["traceback"] = re.sub(r"\x1b\[[0-9;]*m", "", record["traceback"])
    return record


def run_notebook(
    name: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike = "reports/run",
    kernel_name: str | None = None,
    timeout: float | None = None,
    log_output: bool = False,
    progress_bar: bool = False,
    stdout: Any = None,
) -> dict:
    """Execute a notebook with papermill into ``output_dir/<name>.ipynb`` and return the run record.

    ``output_dir`` is passed to the notebook as its ``output_dir`` parameter (when it declares one) and is
    the kernel's working directory. ``status.json`` records ok/failed; on failure the papermill error is
    re-raised after the partially executed notebook (with its error cell) has been saved. ``stdout``: a
    file-like object that receives the kernel's printed output as it runs (progress of long notebooks).
    """
    import papermill

    source = notebook_path(name)
    parameters = dict(parameters or {})
    check_parameters(source, parameters)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "output_dir" in notebook_parameters(source):
        parameters.setdefault("output_dir", str(out))
    executed = out / source.name
    _write_json(out / PARAMS_FILE, {"notebook": source.stem, "parameters": parameters})
    status = {"status": "running", "notebook": executed.name, "started": _now()}
    _write_json(out / STATUS_FILE, status)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=_jsonable(parameters),
            kernel_name=resolve_kernel_name(kernel_name),
            execution_timeout=timeout,
            log_output=log_output,
            progress_bar=progress_bar,
            stdout_file=stdout,
            cwd=str(out),
        )
    except BaseException as exc:
        status.update(status="failed", finished=_now(), duration_s=round(time.perf_counter() - start, 2))
        status.update(_error_record(exc))
        _write_json(out / STATUS_FILE, status)
        raise
    status.update(status="ok", finished=_now(), duration_s=round(time.perf_counter() - start, 2))
    _write_json(out / STATUS_FILE, status)
    return {**status, "output_dir": str(out), "metrics": _read_json(out / METRICS_FILE)}


# --------------------------------------------------------------------------- sweeps


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_")


def point_name(parameters: Mapping[str, Any]) -> str:
    """A readable, stable folder name for a grid point (long ones get a hash suffix)."""
    if not parameters:
        return "default"
    text = ",".join(f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in sorted(parameters.items()))
    slug = _slug(text.replace('"', ""))
    if len(slug) > 80:
        slug = slug[:70] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return slug


def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """Grid points by name. ``grid`` is one of:

    - ``{"sp-h": {...params}, "adasp": {...}}``: named points;
    - ``{"lr": [1e-3, 1e-4], "loss": ["a", "b"]}``: the cartesian product of the value lists;
    - ``[{...params}, {...}]``: explicit points, named from their parameters.
    """
    if isinstance(grid, Mapping):
        if not grid:
            return {}
        values = list(grid.values())
        if values and all(isinstance(v, Mapping) for v in values):
            return {str(k): dict(v) for k, v in grid.items()}
        if all(isinstance(v, (list, tuple)) for v in values):
            keys = list(grid)
            points = [dict(zip(keys, combo)) for combo in itertools.product(*values)]
            return {point_name(p): p for p in points}
        raise ValueError(
            "grid must map names to parameter dicts, or parameter names to lists of values "
            f"(got value types {sorted({type(v).__name__ for v in values})})"
        )
    points = [dict(p) for p in grid]
    named = {point_name(p): p for p in points}
    if len(named) != len(points):
        raise ValueError("grid has duplicate points")
    return named


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _execute(runner: Runner | str, parameters: dict, run_dir: Path, kernel_name: str | None, timeout: float | None) -> dict:
    """Run one point; never raises: the outcome is written to ``status.json`` and returned."""
    if (run_dir / STATUS_FILE).exists():  # an earlier failed or interrupted attempt: start over, not on its checkpoints
        shutil.rmtree(run_dir)
    if isinstance(runner, str):
        try:
            return run_notebook(runner, parameters, run_dir, kernel_name=kernel_name, timeout=timeout)
        except Exception:  # noqa: BLE001 - recorded by run_notebook in status.json
            return _read_json(run_dir / STATUS_FILE) | {"output_dir": str(run_dir)}
    run_dir.mkdir(parents=True, exist_ok=True)
    runner_name = f"{getattr(runner, '__module__', '?')}.{getattr(runner, '__qualname__', repr(runner))}"
    _write_json(run_dir / PARAMS_FILE, {"runner": runner_name, "parameters": parameters})
    status = {"status": "running", "started": _now()}
    _write_json(run_dir / STATUS_FILE, status)
    start = time.perf_counter()
    try:
        metrics = dict(runner(dict(parameters), run_dir) or {})
        if metrics:
            _write_json(run_dir / METRICS_FILE, metrics)
        status.update(status="ok")
    except Exception as exc:  # noqa: BLE001 - a failed run is data, the sweep goes on
        metrics = {}
        status.update(status="failed", **_error_record(exc))
    status.update(finished=_now(), duration_s=round(time.perf_counter() - start, 2))
    _write_json(run_dir / STATUS_FILE, status)
    return {**status, "output_dir": str(run_dir), "metrics": metrics}


def _run_in_processes(runner: Runner, todo: list[tuple[dict, Path]], workers: int, threads_per_worker: int | None,
                      kernel_name: str | None, timeout: float | None, report_done: Callable[[dict, int], None]) -> None:
    """Run in-process runners in worker processes. A worker that dies (killed, out of memory) breaks the
    pool: the runs it was executing are recorded as failed, the ones not yet started go to a fresh pool."""
    import multiprocessing

    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    done, pending = 0, list(todo)
    while pending:
        pool_started = _now()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))
        with pool:
            futures = [(pool.submit(_execute, runner, p, d, kernel_name, timeout), p, d) for p, d in pending]
            not_started: list[tuple[dict, Path]] = []
            for future, parameters, run_dir in futures:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    status = _read_json(run_dir / STATUS_FILE)
                    if status.get("started", "") < pool_started:  # left by an earlier sweep, not begun in this pool
                        not_started.append((parameters, run_dir))
                        continue
                    if status.get("status") == "running":
                        status.update(status="failed", finished=_now(), error="the worker process running it died "
                                      "(killed, e.g. out of memory); the next sweep retries it")
                        _write_json(run_dir / STATUS_FILE, status)
                    result = {**status, "output_dir": str(run_dir), "metrics": _read_json(run_dir / METRICS_FILE)}
                done += 1
                report_done(result, done)
        if len(not_started) == len(pending):
            raise RuntimeError("the sweep's worker processes died before running anything; run with workers=1 to see why")
        pending = not_started


def is_complete(run_dir: str | os.PathLike) -> bool:
    """A run is complete when its metrics exist and it was not recorded as failed."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).exists() and _read_json(run_dir / STATUS_FILE).get("status", "ok") == "ok"


def parameter_changes(run_dir: str | os.PathLike, parameters: Mapping[str, Any]) -> list[str]:
    """How the parameters a run was made with differ from ``parameters`` ("key: old -> new"); empty when
    they agree. ``output_dir``, which run_notebook fills in itself, counts only when asked for."""
    saved = run_params(Path(run_dir)).get("parameters", {})
    wanted = _jsonable(dict(parameters))
    keys = (set(saved) | set(wanted)) - ({"output_dir"} - set(wanted))
    missing = object()
    return [f"{k}: {saved.get(k, missing)!r} -> {wanted.get(k, missing)!r}".replace(repr(missing), "(unset)")
            for k in sorted(keys) if saved.get(k, missing) != wanted.get(k, missing)]


def sweep(
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    seeds: Iterable[int] = (0,),
    notebook: str | Runner = "train",
    output_root: str | os.PathLike = "reports/sweep",
    base_parameters: Mapping[str, Any] | None = None,
    workers: int = 1,
    threads_per_worker: int | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> "pandas.DataFrame":  # noqa: F821
    """One run per grid point x seed under ``output_root/<point>/seed<k>``; returns the :func:`collect` rows
    of these runs (other runs under ``output_root``, e.g. of seeds not asked for now, are left out).

    ``notebook`` is a notebook name (executed with papermill, one kernel per run) or a callable
    ``runner(parameters, output_dir) -> metrics`` executed in-process (``workers`` > 1: in worker processes,
    so it must be a module-level function). Each run gets ``base_parameters | point | {"seed": seed}``.
    Complete runs are skipped, so calling ``sweep`` again resumes; failed runs are recorded and retried
    by the next call. A complete run made with other parameters is an error rather than a silent reuse.
    """
    points = expand_grid(grid)
    seeds = list(seeds)
    if not points:
        raise ValueError("the grid is empty: give at least one point")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    root = Path(output_root).resolve()
    jobs: list[tuple[dict, Path]] = []
    for name, point in points.items():
        for seed in seeds:
            parameters = {**(base_parameters or {}), **point, "seed": seed}
            if isinstance(notebook, str):
                check_parameters(notebook, parameters)
            jobs.append((parameters, root / name / f"seed{seed}"))
    todo = [(p, d) for p, d in jobs if not is_complete(d)]
    stale = [(d, changes) for p, d in jobs if is_complete(d) and (changes := parameter_changes(d, p))]
    if stale:
        run_dir, changes = stale[0]
        raise ValueError(
            f"{len(stale)} finished run(s) under {root} were made with other parameters, e.g. "
            f"{run_dir.relative_to(root).as_posix()} ({'; '.join(changes[:3])}); a sweep only reuses identical runs: "
            "choose another output_root, or delete those folders (`make clean-reports` for the default study)"
        )
    if print_fn:
        print_fn(f"sweep: {len(jobs)} runs ({len(points)} points x {len(seeds)} seeds), {len(jobs) - len(todo)} done, {len(todo)} to run")

    def report_done(result: dict, done: int) -> None:
        if print_fn:
            metrics = result.get("metrics") or {}
            headline = "  ".join(f"{k}={metrics[k]:.3f}" for k in HEADLINE_METRICS[:2] if isinstance(metrics.get(k), (int, float)))
            what = headline if result.get("status") == "ok" else f"FAILED {result.get('error', '')[:200]}"
            print_fn(f"  [{done}/{len(todo)}] {Path(result['output_dir']).relative_to(root)}  {result.get('duration_s', 0):.0f}s  {what}")

    if workers <= 1 or len(todo) <= 1:
        for i, (parameters, run_dir) in enumerate(todo, 1):
            report_done(_execute(notebook, parameters, run_dir, kernel_name, timeout), i)
    elif isinstance(notebook, str):  # each run is its own kernel process already
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures: list[Future] = [pool.submit(_execute, notebook, p, d, kernel_name, timeout) for p, d in todo]
            for i, future in enumerate(futures, 1):
                report_done(future.result(), i)
    else:
        _run_in_processes(notebook, todo, workers, threads_per_worker, kernel_name, timeout, report_done)
    frame = collect(root)
    asked = {d.relative_to(root).as_posix() for _, d in jobs}
    return frame[frame["run"].isin(asked)].reset_index(drop=True)


# --------------------------------------------------------------------------- results


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, default=str)
    else:
        out[prefix] = value


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    ordered = {k: scalars.pop(k) for k in HEADLINE_METRICS if k in scalars}
    return ordered | dict(sorted(scalars.items()))


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders under ``root`` (any depth): folders holding ``params.json`` or ``metrics.json`` (a notebook
    executed with plain papermill writes the latter into its ``output_dir``)."""
    root = Path(root)
    found = {p.parent for name in (PARAMS_FILE, METRICS_FILE) for p in root.rglob(name)}
    # Nested folders are not filtered: a folder inside a run that holds one of these files is listed as a run too.
    return sorted(found)


def collect(root: str | os.PathLike) -> "pandas.DataFrame":  # noqa: F821
    """One row per run under ``root``: ``run`` (relative path), ``point``, ``seed``, ``status``, ``error``,
    ``duration_s``, then the parameters as ``param.<name>`` columns (nested dicts dotted) and the scalar
    metrics (headline ones first)."""
    import pandas as pd

    root = Path(root).resolve()
    rows = []
    for run_dir in find_runs(root):
        params = run_params(run_dir)
        status = _read_json(run_dir / STATUS_FILE)
        # A failed or interrupted re-run may have left the metrics.json of an earlier attempt: not its results.
        metrics = _read_json(run_dir / METRICS_FILE) if status.get("status", "ok") == "ok" else {}
        parameters = params.get("parameters", {})
        rel = run_dir.relative_to(root).as_posix() if run_dir != root else "."
        point = run_dir.parent.name if re.fullmatch(r"seed-?\d+", run_dir.name) else run_dir.name
        row: dict[str, Any] = {
            "run": rel,
            "point": point,
            "seed": parameters.get("seed", metrics.get("seed")),
            "kind": params.get("notebook") or params.get("runner") or "run",
            "status": status.get("status", "ok" if metrics else "unknown"),
            "error": status.get("error"),
            "duration_s": status.get("duration_s"),
        }
        flat: dict[str, Any] = {}
        _flatten("", parameters, flat)
        row.update({f"param.{k}": v for k, v in flat.items()})
        row.update(_scalar_metrics(metrics))
        rows.append(row)
    base = ["run", "point", "seed", "kind", "status", "error", "duration_s"]
    frame = pd.DataFrame(rows, columns=None if rows else base)
    return frame


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the two-sided Student-t confidence interval (nan half-width for n < 2)."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    n = x.size
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(x.mean()), math.nan, 1
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided Welch t-test p-value (unequal variances); nan when it is undefined (n < 2 or no spread)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def compare_to_baseline(
    frame: "pandas.DataFrame",  # noqa: F821
    rows: Mapping[str, str],
    baseline: str,
    metrics: Sequence[str] = ("mAP", "rank1"),
    confidence: float = 0.95,
    alpha: float = 0.05,
    scale: float = 100.0,
) -> "pandas.DataFrame":  # noqa: F821
    """A results table: per row label (``rows`` maps label -> grid point name), per metric the mean and
    t-interval over seeds, the delta of the means against ``baseline`` and Welch's two-sided p-value.
    A delta "exceeds the noise" when p < alpha. Values are multiplied by ``scale`` (percent)."""
    import pandas as pd

    def values(point: str, metric: str) -> list[float]:
        sel = frame[(frame["point"] == point) & (frame["status"] == "ok")]
        return [] if metric not in sel else [float(v) * scale for v in sel[metric].dropna()]

    records = []
    for label, point in rows.items():
        record: dict[str, Any] = {"row": label, "runs": len(values(point, metrics[0]))}
        for metric in metrics:
            mean, half, _ = mean_ci(values(point, metric), confidence)
            base = values(baseline, metric)
            record[f"{metric} mean"] = mean
            record[f"{metric} ±CI"] = half
            if point == baseline:
                record[f"{metric} Δ"], record[f"{metric} p"], record[f"{metric} sig"] = math.nan, math.nan, ""
                continue
            base_mean = mean_ci(base, confidence)[0]
            p = welch_p(values(point, metric), base)
            record[f"{metric} Δ"] = mean - base_mean
            record[f"{metric} p"] = p
            record[f"{metric} sig"] = "" if math.isnan(p) else ("yes" if p < alpha else "no")
        records.append(record)
    return pd.DataFrame(records).set_index("row")


# --------------------------------------------------------------------------- rendering


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


# --------------------------------------------------------------------------- training runs


def as_override_dict(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``{"a.b": 1}`` or ``["a.b=1"]`` (values typed by YAML, as on the command line) -> a flat dict."""
    import yaml

    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    if isinstance(overrides, str):
        raise ValueError(f"overrides must be a dict or a list of 'key=value' strings, got the string {overrides!r}")
    flat = {}
    for text in overrides:
        if "=" not in text:
            raise ValueError(f"override {text!r} is not of the form key=value")
        key, raw = text.split("=", 1)
        flat[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return flat


def training_config(
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    output_dir: str | os.PathLike | None = None,
):
    """The engine's ``TrainConfig`` for a notebook's parameters: preset + overrides, then the explicit
    ``seed`` / ``epochs`` / ``data_root`` / ``output_dir`` arguments (None keeps the preset's value)."""
    from reidlab.engine import load_config

    merged = as_override_dict(overrides)
    for key, value in (("seed", seed), ("epochs", epochs), ("data.root", data_root), ("output_dir", output_dir)):
        if value is not None:
            merged[key] = str(value) if key in ("data.root", "output_dir") else value
    return load_config(preset, merged)


def train_run(parameters: Mapping[str, Any], output_dir: Path) -> dict:
    """Sweep runner: train one configuration in this process and return its final metrics.

    ``parameters``: ``preset``, ``overrides``, ``seed``, ``epochs``, ``data_root`` as in
    :func:`training_config`; ``rerank`` (also evaluate with k-reciprocal re-ranking, adding ``mAP_rerank``
    and ``rank1_rerank``); ``keep_checkpoints`` (default False: a sweep needs the numbers, not the weights).
    """
    import dataclasses

    from reidlab.engine import evaluate_checkpoint, train

    parameters = dict(parameters)
    unknown = set(parameters) - {"preset", "overrides", "seed", "epochs", "data_root", "rerank", "keep_checkpoints"}
    if unknown:
        raise ValueError(f"train_run got unknown parameters {sorted(unknown)}; valid: preset, overrides, seed, epochs, data_root, rerank, keep_checkpoints")
    config = training_config(
        parameters.get("preset", "synth_cpu"), parameters.get("overrides"), parameters.get("seed"),
        parameters.get("epochs"), parameters.get("data_root"), output_dir,
    )
    metrics = dict(train(config, print_fn=None))
    if parameters.get("rerank"):
        reranked = dataclasses.replace(config, eval=dataclasses.replace(config.eval, rerank=True))
        extra = evaluate_checkpoint(reranked, metrics["checkpoint"], print_fn=None)
        metrics.update({f"{k}_rerank": extra[k] for k in ("mAP", "rank1", "mINP") if k in extra})
    if not parameters.get("keep_checkpoints", False):
        shutil.rmtree(Path(output_dir) / "checkpoints", ignore_errors=True)
        metrics.pop("checkpoint", None)
        metrics.pop("best_checkpoint", None)
    return metrics


# --------------------------------------------------------------------------- the default study

# Small enough that `reidlab report` (four notebooks, every ablation cell over 3 seeds) finishes in well
# under 15 minutes on 2 CPU cores: a 64 x 32 SynthReID generated once, a ResNet-18-shaped network with
# 1/4 of the channels, 8 x 4 batches, a few epochs. Real-dataset studies pass their own preset instead.
STUDY_SYNTH_KNOBS: dict[str, Any] = {
    "num_train_ids": 32, "num_test_ids": 32, "num_cameras": 6, "num_scenes": 3, "image_size": [64, 32],
    "images_per_camera": [1, 3], "num_distractors": 30, "num_junk": 6,
    # Milder nuisances than the full benchmark: a from-scratch network must learn in ~130 steps.
    "color_cast": 0.15, "occlusion_prob": 0.15, "misalignment": 0.05, "noise": [1.0, 4.0], "blur": [0.0, 0.4],
}
STUDY_OVERRIDES: dict[str, Any] = {
    # The study generates its datasets itself (variation_datasets); a run must never regenerate them.
    "data.generate": False,
    "data.size": [64, 32], "data.num_workers": 0, "data.test_batch_size": 256,
    "data.aug": {"flip_p": 0.5, "padding": 2, "erasing_p": 0.0},
    "model.name": "resnet18_tiny",
    "model.kwargs": {"last_stride": 2},
    "sampler.p": 8, "sampler.k": 4, "sampler.hard_warmup_epochs": 1,
    "epochs": 16, "optim.lr": 1.5e-2, "optim.warmup_epochs": 0.0, "scene.ramp_epochs": 2,
    "eval.every": 0, "progress": False, "log_every": 5,
}
STUDY_SEEDS = (0, 1, 2)
VARIATION_LEVELS = (0.1, 0.5, 0.9)

# Ablation cells: overrides on top of the preset. The AdaSP README rows train the metric loss alone
# (AdaSP's "single" setting) against a triplet and a cross-entropy baseline.
ADASP_ROWS: dict[str, dict[str, Any]] = {
    "SP-H": {"loss.metric": "sp-h", "loss.ce_weight": 0.0},
    "SP-LH": {"loss.metric": "sp-lh", "loss.ce_weight": 0.0},
    "AdaSP": {"loss.metric": "adasp", "loss.ce_weight": 0.0},
    "Triplet": {"loss.metric": "triplet", "loss.ce_weight": 0.0, "loss.margin": 0.3},
    "CE": {"loss.metric": "none", "loss.ce_weight": 1.0},
}
# HBReID: the baseline is CE + soft-margin triplet with a random P x K sampler (its TransReID§ row);
# GS = grayscale patch replacement, HM = hard batch mining, SR = adversarial scene removal.
_HB_BASE = {"loss.metric": "triplet", "loss.margin": 0.0, "loss.ce_weight": 1.0, "loss.label_smoothing": 0.0,
            "sampler.name": "pk", "scene.enabled": False}
_GS, _HM, _SR = {"data.aug.gray_patch_p": 0.5}, {"sampler.name": "hard"}, {"scene.enabled": True}
HBREID_TABLE2_ROWS: dict[str, dict[str, Any]] = {
    "baseline": _HB_BASE,
    "+GS": {**_HB_BASE, **_GS},
    "+GS +HM": {**_HB_BASE, **_GS, **_HM},
    "+GS +SR": {**_HB_BASE, **_GS, **_SR},
    "+GS +HM +SR": {**_HB_BASE, **_GS, **_HM, **_SR},
}
HBREID_TABLE1_ROWS: dict[str, dict[str, Any]] = {
    "Default": _HB_BASE,
    "+CJ": {**_HB_BASE, "data.aug.color_jitter_p": 0.5},
    "+GB": {**_HB_BASE, "data.aug.blur_p": 0.5},
    "+GT": {**_HB_BASE, "data.aug.gamma_p": 0.5},
    "+GS": {**_HB_BASE, **_GS},
}
VARIATION_LOSSES = ("SP-H", "SP-LH", "AdaSP")


def point_key(overrides: Mapping[str, Any], data_root: str | None = None, rerank: bool = False) -> str:
    """The grid-point name of a set of overrides: identical cells of different tables share one run."""
    return point_name({"o": dict(sorted(overrides.items())), "d": data_root, "r": rerank})


def ablation_plan(
    tables: Sequence[str] = ("adasp", "hbreid2", "hbreid1", "variation"),
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    variation_roots: Mapping[float, str] | None = None,
    default_variation: float | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """The sweep grid of the ablation notebook and, per table, row label -> grid point name.

    Tables: ``adasp`` (SP-H, SP-LH, AdaSP, triplet, CE), ``hbreid2`` (baseline, +GS, +HM, +SR; evaluated
    with and without re-ranking), ``hbreid1`` (augmentations), ``variation`` (SP-H / SP-LH / AdaSP on
    SynthReID copies that differ only in the intra-class variation knob; ``variation_roots`` maps level
    -> dataset folder; rows are labelled ``"<loss>@<level>"``). Cells with the same settings share a run.
    ``only`` keeps a subset of rows per table (``{"adasp": ["AdaSP", "Triplet"], "variation": ["AdaSP"]}``;
    variation rows are selected by loss).
    """
    known = {"adasp", "hbreid2", "hbreid1", "variation"}
    if set(tables) - known:
        raise ValueError(f"unknown ablation tables {sorted(set(tables) - known)}; choose from {sorted(known)}")
    base = as_override_dict(overrides)
    grid: dict[str, dict] = {}
    rows: dict[str, dict[str, str]] = {}

    only = {table: set(labels) for table, labels in (only or {}).items()}
    for table, labels in only.items():
        valid = set(VARIATION_LOSSES if table == "variation" else {"adasp": ADASP_ROWS, "hbreid2": HBREID_TABLE2_ROWS,
                                                                     "hbreid1": HBREID_TABLE1_ROWS}.get(table, {}))
        if table not in known or labels - valid:
            raise ValueError(f"only={{{table!r}: {sorted(labels)}}}: unknown table or rows; rows of {table!r}: {sorted(valid)}")

    def add(table: str, label: str, cell: Mapping[str, Any], root: str | None, rerank: bool = False) -> None:
        if table in only and label.split("@")[0] not in only[table]:
            return
        merged = {**base, **cell}
        name = point_key(merged, root, rerank)
        params = {"preset": preset, "overrides": merged, "rerank": rerank}
        if epochs is not None:
            params["epochs"] = epochs
        if root is not None:
            params["data_root"] = root
        grid[name] = params
        rows.setdefault(table, {})[label] = name

    hb_rerank = "hbreid2" in tables
    for table, cells in (("adasp", ADASP_ROWS), ("hbreid2", HBREID_TABLE2_ROWS), ("hbreid1", HBREID_TABLE1_ROWS)):
        if table in tables:
            for label, cell in cells.items():
                add(table, label, cell, data_root, rerank=hb_rerank and table != "adasp")
    if "variation" in tables:
        if not variation_roots:
            raise ValueError("the variation table needs variation_roots: {level: SynthReID folder generated with that variation}")
        for level, root in sorted(variation_roots.items()):
            same_as_default = default_variation is not None and abs(level - default_variation) < 1e-9 and root == data_root
            for loss in VARIATION_LOSSES:
                add("variation", f"{loss}@{level:g}", ADASP_ROWS[loss], data_root if same_as_default else root)
    # Rename points to readable, stable folder names (first table and label that uses them).
    readable: dict[str, str] = {}
    for table, labels in rows.items():
        for label, name in labels.items():
            readable.setdefault(name, _slug(f"{table}-" + label.replace("+", "").strip().replace(" ", "-")))
    grid = {readable[name]: params for name, params in grid.items()}
    rows = {table: {label: readable[name] for label, name in labels.items()} for table, labels in rows.items()}
    return grid, rows


def variation_datasets(data_dir: str | os.PathLike, levels: Sequence[float] = VARIATION_LEVELS, seed: int = 0,
                       knobs: Mapping[str, Any] | None = None) -> dict[float, str]:
    """Generate (or reuse) one SynthReID per intra-class variation level; level -> folder."""
    from reidlab.data import synth

    knobs = dict(STUDY_SYNTH_KNOBS if knobs is None else knobs)
    roots = {}
    for level in levels:
        root = Path(data_dir) / f"synthreid-variation{level:g}"
        synth.generate(root, seed=seed, **{**knobs, "variation": float(level)})
        roots[float(level)] = str(root.resolve())
    return roots


def study_overrides(data_root: str | None = None, **extra: Any) -> dict[str, Any]:
    """STUDY_OVERRIDES, the dataset folder when given, and extra dotted keys."""
    overrides = {**STUDY_OVERRIDES, **extra}
    if data_root is not None:
        overrides["data.root"] = str(data_root)
    return overrides


class _PrefixedLines:
    """A write()-able that hands complete lines, indented, to a print function."""

    def __init__(self, print_fn: Callable[[str], None], prefix: str = "    ") -> None:
        self.print_fn, self.prefix, self.pending = print_fn, prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.print_fn(self.prefix + line)
        return len(text)

    def flush(self) -> None:
        pass


STUDY_NOTEBOOKS = ("ablation", "train", "positive_pairs", "class_similarity")


def report(
    output_root: str | os.PathLike = "reports",
    data_dir: str | os.PathLike = "data/study",
    seeds: Sequence[int] = STUDY_SEEDS,
    workers: int = 2,
    notebooks: Sequence[str] = STUDY_NOTEBOOKS,
    kernel_name: str | None = None,
    timeout: float | None = None,
    print_fn: Callable[[str], None] = print,
) -> Path:
    """The default study on SynthReID, rendered: what ``reidlab report`` / ``make report`` run.

    Generates the study's SynthReID copies (once; reused afterwards), executes the notebooks with the tiny
    CPU settings (ablation over ``seeds`` with ``workers`` processes; train; positive pairs on the train
    run's checkpoints; class similarity), then renders every executed notebook and ``index.html``.
    A failing notebook is recorded in the index and the study goes on. Re-running resumes: finished
    ablation runs are skipped. Returns the index path.
    """
    unknown = set(notebooks) - set(STUDY_NOTEBOOKS)
    if unknown:
        raise ValueError(f"unknown study notebooks {sorted(unknown)}; choose from {list(STUDY_NOTEBOOKS)}")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    started = time.perf_counter()
    root = Path(output_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    kernel = resolve_kernel_name(kernel_name)
    print_fn(f"reidlab study -> {root} (kernel {kernel!r})")
    try:
        roots = variation_datasets(data_dir, VARIATION_LEVELS)
    except FileExistsError as error:  # e.g. copies from an older reidlab, with runs trained on them in output_root
        raise FileExistsError(f"{error}. For the default study: delete {data_dir} and run `make clean-reports` (or "
                              f"remove {root}) so that no run trained on the old copies is reused") from None
    default_root = roots[0.5]
    print_fn(f"SynthReID copies ready in {time.perf_counter() - started:.0f} s: {', '.join(roots.values())}")
    threads = max(1, (os.cpu_count() or 1))
    plans: dict[str, dict[str, Any]] = {
        "ablation": {
            "overrides": study_overrides(), "seeds": list(seeds), "data_dir": str(Path(data_dir).resolve()),
            "synth_knobs": dict(STUDY_SYNTH_KNOBS), "variation_levels": list(VARIATION_LEVELS),
            "default_variation": 0.5, "workers": workers,
        },
        "train": {
            "overrides": study_overrides(default_root, **{"eval.every": 2, "save_every": 1, "threads": threads}),
            "seed": 0,
        },
        "positive_pairs": {"run_dir": str(root / "train")},
        "class_similarity": {"overrides": study_overrides(default_root, threads=threads), "seed": 0},
    }
    timings = {}
    for name in notebooks:
        step = time.perf_counter()
        if name != "ablation":  # these train afresh into their folder, which must not hold the previous run
            shutil.rmtree(root / name, ignore_errors=True)
        print_fn(f"[{name}] running notebooks/{name}.ipynb ...")
        try:
            result = run_notebook(name, plans[name], root / name, kernel_name=kernel, timeout=timeout,
                                  stdout=_PrefixedLines(print_fn))
            print_fn(f"[{name}] ok in {result['duration_s']:.0f} s")
        except Exception as exc:  # noqa: BLE001 - recorded in status.json; the index shows it
            print_fn(f"[{name}] FAILED: {_error_record(exc)['error'][:300]}")
        timings[name] = time.perf_counter() - step
    total = time.perf_counter() - started
    notes = (f"Default study on SynthReID (64 x 32, {len(seeds)} seeds). This invocation took {total / 60:.1f} min "
             "(completed ablation runs are reused): " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    index = render(root, title="reidlab study report", notes=html.escape(notes))
    _write_json(root / "study.json", {"seconds": round(total, 1), "timings_s": {k: round(v, 1) for k, v in timings.items()},
                                      "seeds": list(seeds), "workers": workers, "finished": _now()})
    print_fn(f"{notes}\nreport: {index}")
    return index

"""Run records: a run folder's params.json / status.json / metrics.json, and collect() over a tree of runs."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reidlab.utils import atomic_write

from .io import jsonable, read_json

PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
# Shown first in tables and in the index, in this order; other scalar metrics follow.
HEADLINE_METRICS = ("mAP", "rank1", "rank5", "mINP", "mAP_rerank", "rank1_rerank")
# Columns of collect() holding a run's provenance (metrics.json "provenance", written by the trainer).
PROVENANCE_PREFIX = "prov."
# A seed's folder in a sweep (``<point>/seed<n>``): the run's point is the folder above it.
SEED_FOLDER = re.compile(r"seed(-?\d+)")


FIGURES_DIR = "figures"  # where a notebook's figures go (viz.save_figure); the index shows summary.png first


def saved_figures(output_dir: str | os.PathLike) -> list[str]:
    """The PNG figures a notebook saved into ``output_dir``, by name."""
    return sorted(p.name for p in (Path(output_dir) / FIGURES_DIR).glob("*.png"))


def write_page_metrics(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A notebook's final record: ``metrics`` and the figures it saved, written where the study reads a run's
    metrics (numpy numbers as floats); returned as written."""
    record = {**metrics, "figures": saved_figures(output_dir)}
    atomic_write(run_folder(output_dir).metrics_path, json.dumps(record, indent=2, default=float))
    return record


def run_folder(path: str | os.PathLike) -> Any:
    """``reidlab.engine.RunDir`` of a run folder, which names its files (imported here, so that importing the
    study stays light)."""
    from reidlab.engine.runs import RunDir

    return RunDir(path)

def run_params(run_dir: Path) -> dict:
    """``params.json`` of a run made by reidlab.study; for a notebook executed with plain papermill into its
    own output folder, the same record read from the executed notebook's papermill metadata."""
    params = read_json(run_dir / PARAMS_FILE)
    if params:
        return params
    for executed in sorted(run_dir.glob("*.ipynb")):
        papermill = read_json(executed).get("metadata", {}).get("papermill", {})
        if papermill.get("input_path") and Path(papermill["input_path"]).stem == executed.stem:
            return {"notebook": executed.stem, "parameters": papermill.get("parameters", {})}
    return {}


def run_record(runner: Any, parameters: Mapping[str, Any]) -> dict:
    """A run's params.json: the notebook (a name or path) or the runner function, and its parameters."""
    if isinstance(runner, (str, os.PathLike)):
        return {"notebook": Path(runner).stem, "parameters": dict(parameters)}
    name = f"{getattr(runner, '__module__', '?')}.{getattr(runner, '__qualname__', repr(runner))}"
    return {"runner": name, "parameters": dict(parameters)}


RUN_STATUSES = ("submitted", "running", "interrupted", "ok", "failed")


def record_problem(run_dir: str | os.PathLike) -> str | None:
    """Why a run's records cannot be trusted (``<path>: <reason>``), or None: a params.json, status.json or
    metrics.json that does not parse as a JSON object (cut short by a crash, edited by hand), a status.json without
    a known ``status``, a params.json without ``parameters``. Such a run is ``unreadable``: listed with the reason,
    never counted as finished, redone only when asked (``retry_failed=True`` / ``--retry-failed``)."""
    return _read_records(Path(run_dir))[1]


def _read_records(run_dir: Path) -> tuple[tuple[dict, dict, dict], str | None]:
    """A run's params.json, status.json and metrics.json as parsed ({} where a file is missing), and
    :func:`record_problem`'s reason (then no records): collect parses each file once this way, not twice."""
    records = []
    for path, required in ((run_dir / PARAMS_FILE, "parameters"), (run_dir / STATUS_FILE, "status"),
                           (run_folder(run_dir).metrics_path, None)):
        records.append({})
        if not path.exists():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            return (), f"{path}: does not parse ({type(error).__name__}: {str(error)[:80]})"
        if not isinstance(record, dict):
            return (), f"{path}: holds a {type(record).__name__}, not a record"
        if required and required not in record:
            return (), f"{path}: has no {required!r}"
        if required == "status" and record["status"] not in RUN_STATUSES:
            return (), f"{path}: unknown status {record['status']!r} (known: {', '.join(RUN_STATUSES)})"
        records[-1] = record
    return tuple(records), None


def is_complete(run_dir: str | os.PathLike) -> bool:
    """A run is complete when its metrics exist, it was not recorded as failed and its records are readable."""
    run_dir = Path(run_dir)
    return (run_folder(run_dir).is_finished() and record_problem(run_dir) is None
            and read_json(run_dir / STATUS_FILE).get("status", "ok") == "ok")


KEEPING_PARAMETERS = ("keep_checkpoints",)  # decide what a run keeps, not what it computes


def parameter_changes(run_dir: str | os.PathLike, parameters: Mapping[str, Any]) -> list[str]:
    """How the parameters a run was made with differ from ``parameters`` ("key: old -> new"); empty when
    they agree. ``output_dir``, which run_notebook fills in itself, counts only when asked for. A run that kept
    more than asked (``keep_checkpoints`` true where false is wanted) serves: its results are the same."""
    saved = run_params(Path(run_dir)).get("parameters", {})
    wanted = jsonable(dict(parameters))
    keys = (set(saved) | set(wanted)) - ({"output_dir"} - set(wanted))
    missing = object()

    def differs(key: str) -> bool:
        if key in KEEPING_PARAMETERS:
            return bool(wanted.get(key, False)) and not saved.get(key, False)
        return saved.get(key, missing) != wanted.get(key, missing)

    return [f"{k}: {saved.get(k, missing)!r} -> {wanted.get(k, missing)!r}".replace(repr(missing), "(unset)")
            for k in sorted(keys) if differs(k)]


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
    found = {p.parent for name in (PARAMS_FILE, run_folder(root).METRICS) for p in root.rglob(name)}
    # Nested folders are not filtered: a folder inside a run that holds one of these files is listed as a run too.
    return sorted(found)


def collect(root: str | os.PathLike) -> "pandas.DataFrame":  # noqa: F821
    """One row per run under ``root``: ``run`` (relative path), ``point``, ``seed``, ``status``, ``error``,
    ``duration_s``, then the parameters as ``param.<name>`` columns (nested dicts dotted), the scalar
    metrics (headline ones first) and the provenance of a training run as ``prov.<key>`` columns."""
    import pandas as pd

    root = Path(root).resolve()
    rows = []
    for run_dir in find_runs(root):
        records, problem = _read_records(run_dir)
        if problem:  # a torn or foreign record: listed with its reason, never counted
            rel = run_dir.relative_to(root).as_posix() if run_dir != root else "."
            seed = SEED_FOLDER.fullmatch(run_dir.name)
            point = run_dir.parent.name if seed else run_dir.name
            rows.append({"run": rel, "point": point, "seed": int(seed.group(1)) if seed else None, "kind": "run",
                         "status": "unreadable", "error": problem, "duration_s": None})
            continue
        params, status, metrics = records
        params = params or run_params(run_dir)  # without a params.json: a notebook executed with plain papermill
        # A failed or interrupted re-run may have left the metrics.json of an earlier attempt: not its results.
        metrics = metrics if status.get("status", "ok") == "ok" else {}
        parameters = params.get("parameters", {})
        rel = run_dir.relative_to(root).as_posix() if run_dir != root else "."
        point = run_dir.parent.name if SEED_FOLDER.fullmatch(run_dir.name) else run_dir.name
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
        if isinstance(metrics.get("provenance"), Mapping):
            _flatten(PROVENANCE_PREFIX.rstrip("."), metrics["provenance"], row)
        rows.append(row)
    base = ["run", "point", "seed", "kind", "status", "error", "duration_s"]
    frame = pd.DataFrame(rows, columns=None if rows else base)
    return frame


def provenance_differences(frame: "pandas.DataFrame", columns: Sequence[str] | None = None) -> dict[str, list]:  # noqa: F821
    """The provenance keys whose values differ among the rows of ``frame`` (e.g. the runs of one table), each
    with its sorted distinct values: runs compared side by side should differ only in what the table varies.

    ``columns``: the keys to compare, with or without the ``prov.`` prefix (default: every ``prov.`` column).
    Rows without any provenance (failed runs, runs not made by the trainer) are left out; within the others a
    key that is None and one that is missing count as the same value.
    """
    import pandas as pd

    names = [c for c in frame.columns if c.startswith(PROVENANCE_PREFIX)] if columns is None else [
        c if c.startswith(PROVENANCE_PREFIX) else PROVENANCE_PREFIX + c for c in columns]
    table = frame.reindex(columns=names).astype(object)
    table = table[table.notna().any(axis=1)]
    differences = {}
    for name in names:
        distinct = {None if pd.isna(value) else value for value in table[name]}
        if len(distinct) > 1:
            key = name.removeprefix(PROVENANCE_PREFIX)
            differences[key] = sorted(distinct, key=lambda v: (v is not None, isinstance(v, str), v))
    return differences


def source_revisions(frame: "pandas.DataFrame") -> dict[str, Any]:  # noqa: F821
    """The reidlab commits the runs of ``frame`` were trained at, and whether any ran from a checkout with
    uncommitted changes: what a claims table must name (one commit, clean) to say which code made it."""
    import pandas as pd

    commits = sorted({c for c in frame.get("prov.git_commit", []) if isinstance(c, str) and c})
    dirty = bool(pd.Series(frame.get("prov.git_dirty", []), dtype=object).eq(True).any())
    return {"commits": commits, "dirty": dirty}

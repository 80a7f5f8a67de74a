"""Seeded, resumable sweeps over a grid of points, in this process, worker processes or notebook kernels."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from reidlab.utils import DiskFullError, on_stop_signals
from reidlab.utils.lease import LEASE_FILE, LOCK_FILE, RunLease, lease_holder_text

from .io import error_record, read_json, slug, utc_now, write_json
from .notebooks import check_parameters, run_notebook
from .records import (
    HEADLINE_METRICS,
    PARAMS_FILE,
    STATUS_FILE,
    collect,
    is_complete,
    parameter_changes,
    record_problem,
    run_folder,
    run_record,
)
from .slurm import ClusterConfig, await_slurm_kill, load_cluster, report_failure, run_on_slurm, submitted_job

Runner = Callable[[dict, Path], Mapping[str, Any]]
FOLLOW_SECONDS = 2.0  # how often a sweep looks at the runs that another launch holds
HELD_WAIT_SECONDS = 120.0  # how long a SLURM task waits for its run's holder (the job it replaces) to end


def check_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """The seeds of a study or sweep as a list, or one ValueError saying what a valid value looks like: a non-empty
    list of distinct ints (text items such as the command line's "0" are read as ints)."""
    items = [seeds] if isinstance(seeds, (int, str)) else list(seeds) if isinstance(seeds, Iterable) else [seeds]
    parsed = []
    for item in items:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool):
            parsed = None
            break
        parsed.append(item)
    if not parsed or len(set(parsed)) != len(parsed):
        raise ValueError(f"{where} must be a non-empty list of distinct integers such as [0, 1, 2], got {seeds!r}")
    return parsed


def point_name(parameters: Mapping[str, Any]) -> str:
    """A readable, stable folder name for a grid point (long ones get a hash suffix)."""
    if not parameters:
        return "default"
    text = ",".join(f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in sorted(parameters.items()))
    name = slug(text.replace('"', ""))
    if len(name) > 80:
        name = name[:70] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return name


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


_worker = {"running": False, "stopped_by": None, "orphaned": False}  # the state of a sweep's worker process


def _init_worker(threads: int) -> None:
    """A sweep's worker process: ``threads`` torch threads; SIGTERM and SIGINT stop it as they stop a training process
    (the trainer's handler while it trains, :func:`_worker_signal` around that); it stops itself when its sweep dies."""
    import multiprocessing
    import threading

    import torch

    torch.set_num_threads(threads)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _worker_signal)
    threading.Thread(target=_stop_when_orphaned, args=(multiprocessing.parent_process(),), daemon=True).start()


def _worker_signal(signum: int, frame) -> None:
    """Outside training: a run in progress stops (recorded ``interrupted``, continued by the next launch); an idle
    worker starts no further run."""
    from reidlab.engine import TrainingInterrupted

    name = signal.Signals(signum).name
    _worker["stopped_by"] = name
    if _worker["running"]:
        raise TrainingInterrupted(f"{name} stopped the run outside its training steps; the next launch continues it",
                                  name)


def _stop_when_orphaned(sweep_process) -> None:
    """When the sweep dies (killed, or its notebook kernel exits), its worker must not train on unseen: a run in
    progress stops as on SIGTERM (after the step, checkpoint saved) and the worker exits."""
    sweep_process.join()
    _worker["orphaned"] = True
    if not _worker["running"]:
        os._exit(128 + signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)


def _execute_in_worker(runner: Runner, parameters: dict, run_dir: Path, kernel_name: str | None,
                       timeout: float | None) -> dict:
    """:func:`_execute` in a worker process. Once a signal stopped the sweep, the runs the pool had queued come back
    ``not started``; an orphaned worker exits after its run stopped."""
    from reidlab.engine import TrainingInterrupted

    try:
        if _worker["stopped_by"] or _worker["orphaned"]:
            return {"status": "not started", "output_dir": str(run_dir)}
        _worker["running"] = True
        try:
            return _execute(runner, parameters, run_dir, kernel_name, timeout)
        finally:
            _worker["running"] = False
    except TrainingInterrupted as exc:
        _worker["stopped_by"] = exc.signal_name
        raise
    finally:
        if _worker["orphaned"]:
            os._exit(128 + signal.SIGTERM)


def _execute(runner: Runner | str, parameters: dict, run_dir: Path, kernel_name: str | None, timeout: float | None,
             job: Mapping[str, Any] | None = None) -> dict:
    """Run one point; never raises for a failed run: the outcome is written to ``status.json`` and returned.

    The run folder is claimed first (``RunLease``): a run another process is working on is not touched, and comes
    back as ``{"status": "held", "holder": ...}``. ``job``: the SLURM job running it (id, node, log files), recorded
    in ``status.json``. A run whose last attempt was interrupted (a signal: ``interrupted``; a kill: ``running`` with
    no live holder; a requeued SLURM job) continues from its checkpoints; a failed or unreadable attempt is deleted
    first, so a retry never starts from a failed attempt's files. A signal that stops the run, or a full disk, is
    recorded as ``interrupted`` and raised again, so the sweep stops too."""
    lease = RunLease(run_dir)
    holder = lease.acquire()
    # a SLURM task was started by the scheduler for this run: a holder is most likely its previous job, ending
    deadline = time.monotonic() + (HELD_WAIT_SECONDS if job is not None else 0)
    while holder and time.monotonic() < deadline:
        time.sleep(1.0)
        holder = lease.acquire()
    if holder:
        return {"status": "held", "holder": holder, "output_dir": str(run_dir), "metrics": {}}
    try:
        return _execute_claimed(runner, parameters, run_dir, kernel_name, timeout, job)
    finally:
        lease.release()


def _finished_record(run_dir: Path) -> dict:
    return {**read_json(run_dir / STATUS_FILE), "output_dir": str(run_dir),
            "metrics": read_json(run_folder(run_dir).metrics_path)}


def _execute_claimed(runner: Runner | str, parameters: dict, run_dir: Path, kernel_name: str | None,
                     timeout: float | None, job: Mapping[str, Any] | None) -> dict:
    from reidlab.engine import TrainingInterrupted

    if is_complete(run_dir):  # finished by another launch since this one looked, or requeued after it finished
        return {**_finished_record(run_dir), "followed": job is None}
    previous = read_json(run_dir / STATUS_FILE)
    same_job = job is not None and previous.get("slurm_job_id") == job["slurm_job_id"]
    continuing = previous.get("status") == "interrupted" or (
        previous.get("status") == "running" and (job is None or same_job))
    submitted = job is not None and previous.get("status") == "submitted"
    if (previous or record_problem(run_dir)) and not (continuing or submitted):  # an earlier attempt, torn ones too
        clear_folder(run_dir, keep=(LEASE_FILE, LOCK_FILE))
    fields = {"host": socket.gethostname(), "pid": os.getpid(), **(job or {})}  # who ran it
    if continuing:
        fields.update(restarts=previous.get("restarts", 0) + 1, first_started=previous.get("first_started", previous.get("started")))
    if isinstance(runner, str):
        try:
            return run_notebook(runner, parameters, run_dir, kernel_name=kernel_name, timeout=timeout, status_fields=fields)
        except Exception as exc:  # noqa: BLE001 - recorded by run_notebook in status.json
            status = read_json(run_dir / STATUS_FILE)
            if getattr(exc, "ename", None) == TrainingInterrupted.__name__:
                status.update(status="interrupted")
                write_json(run_dir / STATUS_FILE, status)
                if job is not None:
                    await_slurm_kill()
                raise
            if job is not None:
                status.update(report_failure(exc, job))
                write_json(run_dir / STATUS_FILE, status)
            return status | {"output_dir": str(run_dir)}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / PARAMS_FILE, run_record(runner, parameters))
    status = {"status": "running", "started": utc_now(), **fields}
    write_json(run_dir / STATUS_FILE, status)
    start = time.perf_counter()
    try:
        metrics = dict(runner(dict(parameters), run_dir) or {})
        if metrics:
            write_json(run_folder(run_dir).metrics_path, metrics)
        status.update(status="ok")
    except TrainingInterrupted as exc:
        status.update(status="interrupted", signal=exc.signal_name, error=str(exc), finished=utc_now())
        write_json(run_dir / STATUS_FILE, status)
        if job is not None:
            await_slurm_kill()
        raise
    except DiskFullError as exc:  # the sweep stops (every next run would meet the same disk); the next one continues
        status.update(status="interrupted", error=str(exc), finished=utc_now())
        with contextlib.suppress(OSError):  # the status may not fit either: then it still says "running"
            write_json(run_dir / STATUS_FILE, status)
        raise
    except Exception as exc:  # noqa: BLE001 - a failed run is data, the sweep goes on
        metrics = {}
        status.update(status="failed", **error_record(exc), **(report_failure(exc, job) if job is not None else {}))
    status.update(finished=utc_now(), duration_s=round(time.perf_counter() - start, 2))
    write_json(run_dir / STATUS_FILE, status)
    return {**status, "output_dir": str(run_dir), "metrics": metrics}


def clear_folder(folder: Path, keep: Sequence[str] = ()) -> None:
    """Delete everything in ``folder`` except the names in ``keep`` (an earlier attempt, not the lease on it)."""
    for path in folder.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _follow_held(held: list[tuple[dict, Path]], execute: Callable[[dict, Path], dict],
                 report_done: Callable[[dict], None], print_fn: Callable[[str], None] | None,
                 poll_seconds: float = FOLLOW_SECONDS) -> None:
    """Wait for the runs that other launches hold: a run whose holder finished is reported as it recorded it;
    one whose holder died (its lease stale) is claimed and continued here."""
    if held and print_fn:
        holders = {lease_holder_text(h) for h in (RunLease(d).holder() for _, d in held) if h}
        print_fn(f"sweep: {len(held)} run(s) are held by another launch ({'; '.join(sorted(holders)) or 'ending'}); "
                 "following them")
    while held:
        time.sleep(poll_seconds)
        still: list[tuple[dict, Path]] = []
        for parameters, run_dir in held:
            if RunLease(run_dir).holder():
                still.append((parameters, run_dir))
                continue
            status = read_json(run_dir / STATUS_FILE).get("status")
            if status in ("ok", "failed", "interrupted"):  # as its holder recorded it
                result = {**_finished_record(run_dir), "followed": True}
            else:  # its holder died: continued here
                result = execute(parameters, run_dir)
            if result.get("status") == "held":
                still.append((parameters, run_dir))
                continue
            report_done(result)
        held = still


def _run_in_processes(runner: Runner, todo: list[tuple[dict, Path]], workers: int, threads_per_worker: int | None,
                      kernel_name: str | None, timeout: float | None, report_done: Callable[[dict], None]) -> None:
    """Run in-process runners in worker processes. A worker that dies (killed, out of memory) breaks the
    pool: the runs it was executing are recorded as failed, the ones not yet started go to a fresh pool.
    SIGTERM or SIGINT to the sweep stops its workers' runs after their step, as in one process (recorded
    ``interrupted``), starts nothing further and raises the first run's ``TrainingInterrupted``."""
    import multiprocessing

    from reidlab.engine import TrainingInterrupted

    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    pending = list(todo)
    received: list[int] = []
    interrupted: list[TrainingInterrupted] = []
    with _stopping_workers_on_signals(received):
        while pending and not received:
            pool_started = utc_now()
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(threads,))
            with pool:
                futures = [(pool.submit(_execute_in_worker, runner, p, d, kernel_name, timeout), p, d) for p, d in pending]
                not_started: list[tuple[dict, Path]] = []
                for future, parameters, run_dir in futures:
                    while not future.done():  # wake up now and then: a signal the pool's threads caught runs here
                        wait_for_futures([future], timeout=0.2)
                    try:
                        result = future.result()
                    except TrainingInterrupted as exc:
                        interrupted.append(exc)
                        continue
                    except BrokenProcessPool:
                        status = read_json(run_dir / STATUS_FILE)
                        if status.get("started", "") < pool_started:  # left by an earlier sweep, not begun in this pool
                            not_started.append((parameters, run_dir))
                            continue
                        if received:  # a worker the signal reached before its handler: the next launch continues it
                            continue
                        if status.get("status") == "running":
                            status.update(status="failed", finished=utc_now(), error="the worker process running it "
                                          "died (killed, e.g. out of memory); the next sweep retries it")
                            write_json(run_dir / STATUS_FILE, status)
                        result = {**status, "output_dir": str(run_dir), "metrics": read_json(run_folder(run_dir).metrics_path)}
                    if result["status"] != "not started":
                        report_done(result)
            if len(not_started) == len(pending) and not received:
                raise RuntimeError("the sweep's worker processes died before running anything; run with workers=1 to see why")
            pending = not_started
    if interrupted:
        raise interrupted[0]
    if received:
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(f"{name} stopped the sweep before its next runs started; the next launch runs them", name)


def _stopping_workers_on_signals(received: list[int]):
    """While a sweep waits for its worker processes, SIGTERM and SIGINT are recorded in ``received`` and passed on to
    the workers as SIGTERM (a terminal's Ctrl-C reaches them too: a second SIGINT would stop a run without its
    checkpoint); a second Ctrl-C stops the sweep at once. Main thread only (``on_stop_signals``)."""
    import multiprocessing

    def forward(signum, frame):
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        for worker in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)

    return on_stop_signals(forward)


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
    executor: str = "local",
    cluster: ClusterConfig | Mapping[str, Any] | str | os.PathLike | None = None,
    wait: bool = True,
    retry_failed: bool | None = None,
    progress: bool = True,
) -> "pandas.DataFrame":  # noqa: F821
    """One run per grid point x seed under ``output_root/<point>/seed<k>``; returns the :func:`collect` rows
    of these runs (other runs under ``output_root``, e.g. of seeds not asked for now, are left out).

    ``notebook`` is a notebook name (executed with papermill, one kernel per run) or a callable
    ``runner(parameters, output_dir) -> metrics`` executed in-process (``workers`` > 1: in worker processes,
    so it must be a module-level function). Each run gets ``base_parameters | point | {"seed": seed}``.
    Complete runs are skipped, so calling ``sweep`` again resumes. A complete run made with other parameters
    is an error rather than a silent reuse. When no run of the sweep succeeded it raises RuntimeError (with
    the first error) instead of returning.

    ``executor``: ``"local"`` (this machine, ``workers`` at a time) or ``"slurm"``: one job array, one task
    per run, on the cluster ``cluster`` describes (a :class:`ClusterConfig`, a mapping of its fields or a
    YAML file). Runs that a queued job is running already are followed, not resubmitted; ``wait=False``
    returns right after submitting (call ``sweep`` again to follow the jobs, or :func:`collect` to read what
    has finished); ``progress``: a tqdm bar over the array while waiting. ``retry_failed``: run the runs
    recorded as failed again (default: yes locally, no on SLURM, where a failure is usually a setting to fix).
    """
    if executor not in ("local", "slurm"):
        raise ValueError(f"executor must be 'local' or 'slurm', got {executor!r}")
    cluster = load_cluster(cluster) if executor == "slurm" else None
    retry_unreadable = retry_failed is True  # a torn record is redone only when asked, never by default
    retry_failed = executor == "local" if retry_failed is None else retry_failed
    points = expand_grid(grid)
    seeds = check_seeds(seeds)
    if not points:
        raise ValueError("the grid is empty: give at least one point")
    root = Path(output_root).resolve()
    jobs: list[tuple[dict, Path]] = []
    for name, point in points.items():
        for seed in seeds:
            parameters = {**(base_parameters or {}), **point, "seed": seed}
            if isinstance(notebook, str):
                check_parameters(notebook, parameters)
            jobs.append((parameters, root / name / f"seed{seed}"))
    stale = [(d, changes) for p, d in jobs if (is_complete(d) or submitted_job(d)) and (changes := parameter_changes(d, p))]
    if stale:
        run_dir, changes = stale[0]
        raise ValueError(
            f"{len(stale)} {'finished' if all(is_complete(d) for d, _ in stale) else 'finished or queued'} run(s) "
            f"under {root} were made with other parameters, e.g. "
            f"{run_dir.relative_to(root).as_posix()} ({'; '.join(changes[:3])}); a sweep only reuses identical runs: "
            "choose another output_root, or delete those folders (`make clean-reports` for the default study)"
        )
    unreadable = {d: problem for _, d in jobs if (problem := record_problem(d))}
    failed = {d for _, d in jobs if d not in unreadable and read_json(d / STATUS_FILE).get("status") == "failed"}
    todo = [(p, d) for p, d in jobs if not is_complete(d) and (retry_failed or d not in failed)
            and (retry_unreadable or d not in unreadable)]
    # runs another launch is working on: left to it and followed (on SLURM: left to it; a SLURM job holding its run
    # is followed through the queue instead)
    held = [(p, d) for p, d in todo
            if (holder := RunLease(d).holder()) and not (executor == "slurm" and holder.get("job_id"))]
    todo = [(p, d) for p, d in todo if (p, d) not in held]
    if print_fn:
        for run_dir, problem in unreadable.items():
            print_fn(f"sweep: unreadable run {run_dir.relative_to(root).as_posix()}: {problem}"
                     + ("; running it again" if retry_unreadable else "; kept (retry_failed=True / --retry-failed "
                        "runs it again)"))
        kept = "" if retry_failed or not failed else f", {len(failed)} failed (kept; retry_failed=True runs them again)"
        print_fn(f"sweep: {len(jobs)} runs ({len(points)} points x {len(seeds)} seeds), "
                 f"{sum(is_complete(d) for _, d in jobs)} done{kept}, {len(todo)} to run"
                 + (f", {len(held)} held by another launch" if held else ""))

    total, reported = len(todo) + len(held), []

    def report_done(result: dict) -> None:
        if result.get("status") == "held":  # claimed by another launch since the count above
            held.append((next(p for p, d in todo if str(d) == result["output_dir"]), Path(result["output_dir"])))
            return
        reported.append(result)
        if print_fn:
            metrics = result.get("metrics") or {}
            headline = "  ".join(f"{k}={metrics[k]:.3f}" for k in HEADLINE_METRICS[:2] if isinstance(metrics.get(k), (int, float)))
            what = headline if result.get("status") == "ok" else \
                f"{str(result.get('status') or 'failed').upper()} {result.get('error', '')[:200]}"
            where = f"  [{result['slurm_job_id']} on {result.get('node', '?')}]" if result.get("slurm_job_id") else ""
            by = "  (run by another launch)" if result.get("followed") else ""
            print_fn(f"  [{len(reported)}/{total}] {Path(result['output_dir']).relative_to(root)}  "
                     f"{result.get('duration_s') or 0:.0f}s  {what}{where}{by}")

    if executor == "slurm":
        if todo:
            run_on_slurm(_execute, notebook, todo, root, cluster, kernel_name, timeout, wait, progress, report_done, print_fn)
        if held and print_fn:
            print_fn(f"sweep: {len(held)} run(s) held by another launch are left to it; run the sweep again to read them")
    elif workers <= 1 or len(todo) <= 1:
        for parameters, run_dir in list(todo):
            report_done(_execute(notebook, parameters, run_dir, kernel_name, timeout))
    elif isinstance(notebook, str):  # each run is its own kernel process already
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures: list[Future] = [pool.submit(_execute, notebook, p, d, kernel_name, timeout) for p, d in todo]
            for future in futures:
                report_done(future.result())
    else:
        _run_in_processes(notebook, todo, workers, threads_per_worker, kernel_name, timeout, report_done)
    if executor == "local":
        _follow_held(held, lambda p, d: _execute(notebook, p, d, kernel_name, timeout), report_done, print_fn)
    frame = collect(root)
    asked = {d.relative_to(root).as_posix() for _, d in jobs}
    frame = frame[frame["run"].isin(asked)].reset_index(drop=True)
    if wait and not (frame["status"] == "ok").any():  # nothing to analyse: papermill and schedulers must see a failure
        errors = frame["error"].dropna()
        raise RuntimeError(f"all {len(jobs)} runs of the sweep under {root} failed"
                           + (f"; first error: {errors.iloc[0]}" if len(errors) else "")
                           + "; their status.json files hold the errors"
                           + ("" if retry_failed else ", and retry_failed=True runs them again"))
    return frame


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """``["loss.metric=adasp,sp-h", "optim.lr=1e-3,3e-3"]`` -> ``{"loss.metric": ["adasp", "sp-h"], ...}``: the
    values of each key comma-separated and typed by YAML as on the command line (``1e-3`` stays text, which the
    config reads as a float; a list value keeps its commas: ``data.size=[64,32]``)."""
    import yaml

    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--grid {item!r} is not of the form key=value1,value2,...")
        if key in grid:
            raise ValueError(f"--grid {key} is given twice; list all its values in one --grid {key}=a,b")
        values = [yaml.safe_load(v) for v in re.split(r",(?![^\[]*\])", text) if v.strip()]
        if not values:
            raise ValueError(f"--grid {item!r} gives no values: the grid is empty; write --grid {key}=value1,value2")
        grid[key] = values
    return grid


def runs_table(frame: "pandas.DataFrame", keys: Sequence[str], prefix: str = "param.overrides.") -> "pandas.DataFrame":  # noqa: F821
    """One row per run: ``run``, ``point``, ``seed``, ``status``, the grid ``keys`` (from the parameters under
    ``prefix``), then the scalar metrics (headline ones first); parameters, provenance and bookkeeping are left out."""
    bookkeeping = {"run", "point", "seed", "kind", "status", "error", "duration_s"}
    metrics = [c for c in frame.columns if c not in bookkeeping and not c.startswith(("param.", "prov."))]
    table = frame[["run", "point", "seed", "status"]].copy()
    for key in keys:
        table[key] = frame.get(prefix + key)
    return table.join(frame[metrics])


def summary_table(frame: "pandas.DataFrame", metrics: Sequence[str] = HEADLINE_METRICS[:2], confidence: float = 0.95) -> "pandas.DataFrame":  # noqa: F821
    """Per grid point: how many runs succeeded and each metric's mean ± the half-width of its t interval."""
    import pandas as pd

    from reidlab.utils.stats import mean_ci

    rows = []
    for point, runs in frame.groupby("point", sort=False):
        ok = runs[runs["status"] == "ok"]
        row = {"point": point, "runs ok": f"{len(ok)}/{len(runs)}"}
        for metric in metrics:
            if metric in ok:
                mean, half, n = mean_ci(ok[metric], confidence)
                row[metric] = "-" if n == 0 else f"{mean:.4f}" + ("" if n < 2 else f" ± {half:.4f}")
        rows.append(row)
    return pd.DataFrame(rows)

"""Sweeps on a SLURM cluster through submitit: one job array per sweep, one (point, seed) per array task.

A run's folder gets the same params.json / status.json / metrics.json as a local run; its status.json adds
the SLURM job id, the node and the job's stdout/stderr files. A task that SLURM requeues (preemption,
``scontrol requeue``, or submitit's requeue at the time-limit signal) finds its own "running" status and
continues from the run's last checkpoint, which gives the uninterrupted run's result (the trainer's resume is
exact). A run that asks for several tasks (GPUs, nodes) gets torch.distributed's environment from SLURM's, so
``reidlab train``'s DDP starts one process per task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import read_json, utc_now, write_json
from .records import PARAMS_FILE, STATUS_FILE, is_complete, run_record

SLURM_JOB_FILE = "slurm.json"  # in a run folder: the job a sweep submitted for it (id, log files)
LOG_FOLDER = ".slurm"  # under a sweep's output root: submitit's pickles and the jobs' logs, one folder per job
LOG_TAIL_LINES = 30


@dataclass
class ClusterConfig:
    """Where and how a sweep's runs are submitted: one SLURM job per run, all in one job array.

    A run gets ``nodes`` x ``gpus_per_node`` GPUs and ``tasks_per_node`` processes on each node (default: one
    per GPU, or one without GPUs), each with ``cpus_per_task`` CPUs; ``mem_gb`` is per node. ``time_min`` is
    the time limit of one run: ``signal_delay_s`` before it, the run is requeued and later continues from its
    last checkpoint, at most ``max_requeues`` times. ``setup``: shell lines run first (``module load cuda``,
    ``source .venv/bin/activate``); ``extra_sbatch``: further sbatch options (``--constraint=a100``,
    ``--exclusive``).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 240
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int = 4
    mem_gb: int | None = None
    array_parallelism: int = 256
    signal_delay_s: int = 120
    max_requeues: int = 3
    setup: list[str] = field(default_factory=list)
    extra_sbatch: list[str] = field(default_factory=list)
    job_name: str = "reidlab"

    def __post_init__(self) -> None:
        for name in ("time_min", "nodes", "cpus_per_task", "array_parallelism"):
            if getattr(self, name) < 1:
                raise ValueError(f"cluster {name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0 or (self.tasks_per_node is not None and self.tasks_per_node < 1):
            raise ValueError("cluster gpus_per_node must be >= 0 and tasks_per_node >= 1")
        for line in self.extra_sbatch:
            if not line.removeprefix("#SBATCH").strip().startswith("--"):
                raise ValueError(f"cluster extra_sbatch line {line!r} is not an sbatch option; write e.g. "
                                 "'--constraint=a100' or '--exclusive'")

    @property
    def tasks(self) -> int:
        """Processes per node: one per GPU unless ``tasks_per_node`` says otherwise."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    def sbatch_options(self) -> dict[str, Any]:
        """The submitit SlurmExecutor parameters of this description."""
        extra = {}
        for line in self.extra_sbatch:
            key, _, value = line.removeprefix("#SBATCH").strip().removeprefix("--").partition("=")
            extra[key] = value if value else True
        options = {"job_name": self.job_name, "time": self.time_min, "nodes": self.nodes,
                   "ntasks_per_node": self.tasks, "cpus_per_task": self.cpus_per_task,
                   "array_parallelism": self.array_parallelism, "signal_delay_s": self.signal_delay_s,
                   "setup": list(self.setup), "additional_parameters": extra,
                   "partition": self.partition, "account": self.account, "qos": self.qos,
                   "gpus_per_node": self.gpus_per_node or None, "mem": f"{self.mem_gb}GB" if self.mem_gb else None}
        return {k: v for k, v in options.items() if v is not None}


def load_cluster(source: ClusterConfig | Mapping[str, Any] | str | os.PathLike | None = None, **overrides: Any) -> ClusterConfig:
    """A cluster description from a YAML file (``--cluster cluster.yaml``), a mapping or keyword arguments
    (which win); an unknown key or a wrong type is a ValueError naming it and the valid keys (the engine's typed parser)."""
    import yaml

    from reidlab.engine.config import load_dataclass

    where = "cluster description"
    if isinstance(source, ClusterConfig):
        values = dataclasses.asdict(source)
    elif isinstance(source, Mapping):
        values = dict(source)
    elif source is not None:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"cluster file {str(path)!r} does not exist; see configs/cluster.yaml for an example")
        where = f"cluster file {path}"
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, Mapping):
            raise ValueError(f"{where} must hold a mapping of fields, got {type(values).__name__}")
    else:
        values = {}
    try:
        return load_dataclass(ClusterConfig, {**values, **overrides}, where)
    except ValueError as error:  # the cluster's own checks (__post_init__)
        raise ValueError(str(error) if str(error).startswith(where) else f"{where}: {error}") from None


def log_tail(path: str | os.PathLike | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a job's log file ('' when there is none)."""
    try:
        with open(path, "rb") as handle:  # type: ignore[arg-type]
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 200 * lines))
            text = handle.read().decode(errors="replace")
    except (OSError, TypeError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


class SlurmTask:
    """What one array task runs: the sweep's ``_execute`` of its run, with the job's record; on a multi-task
    run every task joins torch.distributed and only rank 0 keeps the run's records. Checkpointable: at the
    time-limit signal submitit requeues the same task, which then continues from the run's checkpoint."""

    def __call__(self, execute: Callable[..., dict], runner: Any, parameters: dict, run_dir: Path,
                 kernel_name: str | None, timeout: float | None) -> dict:
        import submitit
        import torch

        environment = submitit.JobEnvironment()
        torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
        if environment.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if environment.global_rank > 0:  # joins rank 0's process group in the runner; rank 0 keeps the records
            from reidlab.engine import TrainingInterrupted

            try:
                return {} if is_complete(run_dir) else dict(runner(dict(parameters), run_dir) or {})
            except TrainingInterrupted:
                await_slurm_kill()
                raise
        job = {"slurm_job_id": environment.job_id, "node": environment.hostname,
               "stdout": str(environment.paths.stdout), "stderr": str(environment.paths.stderr)}
        return execute(runner, parameters, run_dir, kernel_name, timeout, job=job)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def report_failure(exc: BaseException, job: Mapping[str, Any]) -> dict:
    """A run's failure inside a SLURM job: the traceback goes to the job's log, whose tail is recorded."""
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    return {"log_tail": log_tail(job.get("stderr"))}


def await_slurm_kill(seconds: float = 300.0) -> None:
    """Wait for SLURM's SIGKILL after a SIGTERM stopped the run (preemption, requeue, scancel: the kill follows
    after ``KillWait``). A task that returned instead would leave a result file, and submitit would report the job
    finished, failed, though SLURM is requeueing it to continue from the checkpoint just written."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)


class SubmissionError(ValueError):
    """No SLURM answers here, or sbatch refused a sweep's job array (a partition, account or resource request the
    cluster does not have)."""


def queued_jobs() -> dict[str, str]:
    """This user's jobs SLURM still holds, array tasks one by one: job id -> state, with the reason a pending
    job waits (``PENDING (Resources)``)."""
    try:
        result = subprocess.run(["squeue", "-h", "-r", "--me", "-o", "%i|%T|%r"], capture_output=True, text=True, check=False)
    except OSError:
        result = None
    if result is None or result.returncode != 0:
        why = "squeue is not installed" if result is None else f"squeue failed: {result.stderr.strip()}"
        raise SubmissionError(f"executor 'slurm' needs a SLURM cluster ({why}): run on a login node, or start the "
                              "local one with scripts/slurm-local start")
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        jobs[job_id] = f"{state} ({reason})" if state == "PENDING" and reason not in ("", "None") else state
    return jobs


def _queue_summary(jobs: Mapping[str, str], job_ids: list[str]) -> str:
    """'2 RUNNING, 3 PENDING (Resources)' over the given jobs."""
    from collections import Counter

    counts = Counter(jobs.get(job_id, "ending") for job_id in job_ids)
    return ", ".join(f"{n} {state}" for state, n in counts.most_common())


def submitted_job(run_dir: Path) -> dict:
    """The SLURM job last recorded for a run: its status.json while it runs (or was stopped by a signal, and may be
    requeued), else the sweep's slurm.json."""
    status = read_json(run_dir / STATUS_FILE)
    if status.get("status") in ("running", "interrupted") and status.get("slurm_job_id"):
        return status
    if status.get("status") == "submitted":
        return read_json(run_dir / SLURM_JOB_FILE)
    return {}


def _job_state(job) -> str:
    try:
        return job.state
    except Exception:  # noqa: BLE001 - sacct can be briefly unavailable; the state is informative only
        return "UNKNOWN"


def finish_record(job, run_dir: Path) -> dict:
    """The outcome of a finished array task: what the task returned, or, when it ended without a result
    (killed, cancelled, out of memory, out of requeues), a failed record with its state and log tail."""
    try:
        return job.results()[0]
    except Exception as exc:  # noqa: BLE001 - submitit's UncompletedJobError / FailedJobError
        status = read_json(run_dir / STATUS_FILE)
        # a run a signal stopped (scancel, preemption) holds its checkpoint: still interrupted, the next sweep continues it
        status.update(status="interrupted" if status.get("status") == "interrupted" else "failed",
                      finished=utc_now(), slurm_job_id=job.job_id,
                      error=f"SLURM job {job.job_id} ended ({_job_state(job)}) without finishing the run: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                      log_tail=log_tail(job.paths.stderr), stdout=str(job.paths.stdout), stderr=str(job.paths.stderr))
        write_json(run_dir / STATUS_FILE, status)
        return {**status, "output_dir": str(run_dir), "metrics": {}}


def run_on_slurm(execute: Callable[..., dict], runner: Any, todo: list[tuple[dict, Path]], root: Path,
                 cluster: ClusterConfig, kernel_name: str | None, timeout: float | None, wait: bool, progress: bool,
                 report_done: Callable[[dict], None], print_fn: Callable[[str], None] | None,
                 poll_s: float = 2.0) -> None:
    """Submit the runs of ``todo`` that no queued job is running already as one job array; with ``wait``,
    follow every job (the new ones and those found queued) until it ends, reporting each as it finishes."""
    import submitit

    folder = root / LOG_FOLDER / "%j"
    queued = queued_jobs()
    following: list[tuple[Any, Path]] = []
    submit: list[tuple[dict, Path]] = []
    for parameters, run_dir in todo:
        record = submitted_job(run_dir)
        state = queued.get(record.get("slurm_job_id"), "")
        # a run stopped by a signal is followed only while SLURM requeues its job; a cancelled one is submitted again
        if state and (record.get("status") != "interrupted" or state.startswith(("PENDING", "RUNNING", "REQUEUE"))):
            following.append((submitit.SlurmJob(folder=folder, job_id=record["slurm_job_id"]), run_dir))
        else:
            submit.append((parameters, run_dir))
    if following and print_fn:
        print_fn(f"  {len(following)} run(s) are queued or running already: following them, not resubmitting")
    if submit:
        for parameters, run_dir in submit:  # a fresh folder per submission (an interrupted run keeps its checkpoint)
            if run_dir.exists() and read_json(run_dir / STATUS_FILE).get("status") != "interrupted":
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / PARAMS_FILE, run_record(runner, parameters))
            write_json(run_dir / STATUS_FILE, {"status": "submitted", "submitted": utc_now()})
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cluster.max_requeues)
        executor.update_parameters(**cluster.sbatch_options())
        try:
            with executor.batch():
                jobs = [executor.submit(SlurmTask(), execute, runner, p, d, kernel_name, timeout) for p, d in submit]
        except submitit.core.utils.FailedJobError as error:  # nothing was queued: leave no "submitted" runs behind
            for _, run_dir in submit:
                shutil.rmtree(run_dir)
                with contextlib.suppress(OSError):  # the point's folder, when this was its only run
                    run_dir.parent.rmdir()
            message = " ".join(str(error).replace("sbatch: error:", "").split())
            raise SubmissionError(f"sbatch refused the job array: {message}; check the cluster description "
                                  f"(partition, account, qos, cpus_per_task, gpus_per_node, mem_gb, time_min)") from None
        for job, (_, run_dir) in zip(jobs, submit):
            write_json(run_dir / SLURM_JOB_FILE, {"slurm_job_id": job.job_id, "stdout": str(job.paths.stdout),
                                                   "stderr": str(job.paths.stderr), "submitted": utc_now()})
            following.append((job, run_dir))
        if print_fn:
            print_fn(f"  submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks) to SLURM; "
                     f"logs in {root / LOG_FOLDER}")
    if wait:
        _follow(following, progress, report_done, poll_s)


def _follow(following: list[tuple[Any, Path]], progress: bool, report_done: Callable[[dict], None],
            poll_s: float, queue_every_s: float = 15.0) -> None:
    """Wait for every job, reporting each run as it ends; the bar shows the jobs' states (and why they pend)."""
    from tqdm.auto import tqdm

    queue_checked = 0.0
    with tqdm(total=len(following), desc="SLURM runs", unit="run", disable=not progress, file=sys.stderr) as bar:
        while following:
            still = []
            for job, run_dir in following:
                if job.done():
                    bar.update()
                    with tqdm.external_write_mode(file=sys.stderr):
                        report_done({**finish_record(job, run_dir), "output_dir": str(run_dir)})
                else:
                    still.append((job, run_dir))
            changed, following = len(still) < len(following), still
            if following and progress and (changed or time.monotonic() - queue_checked > queue_every_s):
                queue_checked = time.monotonic()
                bar.set_postfix_str(_queue_summary(queued_jobs(), [job.job_id for job, _ in following]))
            if following:
                time.sleep(poll_s)

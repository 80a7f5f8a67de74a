"""Faults a study meets on a shared cluster, with real processes, real signals and real files: two launches of one
sweep into one folder, a dead holder's lease, SIGTERM mid-epoch (``interrupted``, then resumed bit for bit)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reidlab import study
from reidlab.engine import Callback, ConfigError, RunDir, TrainingInterrupted, load_checkpoint, load_config, read_metrics, train
from reidlab.study.records import record_problem
from reidlab.utils.lease import LEASE_FILE, RunLease

REPO = Path(__file__).parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
TINY = ["data.generate=false", "data.size=[64,32]", "data.num_workers=0", "data.test_batch_size=64", "progress=false",
        "threads=1", "model.name=resnet18_tiny", "sampler.p=4", "sampler.k=4", "log_every=1"]


def tiny(synth_root: Path, *extra: str) -> list[str]:
    return [f"data.root={synth_root}", *TINY, *extra]


def reidlab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reidlab", *args], env=ENV, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended before {what}: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            if process is not None:
                process.kill()
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.005)


def logged_steps(output_dir: Path) -> list[int]:
    try:
        return [r["step"] for r in read_metrics(output_dir, "step")]
    except FileNotFoundError:
        return []


def interrupt(process: subprocess.Popen, signum: int) -> None:
    """Freeze the process where it is, signal it, let it go on: the signal lands mid-step, as a scheduler's does."""
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signum)
    process.send_signal(signal.SIGCONT)


# ------------------------------------------------------------------------------------ one writer per run


def test_two_launches_of_one_sweep_train_each_run_once(synth_root, tmp_path):
    out = tmp_path / "sweep"
    command = ["sweep", "-c", "synth_cpu", "--grid", "optim.lr=3e-4,1e-3,3e-3", "--seeds", "0", "1", "--out", str(out),
               *tiny(synth_root, "epochs=2", "max_iters_per_epoch=4", "eval.every=2")]
    first, second = reidlab(*command), reidlab(*command)  # the same command in two shells, or two array tasks
    outputs = {}
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        outputs[process.pid] = stdout
    runs = sorted(p.parent for p in out.glob("*/*/status.json"))
    assert len(runs) == 6
    trained_by = {}
    for run in runs:
        assert record_problem(run) is None  # nothing torn
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "ok" and status["pid"] in outputs and "restarts" not in status
        assert logged_steps(run) == list(range(1, 9))  # trained once: each step logged once
        assert not (run / LEASE_FILE).exists()  # given back
        trained_by[run.relative_to(out).as_posix()] = status["pid"]
    for pid, stdout in outputs.items():  # each launch says which runs it trained and which it followed
        said = dict(re.findall(r"\] (\S+/seed\d)  .*?(\(run by another launch\))?$", stdout, re.M))
        assert {run for run, followed in said.items() if not followed} == {r for r, p in trained_by.items() if p == pid}
    assert "held by another launch" in outputs[second.pid] + outputs[first.pid]  # they did meet
    assert len(set(trained_by.values())) == 2  # both trained some
    frame = study.collect(out)
    assert (frame["status"] == "ok").all() and len(frame) == 6


def test_a_second_training_process_into_the_same_folder_is_refused_naming_the_first(synth_root, tmp_path):
    out = tmp_path / "run"
    settings = tiny(synth_root, f"output_dir={out}", "epochs=2", "max_iters_per_epoch=12", "eval.every=2")
    first = reidlab("train", "-c", "synth_cpu", *settings)
    wait_for(lambda: len(logged_steps(out)) >= 1, "first step", first)
    with pytest.raises(ConfigError, match=rf"output_dir {re.escape(str(out))} is being trained by pid {first.pid} on "
                                          rf"{re.escape(socket.gethostname())}, since .*; two processes must not train"):
        train(load_config("synth_cpu", [*settings, "resume=auto"]), print_fn=None)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(out))} is being trained by pid {first.pid} on .*; deleting "
                                          r"its run \(resume = False\) must wait"):
        RunDir(out).clear()  # what a notebook's resume=False does first
    assert RunDir(out).log_path.exists()
    first.send_signal(signal.SIGKILL)  # its lock goes with it
    first.wait()
    first.stdout.close()
    first.stderr.close()
    train(load_config("synth_cpu", [*settings, "resume=auto"]), print_fn=None)
    assert RunDir(out).status() == "finished"


def record_runner(parameters: dict, output_dir: Path) -> dict:
    (output_dir / "ran.txt").write_text(str(os.getpid()))
    return {"mAP": 0.5, "rank1": 0.6}


def test_a_dead_holders_lease_is_taken_over_and_a_live_one_is_followed(tmp_path):
    root = tmp_path / "sweep"
    run = root / "default" / "seed0"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from reidlab.utils.lease import RunLease; "
                               f"RunLease({str(run)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert RunLease(run).holder()["pid"] == holder.pid  # alive: held
    holder.kill()  # SIGKILL: no chance to give the lease back
    holder.wait()
    assert json.loads((run / LEASE_FILE).read_text())["pid"] == holder.pid
    assert RunLease(run).holder() is None  # a dead process on this host holds nothing
    said = []
    frame = study.sweep({"default": {}}, seeds=[0], notebook=record_runner, output_root=root, print_fn=said.append)
    assert frame["status"].tolist() == ["ok"] and (run / "ran.txt").read_text() == str(os.getpid())
    assert not (run / LEASE_FILE).exists()

    # A live holder: the sweep follows it and reports what it recorded, without running it.
    other = root / "default" / "seed1"
    holder = subprocess.Popen([sys.executable, "-c", "import json, sys, time; from pathlib import Path; "
                               "from reidlab.utils.lease import RunLease; "
                               f"run = Path({str(other)!r}); lease = RunLease(run); lease.acquire(); "
                               "print('held', flush=True); time.sleep(3); "
                               "(run / 'params.json').write_text(json.dumps({'runner': 'x', 'parameters': {'seed': 1}})); "
                               "(run / 'metrics.json').write_text(json.dumps({'mAP': 0.25})); "
                               "(run / 'status.json').write_text(json.dumps({'status': 'ok', 'pid': 1})); "
                               "lease.release()"], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said.clear()
    frame = study.sweep({"default": {}}, seeds=[0, 1], notebook=record_runner, output_root=root, print_fn=said.append)
    assert holder.wait(timeout=60) == 0
    assert not (other / "ran.txt").exists()  # not run here
    assert frame.set_index("run").loc["default/seed1", "mAP"] == 0.25
    assert any("1 held by another launch" in line for line in said)
    assert any("default/seed1" in line and "(run by another launch)" in line for line in said)


def test_a_lease_from_another_host_holds_until_it_expires_and_a_reused_pid_holds_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lease = run / LEASE_FILE
    lease.write_text(json.dumps({"host": "node-b", "pid": 4242, "process_start": "77", "job_id": "99_1",
                                 "claimed": "2026-12-05T00:00:00+00:00"}))
    assert RunLease(run, expire_seconds=30).holder()["host"] == "node-b"  # renewed just now: held
    old = time.time() - 60
    os.utime(lease, (old, old))
    assert RunLease(run, expire_seconds=120).holder() is not None
    claim = RunLease(run, expire_seconds=30)
    assert claim.acquire() is None and claim.took_over["host"] == "node-b"  # not renewed for 60 s > 30 s
    assert json.loads(lease.read_text())["pid"] == os.getpid()
    claim.release()
    # this host, a live pid, but another process than the one that claimed (the pid was reused): stale
    lease.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "process_start": "1"}))
    assert RunLease(run).holder() is None
    # a SLURM job requeued onto another node finds its own earlier lease: taken over at once
    lease.write_text(json.dumps({"host": "node-b", "pid": 4242, "job_id": "99_1"}))
    os.environ["SLURM_JOB_ID"] = "99_1"
    try:
        assert RunLease(run, expire_seconds=1e9).holder() is None
    finally:
        del os.environ["SLURM_JOB_ID"]
    assert RunLease(run, expire_seconds=1e9).holder() is not None


# ------------------------------------------------------------------------------------ SIGTERM and SIGINT


STOPPED_RUN = ("epochs=2", "max_iters_per_epoch=12", "eval.every=2")


def same_training(a: Path, b: Path) -> None:
    """Bit-identical weights, and the same logged losses and evaluations, step by step."""
    final, expected = load_checkpoint(a / "checkpoints" / "last.pt")["model"], load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)

    def curve(folder: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("img_per_s", "epoch_seconds")} for r in read_metrics(folder)
                if r["type"] in ("step", "epoch", "eval")]

    assert curve(a) == curve(b)


def test_sigterm_mid_epoch_marks_the_run_interrupted_and_resume_continues_it_bit_for_bit(synth_root, tmp_path):
    reference = tmp_path / "reference"
    expected = train(load_config("synth_cpu", tiny(synth_root, f"output_dir={reference}", *STOPPED_RUN)), print_fn=None)
    out = tmp_path / "stopped"
    process = reidlab("train", "-c", "synth_cpu", *tiny(synth_root, f"output_dir={out}", *STOPPED_RUN))
    wait_for(lambda: len(logged_steps(out)) >= 3, "third step", process)
    interrupt(process, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"reidlab train: SIGTERM stopped training after step (\d+) of epoch 1 \(global step \1\); "
                        rf"{re.escape(str(out / 'checkpoints' / 'last.pt'))} holds it: resume=auto continues the run",
                        line), line
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    stopped_at = state["global_step"]
    assert 3 <= stopped_at < expected["global_step"] / 2 and state["epoch"] == 0 and state["interrupted_by"] == "SIGTERM"
    assert state["epoch_progress"][0]["steps_done"] == stopped_at  # saved mid-epoch, the step finished
    assert RunDir(out).status() == "interrupted" and not (out / "checkpoints" / "best.pt").exists()
    assert [r["signal"] for r in read_metrics(out, "interrupted")] == ["SIGTERM"]

    said = []
    resumed = train(load_config("synth_cpu", tiny(synth_root, f"output_dir={out}", *STOPPED_RUN, "resume=auto")),
                    print_fn=said.append)
    assert f"after step {stopped_at} of epoch 1 (step {stopped_at}); it was stopped by SIGTERM" in said[0]
    assert {k: resumed[k] for k in ("mAP", "rank1", "global_step")} == {k: expected[k] for k in ("mAP", "rank1", "global_step")}
    same_training(out, reference)
    assert logged_steps(out) == list(range(1, expected["global_step"] + 1))


class StopAtStep(Callback):
    """Delivers a stop request after a given step, as the signal handler does (same path, no timing)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, batch, logs):
        if step == self.step:
            trainer.stop_signal = signal.SIGINT


def test_a_run_stopped_mid_epoch_with_loader_workers_and_hard_batches_resumes_bit_for_bit(synth_root, tmp_path):
    """Loader workers replay the epoch's first batches (their random streams advance as before); a mined plan
    comes from the checkpoint, as the classifier it was mined from has moved on since."""
    settings = ("epochs=3", "max_iters_per_epoch=5", "eval.every=3", "data.num_workers=2", "sampler.name=hard",
                "sampler.hard_warmup_epochs=1", "scene.enabled=true")
    reference, out = tmp_path / "reference", tmp_path / "stopped"
    train(load_config("synth_cpu", tiny(synth_root, f"output_dir={reference}", *settings)), print_fn=None)
    with pytest.raises(TrainingInterrupted, match="SIGINT stopped training after step 2 of epoch 3") as stopped:
        train(load_config("synth_cpu", tiny(synth_root, f"output_dir={out}", *settings)), callbacks=[StopAtStep(12)],
              print_fn=None)
    assert stopped.value.signal_name == "SIGINT"
    train(load_config("synth_cpu", tiny(synth_root, f"output_dir={out}", *settings, "resume=auto")), print_fn=None)
    same_training(out, reference)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's parent may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_sweeps_worker_processes_stop_their_runs_when_it_is_stopped_or_killed(synth_root, tmp_path, signum):
    """SIGTERM to a sweep with worker processes stops their runs after the step, as in one process. SIGKILL (as when a
    notebook kernel exits) orphans the workers: they stop their runs the same way and exit. Nothing further starts."""
    out = tmp_path / "sweep"
    process = reidlab("sweep", "-c", "synth_cpu", "--grid", "optim.lr=3e-4,1e-3,3e-3", "--seeds", "0", "--workers", "2",
                      "--out", str(out), *tiny(synth_root, "epochs=30", "eval.every=0"))  # 6 steps an epoch: ~20 s a run

    def started() -> list[Path]:
        return [run for run in out.glob("*/seed0") if len(logged_steps(run)) >= 2]

    wait_for(lambda: len(started()) == 2, "two runs training", process)
    runs = started()
    workers = [json.loads((run / "status.json").read_text())["pid"] for run in runs]
    assert len(set(workers)) == 2 and process.pid not in workers
    interrupt(process, signum)
    _, stderr = process.communicate(timeout=120)
    wait_for(lambda: not any(map(running, workers)), "end of the worker processes", timeout=120)
    if signum == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1].startswith("reidlab sweep: SIGTERM stopped training after step ")
    else:
        assert process.returncode == -signal.SIGKILL
    for run in runs:
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
        assert RunDir(run).checkpoint("last").exists()
    assert not [run for run in out.glob("*/seed0") if run not in runs and (run / "status.json").exists()]


def test_sigterm_stops_a_sweep_as_interrupted_and_the_next_launch_continues_the_run(synth_root, tmp_path):
    out = tmp_path / "sweep"
    command = ["sweep", "-c", "synth_cpu", "--seeds", "0", "--out", str(out),
               *tiny(synth_root, "epochs=2", "max_iters_per_epoch=12", "eval.every=2")]
    run = out / "default" / "seed0"
    process = reidlab(*command)
    wait_for(lambda: len(logged_steps(run)) >= 3, "third step", process)
    interrupt(process, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("reidlab sweep: SIGTERM stopped training after step ")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert study.collect(out)["status"].tolist() == ["interrupted"]

    again = reidlab(*command)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "ok" and status["restarts"] == 1
    steps = json.loads((run / "metrics.json").read_text())["global_step"]
    assert logged_steps(run) == list(range(1, steps + 1))  # continued, not started over

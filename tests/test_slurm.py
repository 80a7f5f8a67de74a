"""Sweeps on SLURM: the cluster description, `reidlab sweep`, and (marked `slurm`) runs on a real cluster, the
single-node one of `scripts/slurm-local`: job arrays, requeue, failures, DDP inside an allocation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from reidlab import study

REPO = Path(__file__).parent.parent
# Two-step CPU runs on the shared test SynthReID.
TINY = {"data.generate": False, "data.size": [64, 32], "data.num_workers": 0, "data.test_batch_size": 64,
        "progress": False, "threads": 1, "device": "cpu", "model.name": "resnet18_tiny", "sampler.p": 4,
        "sampler.k": 4, "epochs": 2, "max_iters_per_epoch": 2, "eval.every": 0}
METRICS = ["mAP", "rank1", "rank5", "mINP"]


def tiny(synth_root, **extra) -> dict:
    return {**TINY, "data.root": str(synth_root), **extra}


def cli_overrides(overrides: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v}"
            for k, v in overrides.items()]


def local_cluster(tmp_path: Path) -> tuple[Path, str]:
    """A cluster file for scripts/slurm-local, and the job name of its own that finds this test's jobs in sacct."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "cluster.yaml"
    path.write_text(f"partition: debug\ncpus_per_task: 1\ntime_min: 30\njob_name: {name}\n")
    return path, name


def jobs_named(name: str) -> list[str]:
    """Ids of the jobs (array tasks) SLURM's accounting holds under a job name."""
    result = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", f"--name={name}", "-S", "now-1day"],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def reidlab(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "reidlab", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


# ------------------------------------------------------------------ without a cluster


def test_cluster_description_from_yaml_keywords_and_errors(tmp_path):
    example = study.load_cluster(REPO / "configs" / "cluster.yaml")
    options = example.sbatch_options()
    assert options["partition"] == "gpu" and options["gpus_per_node"] == 1 and options["ntasks_per_node"] == 1
    assert options["mem"] == "32GB" and options["time"] == 240 and options["additional_parameters"] == {"constraint": "a100"}
    assert study.load_cluster(REPO / "configs" / "cluster.yaml", gpus_per_node=4).tasks == 4  # one process per GPU
    assert study.load_cluster({"tasks_per_node": 2}).sbatch_options()["ntasks_per_node"] == 2
    assert study.load_cluster({"extra_sbatch": ["#SBATCH --exclusive"]}).sbatch_options()["additional_parameters"] == {"exclusive": True}
    bad = tmp_path / "bad.yaml"
    bad.write_text("partiton: gpu\n")
    with pytest.raises(ValueError, match=r"cluster file .*bad.yaml: unknown config key 'partiton'; valid keys: partition"):
        study.load_cluster(bad)
    with pytest.raises(ValueError, match="cluster description: config key 'cpus_per_task' expects an int"):
        study.load_cluster({"cpus_per_task": "many"})
    with pytest.raises(ValueError, match="is not an sbatch option"):
        study.load_cluster({"extra_sbatch": ["constraint=a100"]})
    with pytest.raises(ValueError, match="does not exist"):
        study.load_cluster(tmp_path / "missing.yaml")


def test_parse_grid():
    assert study.parse_grid(["loss.metric=adasp,sp-h", "optim.lr=1e-3,3e-3", "data.size=[64,32],[128,64]"]) == {
        "loss.metric": ["adasp", "sp-h"], "optim.lr": ["1e-3", "3e-3"], "data.size": [[64, 32], [128, 64]]}
    with pytest.raises(ValueError, match="the grid is empty"):
        study.parse_grid(["loss.metric="])
    with pytest.raises(ValueError, match="given twice"):
        study.parse_grid(["seed=1", "seed=2"])


def test_sweep_command_locally_writes_runs_csv_and_a_summary(synth_root, tmp_path):
    result = reidlab("sweep", "--grid", "loss.metric=adasp,sp-h", "--seeds", "0", "1", "--out", str(tmp_path / "sw"),
                     "--workers", "2", *cli_overrides(tiny(synth_root)))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "sw" / "runs.csv")
    assert list(runs.columns[:5]) == ["run", "point", "seed", "status", "loss.metric"] and "mAP" in runs
    assert sorted(runs["run"]) == ["loss.metric=adasp/seed0", "loss.metric=adasp/seed1", "loss.metric=sp-h/seed0",
                                   "loss.metric=sp-h/seed1"]
    assert (runs["status"] == "ok").all() and not any(c.startswith(("param.", "prov.")) for c in runs.columns)
    lines = result.stdout.splitlines()
    assert sum("mAP=" in line for line in lines) == 4  # one line per finished run
    summary = next(line for line in lines if line.startswith("loss.metric=adasp ") or " loss.metric=adasp " in line)
    assert "2/2" in summary and "±" in summary


@pytest.mark.parametrize("args, message", [
    (["--grid", "loss.metrc=adasp,sp-h"], "unknown config key 'loss.metrc'"),
    (["--grid", "loss.metric="], "the grid is empty"),
    (["--grid", "loss.metric=adasp,nope"], "loss.metric"),
    (["--executor", "slurm", "--cluster", "CLUSTER"], "unknown config key 'gpus'"),
    (["--cluster", "CLUSTER"], "add --executor slurm"),
    (["--seeds", "0", "one"], "--seeds must be a non-empty list of distinct integers"),
])
def test_sweep_command_bad_input_is_one_line(args, message, tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("gpus: 4\n")
    args = [str(cluster) if a == "CLUSTER" else a for a in args]
    result = reidlab("sweep", "--out", str(tmp_path / "sw"), *args, "data.generate=false", cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.startswith("reidlab sweep: error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()  # nothing started


def test_slurm_executor_without_slurm_is_a_clear_error(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue, no sbatch
    with pytest.raises(ValueError, match=r"executor 'slurm' needs a SLURM cluster \(squeue is not installed\).*slurm-local"):
        study.sweep({"p": {"overrides": tiny(synth_root)}}, seeds=[0], notebook=study.train_run, output_root=tmp_path / "sw",
                    executor="slurm", cluster={"cpus_per_task": 1})
    assert not (tmp_path / "sw").exists()


# ------------------------------------------------------------------ on a real cluster


@pytest.mark.slurm
def test_slurm_sweep_equals_local_records_its_jobs_and_resubmits_nothing(slurm_cluster, synth_root, tmp_path):
    cluster, job_name = local_cluster(tmp_path)
    common = ["--grid", "loss.metric=adasp,sp-h", "--seeds", "0", "1", *cli_overrides(tiny(synth_root))]
    on_slurm = reidlab("sweep", "--out", str(tmp_path / "slurm"), "--executor", "slurm", "--cluster", str(cluster), *common)
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    assert "submitted job array" in on_slurm.stdout and sum("mAP=" in line for line in on_slurm.stdout.splitlines()) == 4
    here = reidlab("sweep", "--out", str(tmp_path / "local"), *common)
    assert here.returncode == 0, here.stderr[-3000:]
    slurm_runs, local_runs = (pd.read_csv(tmp_path / d / "runs.csv").set_index("run").sort_index() for d in ("slurm", "local"))
    assert (slurm_runs["status"] == "ok").all()
    pd.testing.assert_frame_equal(slurm_runs[METRICS], local_runs[METRICS])  # same seeds, same numbers
    arrays = set()
    for run in slurm_runs.index:
        status = json.loads((tmp_path / "slurm" / run / "status.json").read_text())
        assert status["status"] == "ok" and status["node"] and Path(status["stdout"]).is_file()
        arrays.add(status["slurm_job_id"].split("_")[0])
        assert "finished 2 epochs" in Path(status["stdout"]).read_text()  # the trainer's log is the job's log
    assert len(arrays) == 1 and len(jobs_named(job_name)) == 4  # one array of four tasks
    again = reidlab("sweep", "--out", str(tmp_path / "slurm"), "--executor", "slurm", "--cluster", str(cluster), *common)
    assert again.returncode == 0 and "4 done" in again.stdout and "0 to run" in again.stdout
    assert "submitted" not in again.stdout and len(jobs_named(job_name)) == 4


@pytest.mark.slurm
def test_requeued_run_continues_from_its_checkpoint_to_the_same_result(slurm_cluster, synth_root, tmp_path):
    # Long enough (30 short epochs) that the requeue lands mid-run, past SLURM's 2 s grace period.
    grid = {"long": {"overrides": tiny(synth_root, epochs=30, max_iters_per_epoch=30)}}
    kwargs = dict(seeds=[0], notebook=study.train_run, executor="slurm", progress=False,
                  cluster={"cpus_per_task": 1, "time_min": 30})
    study.sweep(grid, output_root=tmp_path / "requeued", wait=False, **kwargs)
    run = tmp_path / "requeued" / "long" / "seed0"
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "last.pt").exists():  # the first epoch's checkpoint
        assert time.monotonic() < deadline, (run / "status.json").read_text()
        time.sleep(0.1)
    job_id = json.loads((run / "slurm.json").read_text())["slurm_job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    again = study.sweep(grid, output_root=tmp_path / "requeued", **kwargs)  # follows the queued job, submits nothing
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "ok" and status["restarts"] == 1 and status["slurm_job_id"] == job_id
    resumed = re.search(r"resumed from \S+ after (?:step \d+ of )?epoch (\d+)", Path(status["stdout"]).read_text())
    assert resumed and 1 <= int(resumed[1]) < 30  # mid-run, from a checkpoint
    uninterrupted = study.sweep(grid, output_root=tmp_path / "local", seeds=[0], notebook=study.train_run)
    assert again.loc[0, METRICS].tolist() == uninterrupted.loc[0, METRICS].tolist()  # bit-identical on CPU


@pytest.mark.slurm
def test_scancel_leaves_the_run_interrupted_and_the_next_sweep_continues_it(slurm_cluster, synth_root, tmp_path):
    """scancel sends SIGTERM, then SIGKILL after KillWait: the trainer saves its step, the run is `interrupted`
    (not failed), and the next sweep submits it again to continue from that checkpoint."""
    grid = {"long": {"overrides": tiny(synth_root, epochs=30, max_iters_per_epoch=30, log_every=1)}}
    kwargs = dict(seeds=[0], notebook=study.train_run, executor="slurm", progress=False, output_root=tmp_path,
                  cluster={"cpus_per_task": 1, "time_min": 30})
    study.sweep(grid, wait=False, **kwargs)
    run = tmp_path / "long" / "seed0"
    deadline = time.monotonic() + 300
    while not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").read_text().count('"step"') < 3:
        assert time.monotonic() < deadline, (run / "status.json").read_text()
        time.sleep(0.1)
    job_id = json.loads((run / "slurm.json").read_text())["slurm_job_id"]
    subprocess.run(["scancel", job_id], check=True)
    while json.loads((run / "status.json").read_text())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
    frame = study.sweep(grid, **kwargs)  # submits it again; the new job continues from the checkpoint
    status = json.loads((run / "status.json").read_text())
    assert frame.loc[0, "status"] == "ok" and status["slurm_job_id"] != job_id
    log = Path(status["stdout"]).read_text()
    assert re.search(r"resumed from \S+ after step \d+ of epoch \d+ .*it was stopped by SIGTERM", log), log[-2000:]


@pytest.mark.slurm
def test_failed_run_is_recorded_with_its_job_and_log_tail(slurm_cluster, synth_root, tmp_path):
    grid = {"good": {"overrides": tiny(synth_root)}, "impossible": {"overrides": tiny(synth_root, **{"sampler.k": 0})}}
    kwargs = dict(seeds=[0], notebook=study.train_run, output_root=tmp_path, executor="slurm", progress=False,
                  cluster={"cpus_per_task": 1, "time_min": 30})
    frame = study.sweep(grid, **kwargs).set_index("point")
    assert frame.loc["good", "status"] == "ok" and frame.loc["impossible", "status"] == "failed"
    status = json.loads((tmp_path / "impossible" / "seed0" / "status.json").read_text())
    assert "sampler.k" in status["error"] and status["slurm_job_id"] and status["node"]
    assert "ConfigError" in status["log_tail"] and "sampler.k" in status["log_tail"]  # the traceback, from the job's log
    printed: list[str] = []
    study.sweep(grid, print_fn=printed.append, **kwargs)  # failed runs are kept, not resubmitted, unless asked
    assert "1 failed (kept; retry_failed=True runs them again), 0 to run" in printed[0]


@pytest.mark.slurm
def test_ddp_inside_an_allocation_and_the_multinode_template_agree(slurm_cluster, synth_root, tmp_path):
    overrides = tiny(synth_root)
    frame = study.sweep({"ddp": {"overrides": overrides}}, seeds=[0], notebook=study.train_run, progress=False,
                        output_root=tmp_path / "sweep", executor="slurm",
                        cluster={"cpus_per_task": 1, "tasks_per_node": 2, "time_min": 30})
    assert frame.loc[0, "status"] == "ok" and frame.loc[0, "prov.world_size"] == 2  # one process per task
    # The documented sbatch template (torchrun on each node), on this one-node cluster without GPUs.
    template = (REPO / "scripts" / "train-multinode.sbatch").read_text()
    local = "\n".join(line for line in template.splitlines()
                      if not line.startswith(("#SBATCH --gpus-per-node", "#SBATCH --mem", "#SBATCH --cpus-per-task")))
    (tmp_path / "train.sbatch").write_text(local)
    env = {**os.environ, "NPROC_PER_NODE": "2", "HF_HUB_OFFLINE": "1", "OUTPUT_DIR": str(tmp_path / "template"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    job_id = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--cpus-per-task=2", "--wait", "train.sbatch",
                             "seed=0", *cli_overrides(overrides)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert job_id.returncode == 0, (job_id.stderr, list(tmp_path.glob("*.out")) and next(tmp_path.glob("*.out")).read_text()[-3000:])
    metrics = json.loads((tmp_path / "template" / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2
    assert [metrics[k] for k in METRICS] == frame.loc[0, METRICS].tolist()


@pytest.mark.slurm
def test_ablation_notebook_runs_its_sweep_as_a_job_array(slurm_cluster, tmp_path):
    from test_notebooks import TINY_PROFILE

    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY_PROFILE)
    out = tmp_path / "ablation"
    cluster, job_name = local_cluster(tmp_path)
    study.run_notebook("ablation", {"profile": str(profile), "tables": ["adasp"], "only": {"adasp": ["AdaSP", "Triplet"]},
                                    "untrained_margin": -100.0, "executor": "slurm", "cluster": str(cluster)}, out)
    runs = study.collect(out / "runs")
    assert len(runs) == 4 and (runs["status"] == "ok").all()
    assert json.loads((out / "metrics.json").read_text())["runs"] == 4
    backbone = json.loads((out / "data" / "pretrain" / "backbone" / "seed0" / "status.json").read_text())
    assert backbone["slurm_job_id"] and all(json.loads((out / "runs" / run / "status.json").read_text())["slurm_job_id"]
                                            for run in runs["run"])
    assert len(jobs_named(job_name)) == 5  # the shared backbone's pretraining, then one array of four runs


def test_paper_study_runs_each_table_as_a_job_array(slurm_cluster, tmp_path):
    """The paper profile on fabricated Market-1501 and VeRi-776 through SLURM: the calibration, then the AdaSP
    table as one array; the estimate comes first, and the claims hold the published values."""
    from test_paper_study import TINY_SETS, fabricate, datasets_file

    cluster, job_name = local_cluster(tmp_path)
    datasets = datasets_file(fabricate(tmp_path / "benchmarks"), ["market1501", "veri776"])
    sets = [*TINY_SETS, "tables=[adasp]"]
    result = reidlab("report", "--profile", "paper", "--datasets", str(datasets), "--output", str(tmp_path / "out"),
                     "--executor", "slurm", "--cluster", str(cluster), *[x for s in sets for x in ("--set", s)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.index("estimate: ") < result.stdout.index("[paper] running")
    out = tmp_path / "out" / "paper"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 12 and (runs["status"] == "ok").all()
    assert all(json.loads((out / "runs" / "paper" / run / "status.json").read_text())["slurm_job_id"] for run in runs["run"])
    arrays = {job.split("_")[0] for job in jobs_named(job_name)}
    assert len(jobs_named(job_name)) == 2 + 12 and len(arrays) == 2  # the calibration's array, then the table's
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["person-vehicle-interaction"]["published"] == pytest.approx(3.5 - (75.3 - 77.2))

"""Bad input through the command line, each case in its own process, as a user meets it: exit status 2, one
short message on stderr, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from test_engine_config import _write_bad_checkpoints

REPO = Path(__file__).parent.parent


def run_cli_cases(cases: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    """Run `python -m reidlab ARGS` for every case at once (they are independent processes) and wait for all."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    running = {name: subprocess.Popen([sys.executable, "-m", "reidlab", *args], cwd=REPO, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name, args in cases.items()}
    done = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def assert_one_clear_error(name: str, result: subprocess.CompletedProcess, message: str) -> None:
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
    assert len(output) <= 3, (name, output)
    assert message in result.stderr, (name, message, result.stderr)


def test_unusable_checkpoints_and_resume_without_one(synth_root, tmp_path):
    data = ["data.generate=false", f"data.root={synth_root}", "data.size=[64, 32]", "model.name=resnet18_tiny"]
    bad = _write_bad_checkpoints(tmp_path)
    cases = {name: ["eval", "-c", "synth_cpu", f"checkpoint={path}", *data] for name, (path, _) in bad.items()}
    cases["resume without a checkpoint"] = ["train", "-c", "synth_cpu", f"output_dir={tmp_path / 'fresh'}",
                                            "resume=true", *data]
    messages = {name: f"not a readable reidlab checkpoint: {path}: " for name, (path, _) in bad.items()}
    messages["resume without a checkpoint"] = "resume=true but"
    for name, result in run_cli_cases(cases).items():
        assert_one_clear_error(name, result, messages[name])
        if name in bad:
            assert bad[name][1] in result.stderr and "weights_only" not in result.stderr, (name, result.stderr)


def damaged_copy(synth_root, folder: Path, *, empty_query: bool = False) -> tuple[Path, list[Path]]:
    """A copy of the test SynthReID with every training image of one identity and one gallery image replaced by
    bytes that are no image (or with its query folder emptied); returns the root and the damaged files."""
    root = shutil.copytree(synth_root, folder)
    if empty_query:
        for path in (root / "query").iterdir():
            path.unlink()
        return root, []
    train = sorted((root / "bounding_box_train").glob("*.jpg"))
    first_id = train[0].name.split("_")[0]
    damaged = [p for p in train if p.name.startswith(first_id + "_")]
    damaged.append(sorted((root / "bounding_box_test").glob("0*.jpg"))[-1])
    for path in damaged:
        path.write_bytes(b"not a JPEG")
    return root, damaged


FAST = ["data.generate=false", "data.size=[64, 32]", "model.name=resnet18_tiny", "data.num_workers=0",
        "threads=1", "sampler.p=4", "sampler.k=4", "eval.every=0", "progress=false", "epochs=1"]


def test_bad_input_is_one_line_before_any_training_step(synth_root, tmp_path):
    """Each validation case exits with status 2 before the run writes a single training step."""
    data = [f"data.root={synth_root}", *FAST]
    empty_root, _ = damaged_copy(synth_root, tmp_path / "empty_query", empty_query=True)
    cases = {
        "negative lr": (["optim.lr=-1"], "config key 'optim.lr' must be > 0, got -1"),
        "unknown model": (["model.name=resnet_unknown"], "config key 'model.name' names no registered model"),
        "one image per identity": (["sampler.k=1"], "sampler.k=1 gives every identity one image per batch"),
        "more identities than exist": (["sampler.p=500"], "sampler.p=500 identities per batch but synthreid has only 24"),
        "empty query split": ([f"data.root={empty_root}"], "0 query and"),
        "zero epochs": (["epochs=0"], "config key 'epochs' must be >= 1, got 0"),
        "label smoothing of 1": (["loss.label_smoothing=1.0"], "config key 'loss.label_smoothing' must be in [0, 1)"),
    }
    if not torch.cuda.is_available():
        cases["no GPU"] = (["device=cuda"], "device=cuda was asked for but this machine has no usable CUDA device")
    outputs = {name: tmp_path / name.replace(" ", "_") for name in cases}
    results = run_cli_cases({name: ["train", "-c", "synth_cpu", *data, *extra, f"output_dir={outputs[name]}"]
                             for name, (extra, _) in cases.items()})
    for name, result in results.items():
        assert_one_clear_error(name, result, cases[name][1])
        assert not (outputs[name] / "metrics.jsonl").exists(), name  # no step was taken


def test_corrupt_images_stop_the_run_by_name_or_are_skipped_and_counted(synth_root, tmp_path):
    root, damaged = damaged_copy(synth_root, tmp_path / "damaged")
    train_cmd = ["train", "-c", "synth_cpu", f"data.root={root}", *FAST]
    results = run_cli_cases({
        "stop": [*train_cmd, f"output_dir={tmp_path / 'stop'}"],
        "skip": [*train_cmd, f"output_dir={tmp_path / 'skip'}", "data.skip_corrupt=true"],
    })
    assert_one_clear_error("stop", results["stop"], "cannot decode image")
    assert str(tmp_path / "damaged") in results["stop"].stderr and "reidlab check-data" in results["stop"].stderr
    assert results["skip"].returncode == 0, results["skip"].stderr[-2000:]
    metrics = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert metrics["skipped_train_images"] == len(damaged) - 1 and metrics["skipped_images"] == 1
    logged = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in logged if r["type"] == "skipped") == sorted(map(str, damaged[:-1]))
    # Evaluating on the damaged test set: the gallery image stops `reidlab eval` by name, or is skipped.
    checkpoint = tmp_path / "skip" / "checkpoints" / "last.pt"
    eval_cmd = ["eval", "-c", str(tmp_path / "skip" / "config.yaml"), f"checkpoint={checkpoint}"]
    results = run_cli_cases({"stop": [*eval_cmd, "data.skip_corrupt=false"], "skip": eval_cmd})
    assert_one_clear_error("eval stop", results["stop"], f"cannot decode image {damaged[-1]}")
    assert results["skip"].returncode == 0, results["skip"].stderr[-2000:]
    assert json.loads(checkpoint.with_name("last.pt.eval.json").read_text())["skipped_images"] == 1

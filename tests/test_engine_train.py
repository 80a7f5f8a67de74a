"""Training runs on a small SynthReID: learning, kill + resume, hooks, bad input, hard mining + scene removal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from reidlab.engine import Callback, ConfigError, NonFiniteLossError, load_config, load_trained, read_metrics, train
from reidlab.engine.checkpoint import load_checkpoint
from reidlab.engine.evaluator import eval_loader, run_evaluation
from reidlab.engine.resume import resume_from_last
from reidlab.engine.trainer import Trainer

# CPU-sized settings shared by these tests: 64 x 32 inputs, one thread (bit-identical runs), no workers.
FAST = [
    "data.generate=false",
    "data.size=[64, 32]",
    "data.num_workers=0",
    "data.test_batch_size=64",
    "progress=false",
    "threads=1",
    "model.name=resnet18_tiny",
    "sampler.p=4",
    "sampler.k=4",
    "log_every=1",
]
COMPARED = ("mAP", "mINP", "rank1", "rank5", "epochs_completed", "global_step", "best_mAP", "best_epoch")


def overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", f"output_dir={out}", *FAST, *extra]


class Recorder(Callback):
    def __init__(self):
        self.epochs, self.steps = [], []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.epochs.append((epoch, dict(metrics)))

    def on_step_end(self, trainer, step, batch, logs):
        self.steps.append(step)


def test_bound_hooks_leave_out_the_no_ops():
    """The step loop calls (and prepares float logs for) only hooks that some callback implements: hard batch
    mining alone adds no per-step work."""
    from reidlab.engine import HardBatchMining, SceneStrengthRamp, bound_hooks

    class Plain:  # any object with some of the methods
        def on_step_end(self, trainer, step, batch, logs): ...

    recorder, ramp, mining = Recorder(), SceneStrengthRamp(1.0, 10), HardBatchMining()
    with_attribute = Callback()
    with_attribute.on_train_end = lambda trainer, metrics: None
    hooks = bound_hooks([mining, ramp, recorder, Plain(), with_attribute])
    assert hooks["on_epoch_start"] == [mining.on_epoch_start]
    assert hooks["on_step_start"] == [ramp.on_step_start]
    assert len(hooks["on_step_end"]) == 2 and hooks["on_step_end"][0] == recorder.on_step_end
    assert hooks["on_train_end"] == [with_attribute.on_train_end] and hooks["on_train_start"] == []
    assert bound_hooks([mining])["on_step_end"] == []


# Ops that make the host wait for an accelerator: a value read (bool, item, float), and ops whose output size
# depends on the values.
HOST_WAITS = ("aten::_local_scalar_dense", "aten::_unique2", "aten::nonzero", "aten::masked_select")


def test_a_training_step_waits_for_the_device_only_where_it_must(synth_root, tmp_path):
    """An MGN step (5 metric groups, 8 CE heads, a scene adversary) with the value checks as an accelerator
    runs them (off) makes two host waits: the trainer's finite-loss check and the batch's label layout (one
    torch.unique for all groups). Before the checks were reworked it made 16. Counted with the CPU profiler;
    the optimizer is left out (CPU fused Adam reads its step counters on the host, CUDA's on the device)."""
    from reidlab.losses import value_checks

    config = load_config("synth_cpu", overrides(synth_root, tmp_path, "model.name=mgn_resnet18_ibn_a", "data.size=[96, 32]",
                                                "scene.enabled=true"))
    trainer = Trainer(config)
    trainer.train_model.train()
    batches = iter(trainer.train_loader)
    trainer.train_step(next(batches))
    batch = next(batches)  # a new labels tensor, as every step gets
    with value_checks(False), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        trainer.train_step(batch)
    waits = []
    for event in profile.events():
        parents, parent = [], event.cpu_parent
        while parent is not None:
            parents.append(parent.name)
            parent = parent.cpu_parent
        if event.name in HOST_WAITS and not any(name.startswith("Optimizer.step") for name in parents):
            waits.append((event.name, *parents[:2]))
    assert sorted(waits) == [("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"), ("aten::_unique2",)]


def test_short_training_clearly_beats_the_untrained_model(synth_root, tmp_path):
    config = load_config(
        "synth_cpu",
        overrides(synth_root, tmp_path, "model.name=resnet18", "epochs=8", "sampler.p=8", "optim.lr=3e-3",
                  "optim.warmup_epochs=0", "data.aug={erasing_p: 0.0, padding: 0}", "eval.every=0"),
    )
    trainer = Trainer(config)
    untrained = run_evaluation(trainer.model, trainer.dataset, config, trainer.ctx)
    final = trainer.fit()
    assert final["epochs_completed"] == 8
    assert final["mAP"] > max(2.5 * untrained["mAP"], untrained["mAP"] + 0.08), (untrained, final)
    assert json.loads((tmp_path / "metrics.json").read_text())["mAP"] == final["mAP"]
    epochs = read_metrics(tmp_path, "epoch")
    assert epochs[-1]["total"] < epochs[0]["total"]


def test_vehicleid_is_scored_over_ten_gallery_draws_of_all_test_images(synth_root, tmp_path):
    """The engine scores a dataset by the protocol it declares (VehicleID's 10 gallery draws), never by its name."""
    from reidlab.data import dataset_class
    from reidlab.evaluation import evaluate_vehicleid, extract_features

    config = load_config("synth_cpu", overrides(synth_root, tmp_path))
    trainer = Trainer(config)
    assert dataset_class("vehicleid").protocol == "draws" and trainer.dataset.protocol == "market"
    trainer.dataset.protocol = "draws"
    metrics = run_evaluation(trainer.model, trainer.dataset, config)
    records = trainer.dataset.query + trainer.dataset.gallery
    feats, vids, _ = extract_features(trainer.model, eval_loader(records, config))
    expected = evaluate_vehicleid(feats, vids, num_draws=10)
    assert metrics["num_draws"] == 10 and "mINP" not in metrics
    assert metrics["mAP"] == pytest.approx(expected["mAP"]) and metrics["rank1"] == pytest.approx(expected["R1"])
    assert metrics["rank5"] == pytest.approx(expected["R5"]) and metrics["rank1_std"] == pytest.approx(expected["R1_std"])


def test_vehicleid_fits_a_camera_embedding(tmp_path):
    """The SIE table is sized from dataset.num_cameras: every VehicleID image must index a row of it."""
    from PIL import Image

    from reidlab.data import build_dataset
    from reidlab.engine.builders import build_reid_model

    base = tmp_path / "VehicleID"
    (base / "image").mkdir(parents=True)
    (base / "train_test_split").mkdir()
    lines = {"train_list": [], "test_list_800": []}
    for i in range(24):
        Image.new("RGB", (32, 32), (10 * i, 100, 200 - 5 * i)).save(base / "image" / f"{i:04d}.jpg")
        lines["train_list" if i < 8 else "test_list_800"].append(f"{i:04d} {i // 3}")
    for name, entries in lines.items():
        (base / "train_test_split" / f"{name}.txt").write_text("\n".join(entries) + "\n")
    config = load_config("synth_cpu", overrides(base, tmp_path, "data.name=vehicleid"))
    config = replace(config, model=replace(config.model, name="vit_tiny_transreid", kwargs={}, camera_embedding=True))
    dataset = build_dataset("vehicleid", base)
    metrics = run_evaluation(build_reid_model(config, dataset), dataset, config)
    assert {r.camid for r in dataset.train + dataset.query + dataset.gallery} == set(range(dataset.num_cameras)) == {0}
    assert metrics["num_draws"] == 10 and 0.0 <= metrics["rank1"] <= metrics["rank5"] <= 1.0


RESUME_RUN = ("epochs=4", "max_iters_per_epoch=2", "eval.every=2")


@pytest.fixture(scope="module")
def reference_run(synth_root, tmp_path_factory):
    """An uninterrupted run (in this process), its final metrics and the epochs its callback saw."""
    out = tmp_path_factory.mktemp("reference")
    recorder = Recorder()
    metrics = train(load_config("synth_cpu", overrides(synth_root, out, *RESUME_RUN)), callbacks=[recorder], print_fn=None)
    return out, metrics, recorder


def test_run_outputs_hooks_and_log(reference_run):
    out, metrics, recorder = reference_run
    assert [epoch for epoch, _ in recorder.epochs] == [1, 2, 3, 4]
    assert "mAP" in recorder.epochs[1][1] and "mAP" not in recorder.epochs[0][1]  # eval every 2 epochs
    assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["rank1"] <= 1.0
    assert len(metrics["cmc"]) == 50 and metrics["cmc"][0] == metrics["rank1"]  # for CMC plots
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    assert (out / "config.yaml").is_file() and json.loads((out / "metrics.json").read_text())["epochs_completed"] == 4
    steps = read_metrics(out, "step")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert {"total", "ce", "adasp", "ce_accuracy", "lr", "img_per_s", "epoch"} <= set(steps[0])
    # Each step logs the lr it ran with: the warm-up start first, a cosine lr above 0 last (the schedule reaches
    # 0 only after the final step), and an epoch line repeats its last step's.
    assert steps[0]["lr"] == pytest.approx(2.0e-3 * 0.1) and steps[-1]["lr"] > 0
    assert [r["lr"] for r in read_metrics(out, "epoch")] == [r["lr"] for r in steps[1::2]]
    evals = read_metrics(out, "eval")
    assert [r["epoch"] for r in evals] == [2, 4] and metrics["best_mAP"] == max(r["mAP"] for r in evals)
    # the cost records a cluster study's estimate reads; no GPU memory on the CPU
    epoch_seconds = sum(r["epoch_seconds"] for r in read_metrics(out, "epoch"))
    images = sum(r["img_per_s"] * r["epoch_seconds"] for r in read_metrics(out, "epoch"))
    assert metrics["images_per_second"] == pytest.approx(images / epoch_seconds, rel=1e-3)
    assert metrics["eval_seconds"] > 0 and metrics["peak_gpu_memory_mb"] is None
    assert metrics["seconds_per_step"] == pytest.approx(epoch_seconds / 8, rel=1e-3) and metrics["steps_per_epoch"] >= 2


def test_last_checkpoint_is_written_after_the_files_it_names(synth_root, tmp_path, monkeypatch):
    placed, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (placed.append(Path(dst).name), replace(src, dst))[1])
    metrics = train(load_config("synth_cpu", overrides(synth_root, tmp_path, "epochs=2", "max_iters_per_epoch=1",
                                                       "eval.every=1", "save_every=1")), print_fn=None)
    placed = [name for name in placed if name.endswith(".pt")]
    # A kill between two writes must never leave a last.pt whose best.pt / epoch file is missing.
    assert placed[:3] == ["epoch_001.pt", "best.pt", "last.pt"] and placed[-1] == "last.pt"
    # One epoch's names share one file; the next epoch's last.pt leaves the earlier ones as they were.
    checkpoints = tmp_path / "checkpoints"
    assert os.path.samefile(checkpoints / "epoch_002.pt", checkpoints / "last.pt")
    assert os.path.samefile(checkpoints / "best.pt", checkpoints / f"epoch_{metrics['best_epoch']:03d}.pt")
    assert not os.path.samefile(checkpoints / "epoch_001.pt", checkpoints / "last.pt")
    assert load_checkpoint(checkpoints / "epoch_001.pt")["epoch"] == 1


def test_checkpoint_names_are_copies_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    from reidlab.engine import save_checkpoint

    def no_links(*args):
        raise OSError("Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    state = {"model": {}, "epoch": 3, "weights": torch.arange(4.0)}
    save_checkpoint(state, tmp_path / "last.pt", also=[tmp_path / "best.pt"])
    assert not os.path.samefile(tmp_path / "best.pt", tmp_path / "last.pt")
    for name in ("best.pt", "last.pt"):
        assert torch.equal(load_checkpoint(tmp_path / name)["weights"], state["weights"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_evaluate_checkpoint_cli_and_load_trained(reference_run, capsys):
    from reidlab.cli import main

    out, metrics, _ = reference_run
    best = out / "checkpoints" / "best.pt"
    assert main(["eval", "-c", str(out / "config.yaml"), f"checkpoint={best}", "preset=synth_cpu"]) == 0
    assert "written to" in capsys.readouterr().out
    evaluated = json.loads(best.with_name("best.pt.eval.json").read_text())
    assert evaluated["mAP"] == pytest.approx(metrics["best_mAP"], abs=1e-12)
    # Other options write other files: nothing is overwritten silently.
    assert main(["eval", "-c", str(out / "config.yaml"), f"checkpoint={best}", "eval.rerank=true", "eval.rerank_k1=8"]) == 0
    reranked = json.loads(best.with_name("best.pt.eval.rerank-k1=8.json").read_text())
    assert json.loads(best.with_name("best.pt.eval.json").read_text()) == evaluated and reranked != evaluated
    run = load_trained(out, "best")  # asked for by name: the default is last.pt
    assert not run.model.training and run.checkpoint == best and run.config.epochs == 4
    state = load_checkpoint(best)["model"]
    assert all(torch.equal(v, state[k]) for k, v in run.model.state_dict().items())
    assert len(run.dataset.train) > 0


def test_cross_domain_evaluation_loads_the_backbone_and_leaves_out_the_classifier(reference_run, tmp_path, capsys):
    """Train on one SynthReID copy (24 identities), evaluate on another (30 identities, other seed): the
    classifier's size differs, and inference never uses it."""
    from conftest import SMALL_SYNTH_KNOBS

    from reidlab.cli import main
    from reidlab.data import build_dataset, synth

    out, _, _ = reference_run
    other = synth.generate(tmp_path / "other", seed=5, **{**SMALL_SYNTH_KNOBS, "num_train_ids": 30})
    best = out / "checkpoints" / "best.pt"
    assert main(["eval", "-c", str(out / "config.yaml"), f"checkpoint={best}", f"data.root={other}",
                 "scene.enabled=false"]) == 0
    printed = capsys.readouterr().out
    assert f"loaded the backbone and embedding neck of {best}; left out its identity classifier" in printed
    metrics = json.loads(best.with_name(f"best.pt.eval.on-synthreid-{other.name}.json").read_text())
    assert 0 < metrics["mAP"] <= 1 and metrics["num_valid_queries"] == len(build_dataset("synthreid", other).query)


def test_evaluating_with_other_model_settings_names_the_trained_ones(reference_run, capsys):
    from reidlab.cli import main

    out, _, _ = reference_run
    last = out / "checkpoints" / "last.pt"
    base = ["eval", "-c", str(out / "config.yaml"), f"checkpoint={last}", "preset=synth_cpu"]
    with pytest.raises(SystemExit):
        main([*base, "model.name=resnet18_ibn_a"])
    assert "it was trained with model.name='resnet18_tiny'" in capsys.readouterr().err
    assert main([*base, "data.size=[96,48]"]) == 0
    assert "warning: " in capsys.readouterr().out.split("trained with data.size=[64, 32]")[0]


def test_kill_after_an_epoch_then_resume_matches_the_uninterrupted_run(synth_root, tmp_path, reference_run):
    reference_out, reference, _ = reference_run
    out = tmp_path / "killed"
    args = overrides(synth_root, out, *RESUME_RUN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reidlab", "train", "-c", "synth_cpu", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    checkpoint = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited before its first checkpoint: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 240 s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # a real kill, mid-run
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    killed_at = load_checkpoint(checkpoint)["epoch"]
    assert 1 <= killed_at < 4

    resumed = train(load_config("synth_cpu", args + ["resume=true"]), print_fn=None)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    final, expected = load_checkpoint(checkpoint)["model"], load_checkpoint(reference_out / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)  # bit-identical weights
    epochs = [r["epoch"] for r in read_metrics(out, "epoch")]
    assert epochs == [1, 2, 3, 4]  # the log holds each epoch once
    again = train(load_config("synth_cpu", args + ["resume=true"]), print_fn=None)  # a finished run: nothing to do
    assert {k: again[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert [r["epoch"] for r in read_metrics(out, "epoch")] == [1, 2, 3, 4]


def test_resume_refuses_different_settings(reference_run, synth_root):
    out, _, _ = reference_run
    with pytest.raises(ConfigError, match="optim.lr"):
        Trainer(load_config("synth_cpu", overrides(synth_root, out, *RESUME_RUN, "resume=true", "optim.lr=0.1"))).fit()
    for changed, key in (("device=cpu", "device"), ("data.num_workers=1", "data.num_workers")):
        with pytest.raises(ConfigError, match=key):
            Trainer(load_config("synth_cpu", overrides(synth_root, out, *RESUME_RUN, "resume=true", changed))).fit()
    said = []
    longer = Trainer(load_config("synth_cpu", overrides(synth_root, out, *RESUME_RUN, "resume=true", "epochs=5")),
                     print_fn=said.append)
    resume_from_last(longer)  # only the check: the shared reference run is not trained further
    assert longer.epoch == 4 and any("warning: resuming with epochs=5 instead of 4" in line for line in said)


def test_a_fresh_run_refuses_an_output_dir_holding_a_run(reference_run, synth_root):
    out, _, _ = reference_run
    with pytest.raises(ConfigError, match=r"holds a run \(checkpoints/last.pt\); pass resume=true"):
        Trainer(load_config("synth_cpu", overrides(synth_root, out, *RESUME_RUN))).fit()
    assert (out / "metrics.json").exists()  # untouched


def test_resume_true_needs_a_checkpoint_and_resume_auto_continues_only_where_there_is_one(synth_root, tmp_path):
    with pytest.raises(ConfigError, match=r"resume=true but .*checkpoints holds no checkpoint \(last.pt\); .*resume=auto"):
        Trainer(load_config("synth_cpu", overrides(synth_root, tmp_path, *RESUME_RUN, "resume=true"))).fit()
    said = []
    auto = overrides(synth_root, tmp_path, "epochs=1", "max_iters_per_epoch=1", "eval.every=0", "resume=auto")
    Trainer(load_config("synth_cpu", auto), print_fn=said.append).fit()  # nothing there: a fresh run
    assert not any("resumed" in line for line in said)
    # A kill during a checkpoint write leaves a temporary file; the next start removes it.
    (tmp_path / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    said.clear()
    longer = Trainer(load_config("synth_cpu", [*auto, "epochs=2"]), print_fn=said.append)
    longer.fit()
    assert longer.epoch == 2 and any(line.startswith("resumed from") for line in said)
    assert any("removed 1 temporary file(s) left by an interrupted write: .last.pt.abc123.tmp" in line for line in said)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_non_finite_loss_names_the_step_and_term(synth_root, tmp_path):
    class PoisonClassifier(Callback):
        def on_epoch_start(self, trainer, epoch):
            if epoch == 2:
                with torch.no_grad():
                    trainer.model.classifier_weight().fill_(float("nan"))

    config = load_config("synth_cpu", overrides(synth_root, tmp_path, "epochs=3", "max_iters_per_epoch=1", "eval.every=0"))
    with pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 2.*ce=nan") as error:
        Trainer(config, callbacks=[PoisonClassifier()]).fit()
    assert "adasp" not in str(error.value)  # the metric loss (before the classifier) stayed finite
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")  # the last good checkpoint is intact
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert read_metrics(tmp_path, "error")[0]["terms"] == ["ce"]


def test_batch_larger_than_the_identities_is_a_clear_error(synth_root, tmp_path):
    with pytest.raises(ConfigError, match=r"sampler.p=64 identities per batch but synthreid has only 24"):
        Trainer(load_config("synth_cpu", overrides(synth_root, tmp_path, "sampler.p=64")))


def test_camera_balanced_sampler_is_wired_in(synth_root, tmp_path):
    trainer = Trainer(load_config("synth_cpu", overrides(synth_root, tmp_path, "sampler.camera_balanced=true")))
    cameras = [trainer.dataset.train[i].camid for i in next(iter(trainer.sampler))[:4]]  # one identity's K images
    assert trainer.sampler.cameras_of is not None and len(set(cameras)) > 1
    with pytest.raises(ConfigError, match="camera_balanced applies to sampler.name=pk"):
        load_config("synth_cpu", ["sampler.name=hard", "sampler.camera_balanced=true"])


def test_channels_last_on_cpu_only_when_asked(synth_root, tmp_path):
    """None (the default) keeps NCHW on CPU; true trains in NHWC there, with the same loss as NCHW up to rounding."""
    def first_step(out, *extra):
        trainer = Trainer(load_config("synth_cpu", overrides(synth_root, tmp_path / out, *extra)))
        batch = next(iter(trainer.train_loader))
        return trainer, float(trainer.train_step(batch)["total"])

    default, loss_nchw = first_step("nchw")
    nhwc, loss_nhwc = first_step("nhwc", "model.channels_last=true")
    assert not default.channels_last and nhwc.channels_last
    weight = next(p for p in nhwc.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert loss_nhwc == pytest.approx(loss_nchw, rel=1e-4)


def test_hard_mining_and_scene_removal_are_wired_in(synth_root, tmp_path):
    class WeightsCheck(Callback):
        mined = []

        def on_epoch_start(self, trainer, epoch):
            expected = torch.nn.functional.normalize(trainer.model.classifier_weight().detach().double(), dim=1)
            self.mined.append(trainer.sampler.is_mining(epoch - 1))
            assert torch.allclose(torch.from_numpy(trainer.sampler.class_weights), expected)

    config = load_config(
        "synth_cpu",
        overrides(synth_root, tmp_path, "epochs=2", "max_iters_per_epoch=2", "eval.every=0", "sampler.name=hard",
                  "sampler.hard_warmup_epochs=1", "scene.enabled=true", "scene.ramp_epochs=1", "scene.strength=0.5"),
    )
    trainer = Trainer(config, callbacks=[WeightsCheck()])
    assert trainer.model.scene_adversary.num_scenes == trainer.dataset.num_scenes == 3
    trainer.fit()
    assert WeightsCheck.mined == [False, True]
    steps = read_metrics(tmp_path, "step")
    assert all({"scene", "scene_accuracy", "scene_moments", "scene_strength"} <= set(r) for r in steps)
    assert [r["scene_strength"] for r in steps] == [0.0, 0.25, 0.5, 0.5]  # linear ramp over one epoch of 2 steps
    assert trainer.sampler.mining_plan == "rounds"
    single = Trainer(load_config("synth_cpu", overrides(synth_root, tmp_path / "single", "sampler.name=hard",
                                                       "sampler.hard_plan=single_round")))
    assert single.sampler.mining_plan == "single_round"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_backbone_frozen_for_the_first_iterations(synth_root, tmp_path, optimizer):
    config = load_config("synth_cpu", overrides(synth_root, tmp_path, "model.freeze_backbone_iters=1",
                                                 "optim.clip_grad_norm=5.0", f"optim.name={optimizer}"))
    trainer = Trainer(config)
    trainer.sampler.set_epoch(0)
    batch = next(iter(trainer.train_loader))
    backbone = trainer.model.backbone_parameters()
    head = trainer.model.classifier_weight()
    assert backbone and all(head is not p for p in backbone)
    before, head_before = [p.detach().clone() for p in backbone], head.detach().clone()
    trainer.train_step(batch)
    trainer.global_step += 1
    assert all(torch.equal(a, p) for a, p in zip(before, backbone)) and not torch.equal(head_before, head)
    trainer.train_step(batch)
    assert not all(torch.equal(a, p) for a, p in zip(before, backbone))

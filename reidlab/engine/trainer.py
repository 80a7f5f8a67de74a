"""The training loop: plain PyTorch, resumable, deterministic on CPU, DDP-aware.

`Trainer(config)` turns a `TrainConfig` into plain library objects (dataset, model, loss, sampler,
optimizer, schedule) and `fit()` runs epochs: train, evaluate every `eval.every` epochs, write the last
checkpoint (and the best by mAP) and the log into the run folder (`RunDir`, which names its files). `train(config)`
is the entry point for the CLI and notebooks (`reidlab.engine.runs` evaluates and reloads finished runs).

Exact resume: the sampler plan is a function of (seed, epoch), the loader's generator is reseeded from
(seed, rank, epoch) each epoch, and the checkpoint holds every rank's RNG states, so a run killed after an
epoch and resumed computes bit-identical weights on CPU. SIGTERM (SLURM's preemption, scancel) and SIGINT (Ctrl-C)
stop the loop after the current step: the checkpoint then also holds the epoch's progress (its plan of batches,
the steps done, the running sums), and the resumed run continues mid-epoch, again bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from reidlab.data import ReIDImageDataset, build_transforms, collate_skipping
from reidlab.evaluation.chance import split_chance_level
from reidlab.utils import atomic_write, on_stop_signals
from reidlab.utils.lease import LockHeld, exclusive_lock

from .builders import (
    autocast_dtype,
    build_optimizer,
    build_reid_loss,
    build_reid_model,
    build_sampler,
    prepare_dataset,
    seed_everything,
)
from .callbacks import Callback, bound_hooks, training_callbacks
from .checkpoint import remove_interrupted_writes
from .config import ConfigError, TrainConfig, save_config
from .distributed import (
    DistContext,
    broadcast_buffers,
    cleanup,
    init_distributed,
    resolve_device,
)
from .evaluator import run_evaluation
from .logging import MetricsLogger, truncate_metrics
from .provenance import collect_provenance
from .resume import EpochProgress, resume_from_last, save_training_state
from .runs import PrintFn, RunDir
from .schedulers import build_scheduler



class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the loss terms."""


class TrainingInterrupted(Exception):
    """A signal (SIGTERM from SLURM or scancel, SIGINT from Ctrl-C) stopped the run after a step; its last
    checkpoint holds that step, and ``resume=auto`` continues from it. ``signal_name``: e.g. ``"SIGTERM"``."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name

    def __reduce__(self):  # pickled across a sweep's worker processes with both arguments
        return type(self), (str(self), self.signal_name)


def _stream_seed(*keys: int) -> int:
    """A 63-bit seed derived from integers (numpy SeedSequence: well mixed, stable across runs)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)



# ----------------------------------------------------------------------------------------- trainer


class Trainer:
    """One training run of a `TrainConfig`. Build it, then call `fit()`.

    ctx: where this process sits (rank, world size, device); default: single process on `config.device`.
    callbacks: `Callback` objects (or anything with some of its methods).
    print_fn: where progress messages go (None: silent; the run's log is written either way).
    """

    def __init__(
        self,
        config: TrainConfig,
        callbacks: Sequence[Callback] = (),
        ctx: DistContext | None = None,
        print_fn: PrintFn = None,
    ) -> None:
        self.config = config
        self.ctx = ctx or DistContext(device=resolve_device(config.device))
        self.print_fn = print_fn
        self.run_dir = RunDir(config.output_dir)
        self.output_dir, self.checkpoint_dir = self.run_dir.path, self.run_dir.checkpoint_dir
        device = self.ctx.device
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = not config.deterministic
        seed_everything(config.seed)

        self.dataset = prepare_dataset(config, self.ctx)
        self._check_batch_shape()
        self.model = build_reid_model(config, self.dataset).to(device)
        self.channels_last = device.type == "cuda" if config.model.channels_last is None else config.model.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.model.sync_bn and self.ctx.distributed:
            if device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                self.say("model.sync_bn=true needs CUDA (torch's SyncBatchNorm); ignored on CPU")
        self.loss_fn = build_reid_loss(config, self.model).to(device)
        self.train_model = self.model
        if self.ctx.distributed:
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=config.loss.ce_weight <= 0,  # classifier heads then get no gradient
            )
        self.sampler = build_sampler(config, self.dataset, self.ctx)
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(
            ReIDImageDataset(self.dataset.train, build_transforms(True, size=tuple(config.data.size), **config.data.aug),
                             cache_images=config.data.cache_images, skip_corrupt=config.data.skip_corrupt),
            batch_sampler=self.sampler,
            collate_fn=collate_skipping,
            num_workers=config.data.num_workers,
            pin_memory=device.type == "cuda",
            generator=self.loader_generator,
        )
        self.iters_per_epoch = len(self.sampler)
        if config.max_iters_per_epoch:
            self.iters_per_epoch = min(self.iters_per_epoch, config.max_iters_per_epoch)
        self.optimizer = build_optimizer(config, self.model, self.loss_fn)
        self.scheduler = build_scheduler(
            self.optimizer,
            schedule=config.optim.scheduler,
            epochs=config.epochs,
            iters_per_epoch=self.iters_per_epoch,
            warmup_epochs=(config.optim.warmup_iters / self.iters_per_epoch if config.optim.warmup_iters
                           else config.optim.warmup_epochs),
            warmup_factor=config.optim.warmup_factor,
            milestones=config.optim.milestones,
            gamma=config.optim.gamma,
            flat_epochs=config.optim.flat_epochs,
            min_factor=config.optim.min_lr_factor,
        )
        self.amp_dtype = autocast_dtype(config, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.frozen = self.model.backbone_parameters() if config.model.freeze_backbone_iters > 0 else []

        self.callbacks = [*training_callbacks(config, self.iters_per_epoch), *callbacks]
        self.hooks = bound_hooks(self.callbacks)
        self.epoch = 0  # completed epochs
        self.global_step = 0
        self.step_in_epoch = 0
        self.epoch_progress: EpochProgress | None = None  # set by a mid-epoch resume and while stopping on a signal
        self.stop_signal: int | None = None  # a signal received: stop after the current step
        self._agreed_stop = 0  # under DDP: the signal any rank received, as of the last step (every rank agrees)
        self.best = {"mAP": -1.0, "epoch": 0}
        self.session_images, self.session_steps, self.session_train_seconds = 0, 0, 0.0  # metrics.json: cost
        self.eval_seconds: float | None = None
        self.last_eval: dict[str, Any] = {}
        self.skipped_images: set[str] = set()  # training images left out as unreadable (data.skip_corrupt)
        self._chance: dict[str, float] | None = None
        self.logger: MetricsLogger | None = None

    # ------------------------------------------------------------------ construction helpers

    def _check_batch_shape(self) -> None:
        p, num_ids = self.config.sampler.p, self.dataset.num_train_pids
        if p > num_ids:
            raise ConfigError(
                f"sampler.p={p} identities per batch but {self.config.data.name} has only {num_ids} training "
                f"identities (batch = p x k = {p} x {self.config.sampler.k}); lower sampler.p"
            )

    # ------------------------------------------------------------------ messages and hooks

    def say(self, text: str) -> None:
        """A progress message, printed by the main process only (callbacks use it too)."""
        if self.print_fn is not None and self.ctx.is_main:
            self.print_fn(text)

    def _hook(self, name: str, *args) -> None:
        for method in self.hooks[name]:
            method(self, *args)

    # ------------------------------------------------------------------ training

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluate, write checkpoints and OUTPUT_DIR/metrics.json; return the final metrics.
        One process at a time trains a folder: another's is a ConfigError naming it (its lock goes with it)."""
        with contextlib.ExitStack() as claimed:
            if self.ctx.is_main:
                try:
                    claimed.enter_context(exclusive_lock(self.run_dir.lock_path, wait=False))
                except LockHeld as held:
                    raise ConfigError(
                        f"output_dir {self.output_dir} is being trained by {held.holder or 'another process'}; two "
                        "processes must not train one run: wait for it to end (resume=auto then continues or reuses "
                        "it), or choose another output_dir") from None
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        config = self.config
        resumed = resume_from_last(self)
        if self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if stray := remove_interrupted_writes(self.output_dir, self.checkpoint_dir):
                self.say(f"removed {len(stray)} temporary file(s) left by an interrupted write: {', '.join(stray)}")
            save_config(config, self.run_dir.config_path)
            if resumed:
                truncate_metrics(self.output_dir, self.global_step)
            elif self.run_dir.log_path.exists():
                self.run_dir.log_path.unlink()
        self.logger = MetricsLogger(self.output_dir, tensorboard=config.tensorboard, enabled=self.ctx.is_main)
        if self.logger.tensorboard_missing:
            self.say(f"tensorboard=true but the tensorboard package is not installed; logging to {self.run_dir.log_path.name} only")
        started = time.perf_counter()
        if self.ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
        try:
            with self._stop_on_signals():
                self._hook("on_train_start")
                while self.epoch < config.epochs:
                    epoch_metrics = self.train_epoch()
                    self.epoch += 1
                    if config.eval.every and self.epoch % config.eval.every == 0:
                        epoch_metrics.update({k: v for k, v in self.evaluate().items() if k != "epoch"})
                    save_training_state(self)
                    self._hook("on_epoch_end", self.epoch, epoch_metrics)
                    if self.stop_requested() and self.epoch < config.epochs:
                        self._interrupted()
                if not self.last_eval or self.last_eval.get("epoch") != self.epoch:
                    self.evaluate()
                    save_training_state(self)
                final = self._final_metrics(time.perf_counter() - started)
                self._hook("on_train_end", final)
        finally:
            self.logger.close()
        return final

    def _final_metrics(self, seconds: float) -> dict[str, Any]:
        final = {
            **{k: v for k, v in self.last_eval.items() if k != "epoch"},
            "epochs_completed": self.epoch,
            "global_step": self.global_step,
            "best_mAP": self.best["mAP"],
            "best_epoch": self.best["epoch"],
            "preset": self.config.preset,
            "seed": self.config.seed,
            "output_dir": str(self.output_dir),
            "checkpoint": str(self.run_dir.checkpoint("last")),
            "best_checkpoint": str(self.run_dir.checkpoint("best")),
            "train_seconds_this_session": round(seconds, 3),
            # what a cluster study's cost estimate reads: throughput, evaluation time and peak memory of this session
            "images_per_second": round(self.session_images / self.session_train_seconds, 2)
            if self.session_train_seconds else None,
            "seconds_per_step": round(self.session_train_seconds / self.session_steps, 5) if self.session_steps else None,
            "steps_per_epoch": len(self.sampler),  # the full epoch, even where max_iters_per_epoch cut it
            "eval_seconds": None if self.eval_seconds is None else round(self.eval_seconds, 3),
            "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(self.ctx.device) / 2**20, 1)
            if self.ctx.device.type == "cuda" else None,
            **({"skipped_train_images": len(self.skipped_images)} if self.config.data.skip_corrupt else {}),
            "provenance": collect_provenance(self.config, self.dataset, self.ctx, self.amp_dtype),
        }
        if self.ctx.is_main:
            atomic_write(self.run_dir.provenance_path, json.dumps(final["provenance"], indent=2))
            path = atomic_write(self.run_dir.metrics_path, json.dumps(final, indent=2))
            self.say(
                f"finished {self.epoch} epochs: mAP {final['mAP']:.1%}, rank-1 {final.get('rank1', float('nan')):.1%}; "
                f"metrics in {path}, checkpoints in {self.checkpoint_dir}"
            )
        return final

    def train_epoch(self) -> dict[str, Any]:
        """One epoch of (at most) `iters_per_epoch` steps (`self.epoch` is the number completed before it); after
        a mid-epoch resume, the rest of that epoch."""
        from tqdm.auto import tqdm

        config, ctx = self.config, self.ctx
        epoch = self.epoch
        progress, self.epoch_progress = self.epoch_progress or EpochProgress(), None
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(_stream_seed(config.seed, ctx.rank, epoch))
        loads_in_workers = config.data.num_workers > 0
        if progress.batches is None:
            self._hook("on_epoch_start", epoch + 1)  # hard batch mining hands the sampler its weights here
        else:  # the saved plan, after the batches done; workers replay those (their random streams advance as before)
            self.sampler.resume_epoch(progress.batches, skip=0 if loads_in_workers else progress.steps_done)
        progress.batches = self.sampler.rank_batches()
        self.train_model.train()
        adversary = self.model.scene_adversary
        steps = min(self.iters_per_epoch, len(self.sampler))  # a plan may come out a batch shorter
        window_start = time.perf_counter() - progress.window_seconds
        epoch_start = time.perf_counter() - progress.seconds
        bar = tqdm(
            total=steps,
            initial=progress.steps_done,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        iterator = iter(self.train_loader)
        try:
            for _ in range(progress.steps_done if loads_in_workers else 0):
                next(iterator)
            for self.step_in_epoch in range(progress.steps_done, steps):
                batch = next(iterator)
                if batch["skipped"]:
                    self._note_skipped(batch["skipped"])
                self._hook("on_step_start", self.global_step + 1)
                step_lr = self.optimizer.param_groups[0]["lr"]  # train_step advances the schedule
                logs = self.train_step(batch)
                batch_size = batch["image"].shape[0]
                progress.window_steps += 1
                progress.window_images += batch_size
                progress.images += batch_size
                for key, value in logs.items():
                    progress.window[key] = progress.window.get(key, 0.0) + value
                    progress.sums[key] = progress.sums.get(key, 0.0) + value
                self.global_step += 1
                progress.steps_done += 1
                if self.global_step % config.log_every == 0 or self.step_in_epoch == steps - 1:
                    # one device-to-host copy for all the terms
                    window = progress.window
                    values = dict(zip(window, (torch.stack(list(window.values())) / progress.window_steps).tolist()))
                    elapsed = time.perf_counter() - window_start
                    self.logger.log(
                        "step",
                        self.global_step,
                        epoch=epoch + 1,
                        lr=step_lr,
                        img_per_s=progress.window_images * ctx.world_size / max(elapsed, 1e-9),
                        **({"scene_strength": adversary.strength} if adversary is not None else {}),
                        **values,
                    )
                    bar.set_postfix(loss=f"{values['total']:.3f}", lr=f"{step_lr:.2e}")
                    progress.window, progress.window_steps, progress.window_images = {}, 0, 0
                    window_start = time.perf_counter()
                bar.update(1)
                if self.hooks["on_step_end"]:
                    self._hook("on_step_end", self.global_step, batch, {k: float(v) for k, v in logs.items()})
                if self.stop_requested() and progress.steps_done < steps:
                    progress.window_seconds = time.perf_counter() - window_start
                    progress.seconds = time.perf_counter() - epoch_start
                    self.epoch_progress = progress
                    self._interrupted()
        finally:
            bar.close()
            del iterator
        seconds = time.perf_counter() - epoch_start
        self.session_images += progress.images * ctx.world_size
        self.session_steps += steps
        self.session_train_seconds += seconds
        metrics = {k: float(v) / steps for k, v in progress.sums.items()}
        metrics.update(
            epoch=epoch + 1,
            lr=step_lr,  # of the epoch's last step
            img_per_s=progress.images * ctx.world_size / max(seconds, 1e-9),
            epoch_seconds=seconds,
        )
        self.logger.log("epoch", self.global_step, **metrics)
        self.say(
            f"epoch {epoch + 1}/{config.epochs}: loss {metrics['total']:.4f}, "
            f"{metrics['img_per_s']:.0f} img/s, {seconds:.1f} s"
        )
        return metrics

    # ------------------------------------------------------------------ stopping on a signal

    def _stop_on_signals(self):
        """While training, SIGTERM and SIGINT ask the loop to stop after the current step (a second Ctrl-C stops at
        once); in the main thread only (``on_stop_signals``)."""

        def request(signum, frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.say(f"{signal.Signals(signum).name} received: stopping after this step, saving the last checkpoint")

        return on_stop_signals(request)

    def stop_requested(self) -> int:
        """The signal that stops the run (0: none); under DDP, one that any rank received by the last step."""
        return self._agreed_stop if self.ctx.distributed else self.stop_signal or 0

    def _interrupted(self) -> None:
        """Save the last checkpoint where the loop stands (mid-epoch: with its progress), log it, and raise."""
        name = signal.Signals(self.stop_requested()).name
        save_training_state(self)
        progress = self.epoch_progress
        where = (f"step {progress.steps_done} of epoch {self.epoch + 1}" if progress else f"epoch {self.epoch}")
        self.logger.log("interrupted", self.global_step, epoch=self.epoch + (progress is not None), signal=name)
        raise TrainingInterrupted(
            f"{name} stopped training after {where} (global step {self.global_step}); "
            f"{self.run_dir.checkpoint('last')} holds it: resume=auto continues the run", name)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Forward, loss, non-finite check, backward, (frozen backbone), clip, optimizer and lr step.
        Returns the loss terms as detached tensors."""
        config, device = self.config, self.ctx.device
        images = batch["image"].to(device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        pids = batch["pid"].to(device, non_blocking=True)
        scenes = batch["sceneid"].to(device, non_blocking=True)
        camids = batch["camid"].to(device, non_blocking=True) if self.model.uses_camids else None
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            outputs = self.train_model(images, camids=camids, labels=pids)
            total, logs = self.loss_fn(outputs, pids, scenes if config.scene.enabled else None)
        finite = torch.isfinite(total.detach())
        if self.ctx.distributed:  # every rank stops together (a non-finite loss, a signal), not just the one that saw it
            flags = torch.stack([(~finite).float(), torch.tensor(float(self.stop_signal or 0), device=finite.device)])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            not_finite, self._agreed_stop = (int(v) for v in flags.tolist())
            finite = not not_finite
        if not finite:
            self._non_finite(logs)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.frozen and self.global_step < config.model.freeze_backbone_iters:
            for param in self.frozen:
                param.grad = None
        if config.optim.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return logs

    def _note_skipped(self, paths: list[str]) -> None:
        """Log each unreadable training image once (data.skip_corrupt=true left it out of its batch)."""
        for path in paths:
            if path not in self.skipped_images:
                self.skipped_images.add(path)
                self.logger.log("skipped", self.global_step, path=path)
                self.say(f"skipped unreadable image {path} (data.skip_corrupt=true)")

    def _non_finite(self, logs: dict[str, torch.Tensor]) -> None:
        bad = [name for name, value in logs.items() if name != "total" and not torch.isfinite(value)]
        values = ", ".join(f"{name}={float(logs[name])}" for name in bad)
        if not values:
            values = f"total={float(logs['total'])}" if not torch.isfinite(logs["total"]) else "on another rank"
        message = (
            f"non-finite loss at step {self.global_step + 1} (epoch {self.epoch + 1}, "
            f"iteration {self.step_in_epoch + 1} of the epoch): "
            f"{values}. The last good checkpoint is {self.run_dir.checkpoint('last')}"
            + ("" if self.run_dir.checkpoint("last").exists() else " (none written yet)")
            + "; lower optim.lr, enable optim.clip_grad_norm, or check the data"
        )
        self.logger.log("error", self.global_step + 1, epoch=self.epoch + 1, message=message, terms=bad)
        raise NonFiniteLossError(message)

    # ------------------------------------------------------------------ evaluation

    def _chance_level(self) -> dict[str, float]:
        """mAP / rank-1 of random rankings of this run's split, computed once: the floor its results must clear
        (the study leaves runs within 2 points of it out as not trained)."""
        if self._chance is None:
            chance = split_chance_level(self.dataset)
            self._chance = {"chance_mAP": chance["mAP"], "chance_rank1": chance["rank1"]}
        return self._chance

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the current model on query/gallery, log it and track the best mAP."""
        broadcast_buffers(self.model, self.ctx)
        started = time.perf_counter()
        metrics = run_evaluation(self.model, self.dataset, self.config, self.ctx)
        self.eval_seconds = time.perf_counter() - started
        if self.dataset.protocol == "market":  # chance under the Market rule; VehicleID scores its own draws
            metrics.update(self._chance_level())
        metrics["epoch"] = self.epoch
        self.last_eval = metrics
        if metrics["mAP"] > self.best["mAP"]:
            self.best = {"mAP": metrics["mAP"], "epoch": self.epoch}
        self.logger.log("eval", self.global_step, **metrics)
        self.say(
            f"eval after epoch {self.epoch}: mAP {metrics['mAP']:.1%}, rank-1 {metrics.get('rank1', float('nan')):.1%}"
            + (f", mINP {metrics['mINP']:.1%}" if "mINP" in metrics else "")
        )
        self.train_model.train()
        return metrics


# ------------------------------------------------------------------------------------ entry points


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), print_fn: PrintFn = print) -> dict[str, Any]:
    """Train a config (single process, or DDP when launched by torchrun) and return the final metrics,
    also written to OUTPUT_DIR/metrics.json."""
    created = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.device)
    try:
        return Trainer(config, callbacks=callbacks, ctx=ctx, print_fn=print_fn).fit()
    finally:
        if created:
            cleanup(ctx)

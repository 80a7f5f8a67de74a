"""Hooks into a training run, and the two that HBReID's training needs.

The trainer knows neither hard batch mining nor a scene-strength ramp: `training_callbacks(config)` adds them
from the config, ahead of the user's callbacks, and they act through the same hooks a user's callback has.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from .config import TrainConfig

__all__ = ["Callback", "HardBatchMining", "SceneStrengthRamp", "bound_hooks", "training_callbacks"]


class Callback:
    """Hooks into a training run; subclass and override what you need (all are no-ops here).

    Epoch numbers are 1-based counts of completed epochs, and `step` is the 1-based global step (about to run
    in `on_step_start`, just run in `on_step_end`). `trainer` is the `reidlab.engine.Trainer` (not annotated: the
    trainer imports this module); `trainer.model` is the unwrapped model.
    """

    def on_train_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_step_start(self, trainer, step: int) -> None: ...

    def on_step_end(self, trainer, step: int, batch: dict, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer, metrics: dict[str, Any]) -> None: ...


class HardBatchMining(Callback):
    """HBReID's hard batches: before each epoch the sampler gets the identity classifier's weight rows (rank 0's,
    so that every rank builds the same plan), and plans the epoch's batches from their cosine similarity."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        sampler = trainer.sampler
        weights = trainer.model.classifier_weight().detach().float().clone()
        if trainer.ctx.distributed:
            dist.broadcast(weights, src=0)  # one plan on every rank, bit for bit
        sampler.update_weights(weights)
        if epoch - 1 == sampler.warmup_epochs:
            short = sampler.short_group_classes
            trainer.say(f"hard batch mining from epoch {epoch}, plan {sampler.mining_plan!r}: {len(sampler)} batches "
                        "per epoch" + (f"; {short} classes per round fall in a short last group, left out of that round"
                                       if short and sampler.mining_plan == "rounds" else ""))


class SceneStrengthRamp(Callback):
    """Raises the scene adversary's strength linearly from 0 to `strength` over `ramp_steps` steps (DANN's
    warm-up: the adversary first learns the scene, then the backbone is pushed)."""

    def __init__(self, strength: float, ramp_steps: float):
        self.strength = float(strength)
        self.ramp_steps = max(float(ramp_steps), 1.0)

    def on_step_start(self, trainer, step: int) -> None:
        trainer.model.scene_adversary.strength = self.strength * min(1.0, (step - 1) / self.ramp_steps)


def bound_hooks(callbacks) -> dict[str, list]:
    """Hook name -> the callbacks' methods for it that do something (Callback's no-ops left out), so that the
    step loop skips a hook nobody uses, and the work of preparing its arguments (logs as floats: a device sync)."""
    names = [name for name in vars(Callback) if name.startswith("on_")]
    hooks: dict[str, list] = {name: [] for name in names}
    for callback in callbacks:
        for name in names:
            method = getattr(callback, name, None)
            if method is not None and getattr(method, "__func__", None) is not getattr(Callback, name):
                hooks[name].append(method)
    return hooks


def training_callbacks(config: TrainConfig, iters_per_epoch: int) -> list[Callback]:
    """The callbacks a config's training needs (hard batch mining, the scene ramp), in the order they run."""
    callbacks: list[Callback] = []
    if config.sampler.name == "hard":
        callbacks.append(HardBatchMining())
    if config.scene.enabled and config.scene.ramp_epochs > 0:
        callbacks.append(SceneStrengthRamp(config.scene.strength, config.scene.ramp_epochs * iters_per_epoch))
    return callbacks

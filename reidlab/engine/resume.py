"""A run's resumable state: what a training checkpoint holds, how it is put back, and when a run continues from
its last checkpoint (``resume``: true, false or auto). The trainer keeps the loop; this module keeps the state.
Each function takes the ``Trainer`` whose state it reads or writes."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .builders import seed_everything
from .checkpoint import CheckpointError, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .config import ConfigError, config_to_dict
from .runs import config_differences


@dataclass
class EpochProgress:
    """Where the loop is inside an epoch: what a checkpoint written mid-epoch (on a signal) holds, so that the
    resumed run trains the same remaining batches and logs the same averages."""

    steps_done: int = 0
    batches: list[list[int]] | None = None  # this rank's plan of the epoch (a mined plan cannot be recomputed)
    sums: dict[str, Any] = field(default_factory=dict)  # loss terms summed over the epoch's steps
    window: dict[str, Any] = field(default_factory=dict)  # ... and over the steps since the last logged one
    window_steps: int = 0
    window_images: int = 0
    window_seconds: float = 0.0
    images: int = 0
    seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {**vars(self), "sums": {k: v.detach().cpu() for k, v in self.sums.items()},
                "window": {k: v.detach().cpu() for k, v in self.window.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochProgress:
        return cls(**{**state, "sums": {k: v.to(device) for k, v in state["sums"].items()},
                      "window": {k: v.to(device) for k, v in state["window"].items()}})


CHECKPOINT_FORMAT = "reidlab-checkpoint-v1"
# Settings that may differ between a run and its resumption without changing what it computes (not `device`:
# the GradScaler and the numerics follow it; not `data.num_workers`: each worker count has its own augmentation
# random streams).
RESUME_SAFE_KEYS = {"resume", "progress", "threads", "log_every", "tensorboard", "checkpoint", "save_every"}


def training_state(trainer: Any) -> dict[str, Any]:
    """What a training checkpoint holds: everything an exact resume needs (every rank takes part: RNG
    states are gathered)."""
    progress = trainer.epoch_progress.state_dict() if trainer.epoch_progress is not None else None
    rng_states, progress_states = _every_rank(trainer, get_rng_state()), _every_rank(trainer, progress)
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "sampler": trainer.sampler.state_dict(),
        "rng": rng_states,
        "best": dict(trainer.best),
        "metrics": dict(trainer.last_eval),
        "skipped_images": sorted(trainer.skipped_images),
        "num_classes": trainer.dataset.num_train_pids,
        "config": config_to_dict(trainer.config),
        # written mid-epoch (a signal stopped the run): every rank's place in the epoch, and the signal's name
        **({"epoch_progress": progress_states, "interrupted_by": signal.Signals(trainer.stop_requested()).name}
           if progress is not None else {}),
    }


def _every_rank(trainer: Any, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (this rank's alone outside DDP)."""
    if not trainer.ctx.distributed:
        return [value]
    values = [None] * trainer.ctx.world_size
    dist.all_gather_object(values, value)
    return values

def restore_training_state(trainer: Any, state: dict[str, Any]) -> None:
    """Put a checkpoint's state back; with another number of processes, fresh but deterministic RNG streams."""
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.sampler.load_state_dict(state["sampler"])
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    trainer.best = dict(state["best"])
    trainer.last_eval = dict(state["metrics"])
    trainer.skipped_images = set(state.get("skipped_images", ()))
    rng_states, same_ranks = state["rng"], len(state["rng"]) == trainer.ctx.world_size
    if same_ranks:
        set_rng_state(rng_states[trainer.ctx.rank])
    else:  # a different number of processes: fresh but deterministic streams
        seed_everything(trainer.config.seed + 1_000_003 * trainer.epoch + trainer.ctx.rank)
    if progress := state.get("epoch_progress"):  # stopped mid-epoch: the rest of that epoch comes first
        if same_ranks:
            trainer.epoch_progress = EpochProgress.from_state(progress[trainer.ctx.rank], trainer.ctx.device)
        else:  # another number of processes shards the plan otherwise: the epoch's steps left, from a fresh plan
            trainer.epoch_progress = EpochProgress(steps_done=progress[0]["steps_done"])

def save_training_state(trainer: Any) -> None:
    """Write this epoch's checkpoint: last, and best / per-epoch where they apply, as one file on disk (mid-epoch,
    on a signal: last only)."""
    state = training_state(trainer)  # every rank takes part (RNG states are gathered)
    if not trainer.ctx.is_main:
        return
    # One file on disk for this epoch's names; the last checkpoint comes last, as a resume trusts the others.
    also = []
    at_epoch_end = trainer.epoch_progress is None
    if at_epoch_end and trainer.config.save_every and trainer.epoch % trainer.config.save_every == 0:
        also.append(trainer.run_dir.checkpoint(trainer.epoch))
    if at_epoch_end and trainer.best["epoch"] == trainer.epoch and trainer.last_eval:
        also.append(trainer.run_dir.checkpoint("best"))
    save_checkpoint(state, trainer.run_dir.checkpoint("last"), also=also)

def resume_from_last(trainer: Any) -> bool:
    """Load the last checkpoint as `resume` says; True when the run continues from it."""
    path = trainer.run_dir.checkpoint("last")
    resume = path.is_file() if trainer.config.resume == "auto" else trainer.config.resume
    if not resume:
        if path.is_file():  # training over it would leave stale best and epoch checkpoints and final metrics
            raise ConfigError(
                f"output_dir {trainer.output_dir} holds a run ({path.relative_to(trainer.output_dir)}); pass resume=true to continue it, "
                "or choose another output_dir / delete it"
            )
        return False
    if not path.is_file():
        raise ConfigError(
            f"resume=true but {trainer.checkpoint_dir} holds no checkpoint ({path.name}); drop resume=true to start "
            "fresh, or pass resume=auto to continue only where a checkpoint exists"
        )
    state = load_checkpoint(path, map_location=trainer.ctx.device)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not a readable reidlab checkpoint: {path}: it is not a training checkpoint "
                              f"(format {state.get('format')!r}); train into a new output_dir")
    differing = config_differences(state["config"], config_to_dict(trainer.config)) - RESUME_SAFE_KEYS
    if "epochs" in differing:
        differing.discard("epochs")
        trainer.say(
            f"warning: resuming with epochs={trainer.config.epochs} instead of {state['config']['epochs']}: the "
            "learning-rate schedule is stretched to the new length, so the run differs from either uninterrupted one"
        )
    if differing:
        raise ConfigError(
            f"resume=true but the settings differ from the run in {trainer.output_dir} at: {', '.join(sorted(differing))}; "
            "resume with the same settings, or train into a new output_dir"
        )
    restore_training_state(trainer, state)
    where = (f"step {trainer.epoch_progress.steps_done} of epoch {trainer.epoch + 1}" if trainer.epoch_progress
             else f"epoch {trainer.epoch}")
    trainer.say(f"resumed from {path} after {where} (step {trainer.global_step})"
                + (f"; it was stopped by {state['interrupted_by']}" if state.get("interrupted_by") else ""))
    return True

"""A run's resumable state: what a training checkpoint holds, how it is put back, and when a run continues from
its last checkpoint (``resume``: true, false or auto). The trainer keeps the loop; this module keeps the state.
Each function takes the ``Trainer`` whose state it reads or writes."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from .builders import seed_everything
from .checkpoint import CheckpointError, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .config import ConfigError, config_to_dict
from .runs import config_differences

CHECKPOINT_FORMAT = "reidlab-checkpoint-v1"
# Settings that may differ between a run and its resumption without changing what it computes (not `device`:
# the GradScaler and the numerics follow it; not `data.num_workers`: each worker count has its own augmentation
# random streams).
RESUME_SAFE_KEYS = {"resume", "progress", "threads", "log_every", "tensorboard", "checkpoint", "save_every"}


def training_state(trainer: Any) -> dict[str, Any]:
    """What a training checkpoint holds: everything an exact resume needs (every rank takes part: RNG
    states are gathered)."""
    rng = get_rng_state()
    if trainer.ctx.distributed:
        states = [None] * trainer.ctx.world_size
        dist.all_gather_object(states, rng)
        rng_states = states
    else:
        rng_states = [rng]
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
    }

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
    rng_states = state["rng"]
    if len(rng_states) == trainer.ctx.world_size:
        set_rng_state(rng_states[trainer.ctx.rank])
    else:  # a different number of processes: fresh but deterministic streams
        seed_everything(trainer.config.seed + 1_000_003 * trainer.epoch + trainer.ctx.rank)

def save_training_state(trainer: Any) -> None:
    """Write this epoch's checkpoint: last, and best / per-epoch where they apply, as one file on disk."""
    state = training_state(trainer)  # every rank takes part (RNG states are gathered)
    if not trainer.ctx.is_main:
        return
    # One file on disk for this epoch's names; the last checkpoint comes last, as a resume trusts the others.
    also = []
    if trainer.config.save_every and trainer.epoch % trainer.config.save_every == 0:
        also.append(trainer.run_dir.checkpoint(trainer.epoch))
    if trainer.best["epoch"] == trainer.epoch and trainer.last_eval:
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
    trainer.say(f"resumed from {path} after epoch {trainer.epoch} (step {trainer.global_step})")
    return True

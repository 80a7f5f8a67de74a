"""Per-iteration learning-rate schedules: linear warm-up, then cosine, multistep, flat-then-cosine or constant.

One function computes the lr multiplier for an iteration; `build_scheduler` wraps it in a `LambdaLR`, so the
scheduler state in a checkpoint is just its step count and resuming is exact.
"""

from __future__ import annotations

import bisect
import math
from functools import partial

import torch

SCHEDULES = ("cosine", "multistep", "flat_cosine", "constant")


def lr_factor(
    iteration: int,
    *,
    schedule: str,
    total_iters: int,
    iters_per_epoch: int,
    warmup_iters: int = 0,
    warmup_factor: float = 0.01,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    flat_iters: int = 0,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base lr at `iteration` (0-based). Warm-up multiplies the schedule's value
    by a factor rising linearly from `warmup_factor` to 1 over `warmup_iters`. Milestones are epochs."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choices: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        factor = 1.0
    elif schedule == "multistep":
        epoch = iteration // max(iters_per_epoch, 1)
        factor = gamma ** bisect.bisect_right(list(milestones), epoch)
    else:
        start = flat_iters if schedule == "flat_cosine" else 0
        if iteration < start:
            factor = 1.0
        else:
            progress = (iteration - start) / max(total_iters - start, 1)
            factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1.0 - alpha) + alpha
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: str,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: float = 0.0,
    warmup_factor: float = 0.01,
    milestones: tuple[int, ...] | list[int] = (),
    gamma: float = 0.1,
    flat_epochs: float = 0.0,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR to be stepped once per iteration."""
    factor = partial(
        lr_factor,
        schedule=schedule,
        total_iters=epochs * iters_per_epoch,
        iters_per_epoch=iters_per_epoch,
        warmup_iters=round(warmup_epochs * iters_per_epoch),
        warmup_factor=warmup_factor,
        milestones=tuple(milestones),
        gamma=gamma,
        flat_iters=round(flat_epochs * iters_per_epoch),
        min_factor=min_factor,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

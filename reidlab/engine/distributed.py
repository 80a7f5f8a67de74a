"""Explicit distributed context for the trainer: rank, world size and device travel as arguments.

`torchrun --nproc_per_node N -m reidlab train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `init_distributed`
reads them once at the CLI edge, creates the process group (NCCL on GPUs, gloo on CPU) and returns a
`DistContext` that is passed on explicitly (samplers get rank/world_size, only rank 0 writes files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks this process's GPU when CUDA is present, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but this machine has no usable CUDA device; use device=cpu or "
                          "device=auto")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistContext:
    """Create the process group when launched by torchrun (WORLD_SIZE > 1); a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(value, ctx: DistContext, src: int = 0):
    """Rank `src`'s value on every rank (a picklable object)."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank. DDP syncs them at the start of
    each forward, so after the last training step they differ by one local update; evaluation and
    checkpoints must all see rank 0's."""
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()

"""Rows of every rank, gathered: what a pairwise loss needs to see the global batch under DDP, and what the
evaluator needs to score every rank's features at once. Torch only; below losses and engine, which both use it."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad"]


def _gather_padded(tensor: Tensor, sizes: list[int], group) -> list[Tensor]:
    """all_gather for tensors whose first dimension differs between ranks (padded to the largest)."""
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded.contiguous(), group=group)
    return [part[:size] for part, size in zip(gathered, sizes)]


class _AllGatherRows(torch.autograd.Function):
    """Concatenate every rank's rows; backward returns this rank's slice of the gradient summed over ranks."""

    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: list[int], rank: int, group) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        parts = _gather_padded(tensor.detach(), sizes, group)
        parts[rank] = tensor.detach()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None, None


def gather_with_grad(embeddings: Tensor, labels: Tensor, group=None) -> tuple[Tensor, Tensor]:
    """Return (embeddings, labels) of the global batch, rank order, local rows keeping their gradient.

    A no-op (inputs returned unchanged) when torch.distributed is unavailable, not initialized, or has a
    single rank. Ranks may hold different batch sizes.

    Gradient convention: every rank computes the same global loss L; the backward sums the gradients that
    all ranks send to each slice, so rank r receives world_size * dL/dx_r. After DDP's gradient averaging
    the parameters therefore get exactly dL/dtheta, the gradient a single device with the whole batch
    would compute (and the loss stays on the same scale as the other, per-rank-mean terms).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return embeddings, labels
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return embeddings, labels
    rank = dist.get_rank(group)
    local_size = torch.tensor([embeddings.shape[0]], device=embeddings.device)
    all_sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(all_sizes, local_size, group=group)
    sizes = [int(size.item()) for size in all_sizes]
    gathered_labels = torch.cat(_gather_padded(labels, sizes, group), dim=0)
    return _AllGatherRows.apply(embeddings, sizes, rank, group), gathered_labels

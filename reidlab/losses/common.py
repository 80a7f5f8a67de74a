"""Input checks and small tensor helpers shared by the pairwise losses.

The checks cost no device-to-host copy in a training step: shapes and dtypes are host metadata; the label
layout (one ``torch.unique``, which waits for the device because its size depends on the values) is computed
once per labels tensor and shared by every feature group of the step; value checks (finite embeddings) run on
CPU tensors, where reading a value is free, and on accelerators only when ``value_checks(True)`` asks for them
(the trainer's own finite-loss check, one read per step, catches the same fault a step later).
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DegenerateBatchWarning",
    "LabelLayout",
    "check_embeddings_and_labels",
    "compute_dtype",
    "cosine_similarity_matrix",
    "gram_matrix",
    "label_layout",
    "segment_logsumexp",
    "value_checks",
]


class DegenerateBatchWarning(UserWarning):
    """A batch in which every identity has one row: a pairwise loss has no positive pair to pull together and
    returns about 0. Shown once per place; ``warnings.simplefilter("error", DegenerateBatchWarning)`` makes it
    an error. (A batch without a negative pair, a single identity, is always an error.)"""


@dataclass(frozen=True)
class LabelLayout:
    """The identities of a batch: ``labels`` [P] sorted unique, ``inverse`` [B] each row's index into them."""

    labels: Tensor
    inverse: Tensor

    @property
    def num_ids(self) -> int:
        return self.labels.numel()


# the layout of the last labels tensor seen: (a weak reference to it, its in-place version, the layout)
_last_layout: tuple[weakref.ref, int, LabelLayout] | None = None


def label_layout(labels: Tensor) -> LabelLayout:
    """The batch's sorted identities, computed once per labels tensor (and in-place version): MGN's five
    feature groups of a step share one ``torch.unique``. Raises ValueError on a single-identity batch."""
    global _last_layout
    if _last_layout is not None and _last_layout[0]() is labels and _last_layout[1] == labels._version:
        return _last_layout[2]
    unique, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    if unique.numel() < 2:
        raise ValueError(
            "the batch holds a single identity but a pairwise loss needs at least 2 identities (negatives): "
            "sample several identities per batch (e.g. PKSampler with p >= 2)"
        )
    layout = LabelLayout(unique, inverse)
    _last_layout = (weakref.ref(labels), labels._version, layout)
    return layout


_value_checks: bool | None = None  # None: on CPU tensors only


@contextlib.contextmanager
def value_checks(enabled: bool | None = True) -> Iterator[None]:
    """Within the block, run the checks that read tensor values (finite embeddings) on every device (True),
    never (False), or only on CPU tensors (None, the default outside any block). A debugging switch: on an
    accelerator each check is a device-to-host copy that stalls the step."""
    global _value_checks
    previous, _value_checks = _value_checks, enabled
    try:
        yield
    finally:
        _value_checks = previous


def _check_values(tensor: Tensor) -> bool:
    return tensor.device.type == "cpu" if _value_checks is None else _value_checks


def check_embeddings_and_labels(embeddings: Tensor, labels: Tensor) -> LabelLayout:
    """Raise ValueError naming the problem when a (embeddings[B, D], labels[B]) batch cannot be used;
    return the labels' layout.

    Why: the published losses silently return wrong numbers on malformed batches; here a bad batch stops
    training with a message that says what to fix.
    """
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"embeddings and labels must be torch.Tensor, got {type(embeddings).__name__} and {type(labels).__name__}"
        )
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D [batch, dim], got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [batch], got shape {tuple(labels.shape)}; flatten them first")
    if embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"embeddings and labels have mismatched lengths: {embeddings.shape[0]} rows vs {labels.shape[0]} labels"
        )
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a floating-point tensor, got dtype {embeddings.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor (torch.long), got dtype {labels.dtype}; use labels.long() on integral ids"
        )
    if embeddings.device != labels.device:
        raise ValueError(f"embeddings are on {embeddings.device} but labels on {labels.device}; move them together")
    if embeddings.shape[1] == 0:
        raise ValueError("embeddings have zero feature dimensions")
    if labels.numel() == 0:
        raise ValueError("the batch is empty")
    layout = label_layout(labels)
    if layout.num_ids == labels.numel():
        warnings.warn(
            f"every one of the batch's {labels.numel()} rows has its own identity, so the pairwise loss sees no "
            "positive pair and returns about 0; sample K >= 2 images per identity (PKSampler k >= 2)",
            DegenerateBatchWarning, stacklevel=3,
        )
    return layout


def check_finite_rows(squared_norms: Tensor) -> None:
    """Raise ValueError when any embedding row holds NaN/Inf (checked on the [B] squared norms: cheap), where
    value checks run (see ``value_checks``)."""
    if _check_values(squared_norms) and not bool(torch.isfinite(squared_norms).all()):
        raise ValueError(
            "embeddings contain NaN or Inf values (or overflow when squared): check the learning rate, "
            "the AMP grad scaler or the input data"
        )


class _Gram(torch.autograd.Function):
    """x @ x.T with a one-matmul backward ((G + G^T) @ x) instead of autograd's two."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return (grad + grad.T) @ x


def gram_matrix(x: Tensor) -> Tensor:
    """x @ x.T [B, B]; its backward costs one B x B x D matmul."""
    return _Gram.apply(x)


def cosine_similarity_matrix(embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """(s_ij = z_i . z_j with z_i = x_i / max(||x_i||, 1e-12), squared norms ||x_i||^2), in compute dtype.

    Normalization is applied to the [B, B] Gram matrix rather than to the [B, D] features, which keeps
    every elementwise op (and its backward) O(B^2); autocast is switched off so fp16/bf16 inputs are
    upcast. Raises ValueError on non-finite rows.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.to(compute_dtype(embeddings))
        gram = gram_matrix(x)
        squared_norms = gram.diagonal()
        check_finite_rows(squared_norms)
        inverse_norm = squared_norms.clamp_min(1e-24).rsqrt()
        similarity = gram * (inverse_norm.unsqueeze(1) * inverse_norm.unsqueeze(0))
    return similarity, squared_norms


def compute_dtype(embeddings: Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if embeddings.dtype == torch.float64 else torch.float32


def segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int, max_spread: float | None = None) -> Tensor:
    """Log-sum-exp of the columns of values[R, B] grouped by segments[B] -> [R, num_segments].

    Stable for any scale: every (row, segment) group is shifted by its own (detached) maximum, so each
    exponential lies in (0, 1] and each sum is >= 1; no raw exp of a large logit is ever taken.
    max_spread: a bound on (row max - row min). When exp(-max_spread) is still a normal number of the dtype,
    one shift per row (a cheap contiguous max) is as exact: no group can underflow to a zero sum.
    """
    normal_limit = -math.log(torch.finfo(values.dtype).tiny) - 1.0
    if max_spread is not None and max_spread < normal_limit:
        row_shift = values.detach().amax(dim=1, keepdim=True)
        sums = values.new_zeros((values.shape[0], num_segments)).index_add(1, segments, torch.exp(values - row_shift))
        return row_shift + torch.log(sums)
    index = segments.unsqueeze(0).expand_as(values)
    shift = torch.full(
        (values.shape[0], num_segments), -torch.inf, dtype=values.dtype, device=values.device
    ).scatter_reduce(1, index, values.detach(), reduce="amax", include_self=True)
    exp_shifted = torch.exp(values - shift.gather(1, index))
    sums = torch.zeros_like(shift).index_add(1, segments, exp_shifted)
    return shift + torch.log(sums)

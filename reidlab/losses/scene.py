"""The backbone's side of the confusion-type scene objectives (see ``reidlab.models.scene``): losses on the
scene posterior that are smallest when it says nothing about the scene. The target is unused; it is there so
that they fit ``LossTerm``'s ``loss(output, target)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["SCENE_CONFUSION_LOSSES", "negative_entropy", "uniform_cross_entropy"]


def uniform_cross_entropy(logits: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy of the softmax posterior to the uniform distribution: mean over rows of -1/S sum_s log p_s
    (log S at a uniform posterior, its minimum)."""
    return -F.log_softmax(logits.float(), dim=1).mean()


def negative_entropy(logits: Tensor, target: Tensor | None = None) -> Tensor:
    """Mean over rows of sum_s p_s log p_s, the negative entropy of the posterior (-log S at its minimum)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


# scene objective -> the loss its confusion logits are trained with ("reverse" has none: its one
# cross-entropy is reversed in the model)
SCENE_CONFUSION_LOSSES = {"confusion": uniform_cross_entropy, "entropy": negative_entropy}

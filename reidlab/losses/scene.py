"""The backbone's side of the scene objectives other than "reverse" (see ``reidlab.models.scene``): losses that
are smallest when the feature says nothing about the scene. The posterior losses ignore their target; it is
there so that they fit ``LossTerm``'s ``loss(output, target)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["SCENE_PUSH_LOSSES", "negative_entropy", "scene_variance_ratio", "uniform_cross_entropy"]


def uniform_cross_entropy(logits: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy of the softmax posterior to the uniform distribution: mean over rows of -1/S sum_s log p_s
    (log S at a uniform posterior, its minimum)."""
    return -F.log_softmax(logits.float(), dim=1).mean()


def negative_entropy(logits: Tensor, target: Tensor | None = None) -> Tensor:
    """Mean over rows of sum_s p_s log p_s, the negative entropy of the posterior (-log S at its minimum)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


def scene_variance_ratio(features: Tensor, scene_labels: Tensor, eps: float = 1e-6) -> Tensor:
    """Share of each feature dimension's batch variance that the scene explains, summed over dimensions:
    sum_d [sum_i (m_s(i),d - m_d)^2 / sum_i (x_i,d - m_d)^2], with m_s the scene's batch mean (the correlation
    ratio eta^2 of each dimension). It is 0 when every scene has the same mean feature, which leaves a linear
    probe nothing to read from the means. Summed rather than averaged, so that each dimension is pushed as hard
    whatever the feature's width (the metric and CE losses' gradients do not shrink with it either). This is a linear-kernel dependence penalty (HSIC, Gretton et al. 2005; the
    linear MMD of the VFAE, Louizos et al. 2016), made per-dimension scale-free like a standardised probe.
    Scenes are compared within the batch (a [B, B] same-scene matrix), so no count of scenes is needed."""
    x = features.float()
    same = (scene_labels[:, None] == scene_labels[None, :]).to(x.dtype)
    scene_means = (same @ x) / same.sum(dim=1, keepdim=True)  # row i: the mean of its scene
    centre = x.mean(dim=0, keepdim=True)
    between = (scene_means - centre).pow(2).sum(dim=0)
    total = (x - centre).pow(2).sum(dim=0)
    return (between / (total + eps)).sum()


# scene objective -> (the loss the backbone is pushed with, the model output it is computed on); "reverse"
# has none: its one cross-entropy is reversed in the model
SCENE_PUSH_LOSSES = {
    "confusion": (uniform_cross_entropy, "scene_confusion_logits"),
    "entropy": (negative_entropy, "scene_confusion_logits"),
    "moments": (scene_variance_ratio, "scene_feature"),
}

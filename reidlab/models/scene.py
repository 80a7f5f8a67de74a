"""Adversarial scene removal (HBReID): gradient reversal + a scene classifier, a module of the ReID model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GradientReversal", "SceneAdversary", "grad_reverse"]


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by -lambda_ in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lambda_ * grad, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """x unchanged; the feature extractor upstream receives -lambda_ times the gradient (maximizes the loss)."""
    return GradientReversal.apply(x, lambda_)


class SceneAdversary(nn.Module):
    """Scene classifier on the global feature behind a gradient reversal layer.

    Trained with cross-entropy on scene labels, it learns to recognize the scene while the reversed gradient
    pushes the backbone to remove scene information: L_total = L_ReID - lambda L_adv for the backbone.

    Args:
        in_features: size of the global feature.
        num_scenes: number of scene classes.
        lambda_: reversal strength; a plain attribute so trainers can ramp it (``adversary.lambda_ = ...``).
        hidden: optional hidden width (Linear-BN-ReLU-Linear); None = one Linear layer.
    """

    def __init__(self, in_features: int, num_scenes: int, lambda_: float = 1.0, hidden: int | None = None):
        super().__init__()
        if num_scenes < 2:
            raise ValueError(f"a scene adversary needs num_scenes >= 2, got {num_scenes}")
        self.lambda_ = float(lambda_)
        self.num_scenes = num_scenes
        if hidden is None:
            self.classifier = nn.Linear(in_features, num_scenes)
        else:
            self.classifier = nn.Sequential(
                nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_scenes)
            )

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"

    def forward(self, global_feature: Tensor) -> Tensor:
        return self.classifier(grad_reverse(global_feature, self.lambda_))

    @staticmethod
    def loss_and_accuracy(scene_logits: Tensor, scene_labels: Tensor) -> tuple[Tensor, Tensor]:
        """(cross-entropy, detached accuracy in [0, 1]) of the scene predictions; accuracy is for logging."""
        if scene_logits.dim() != 2 or scene_labels.dim() != 1 or scene_logits.shape[0] != scene_labels.shape[0]:
            raise ValueError(
                f"scene_logits must be [B, S] and scene_labels [B], got {tuple(scene_logits.shape)} and {tuple(scene_labels.shape)}"
            )
        loss = F.cross_entropy(scene_logits.float(), scene_labels)
        accuracy = (scene_logits.detach().argmax(dim=1) == scene_labels).float().mean()
        return loss, accuracy

"""Adversarial scene removal (HBReID): a scene classifier on the retrieval feature, and the push that makes the
backbone hide the scene from it. A module of the ReID model; the matching loss terms are built by
``reidlab.losses.build_loss(scene_objective=...)``.

Why more than gradient reversal: reversing the classifier's cross-entropy rewards the backbone for making the
classifier *wrong*, and a confidently wrong classifier is as informative as a right one. A fresh linear probe
then still reads the scene (measured in the class-similarity notebook). The confusion and entropy objectives
reward an *uninformative* posterior instead, but only that of the classifier's current weights, which the
backbone can dodge. The "moments" objective (the default) plays no game: it removes the scene's mean shift
from the feature, which is what a fresh linear probe reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["SCENE_OBJECTIVES", "GradientScale", "SceneAdversary", "grad_reverse", "scale_gradient"]

# reverse: one cross-entropy behind a gradient reversal layer; the classifier minimises it, the backbone
#   maximises it (DANN, Ganin & Lempitsky 2015; HBReID).
# confusion: the classifier learns the scene on the detached feature; the backbone is pushed, through the
#   classifier's current weights held fixed, towards a uniform scene posterior: cross-entropy to the uniform
#   distribution (domain confusion, Tzeng et al. 2015; "Turning a blind eye", Alvi et al. 2018).
# entropy: the same, maximising the posterior's entropy instead ("Learning not to learn", Kim et al. 2019).
# moments: no game: the backbone is pushed to give every scene the same mean feature within the batch (a
#   linear-kernel dependence penalty: HSIC, Gretton et al. 2005; the VFAE's MMD, Louizos et al. 2016), which is
#   what a fresh linear probe would read. The classifier still learns on the detached feature, as a monitor.
SCENE_OBJECTIVES = ("reverse", "confusion", "entropy", "moments")


class GradientScale(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by `scale` in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.scale * grad, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """x unchanged; what flows back into x is multiplied by `scale` (0 cuts it, a negative value reverses it)."""
    return GradientScale.apply(x, scale)


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """x unchanged; the feature extractor upstream receives -lambda_ times the gradient (maximizes the loss)."""
    return scale_gradient(x, -lambda_)


class SceneAdversary(nn.Module):
    """A scene classifier on a feature, and the adversarial signal it sends back to the backbone.

    forward(feature) -> {"scene_logits": [B, S]} for "reverse"; "confusion" and "entropy" add
    "scene_confusion_logits" [B, S]: the same classifier with its parameters detached, on the attached feature,
    so that their loss moves the backbone only; "moments" adds "scene_feature" [B, D], the feature itself.

    Args:
        in_features: size of the feature (the model's retrieval feature).
        num_scenes: number of scene classes.
        objective: one of SCENE_OBJECTIVES.
        strength: how hard the backbone is pushed: it scales every gradient the adversary sends into the
            feature. A plain attribute, so that a ramp can set it (``adversary.strength = ...``).
        hidden: optional hidden width (Linear-BN-ReLU-Linear); None = one Linear layer.
    """

    def __init__(self, in_features: int, num_scenes: int, objective: str = "moments", strength: float = 1.0,
                 hidden: int | None = None):
        super().__init__()
        if num_scenes < 2:
            raise ValueError(f"a scene adversary needs num_scenes >= 2, got {num_scenes}")
        if objective not in SCENE_OBJECTIVES:
            raise ValueError(f"unknown scene objective {objective!r}; choose one of {SCENE_OBJECTIVES}")
        self.objective = objective
        self.strength = float(strength)
        self.num_scenes = num_scenes
        if hidden is None:
            self.classifier = nn.Linear(in_features, num_scenes)
        else:
            self.classifier = nn.Sequential(
                nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_scenes)
            )

    def extra_repr(self) -> str:
        return f"objective={self.objective!r}, strength={self.strength}"

    def forward(self, feature: Tensor) -> dict[str, Tensor]:
        if self.objective == "reverse":
            return {"scene_logits": self.classifier(grad_reverse(feature, self.strength))}
        out = {"scene_logits": self.classifier(feature.detach())}
        pushed = scale_gradient(feature, self.strength)
        if self.objective == "moments":
            out["scene_feature"] = pushed
        else:
            fixed = {name: p.detach() for name, p in self.classifier.named_parameters()}
            fixed.update(self.classifier.named_buffers())
            out["scene_confusion_logits"] = functional_call(self.classifier, fixed, (pushed,))
        return out

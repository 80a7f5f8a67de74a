"""Embedding head (bag-of-tricks BNNeck): pooling, optional reduction, bias-free BN, classifier.

Why: every ReID model here ends in the same head. The metric loss reads one feature, the classifier
another, retrieval a third; the head computes all three so model classes only route tensors.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from torch import Tensor, nn

__all__ = [
    "CosineClassifier",
    "EmbeddingHead",
    "GeneralizedMeanPooling",
    "HeadOutput",
    "build_classifier",
    "build_pool",
]

PoolType = Literal["avg", "max", "gem", "gem_fixed"]
ClassifierType = Literal["linear", "cosine", "cosface", "arcface"]
FeatureChoice = Literal["before", "after"]


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling (Radenovic et al.): (mean x^p)^(1/p) over H, W -> [B, C]; ``learnable`` makes p a parameter.

    Computed in float32 (x^3 overflows fp16 for activations above ~40) and returned in the input dtype.
    """

    def __init__(self, p: float = 3.0, learnable: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM power p must be > 0, got {p}")
        self.eps = eps
        if learnable:
            self.p = nn.Parameter(torch.full((1,), float(p)))
        else:
            self.register_buffer("p", torch.full((1,), float(p)))

    def forward(self, x: Tensor) -> Tensor:
        p = self.p.float()
        pooled = x.float().clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)
        return pooled.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, learnable={isinstance(self.p, nn.Parameter)}, eps={self.eps}"


def build_pool(kind: PoolType) -> nn.Module:
    """Pooling [B, C, H, W] -> [B, C]: ``avg``/``max`` (timm), ``gem`` (learnable p=3), ``gem_fixed`` (p=3)."""
    if kind in ("avg", "max"):
        return SelectAdaptivePool2d(pool_type=kind, flatten=True)
    if kind == "gem":
        return GeneralizedMeanPooling(3.0, learnable=True)
    if kind == "gem_fixed":
        return GeneralizedMeanPooling(3.0, learnable=False)
    raise ValueError(f"unknown pooling {kind!r}; choose one of avg, max, gem, gem_fixed")


class CosineClassifier(nn.Module):
    """Cosine logits s * cos(theta) with an optional target margin (CosFace: cos - m; ArcFace: cos(theta + m)).

    The margin needs the labels; without them (or in eval mode) the plain scaled cosine is returned.
    ``weight`` is [num_classes, in_features] like nn.Linear's.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.0,
        margin_type: Literal["cosface", "arcface"] = "cosface",
    ) -> None:
        super().__init__()
        if margin_type not in ("cosface", "arcface"):
            raise ValueError(f"margin_type must be 'cosface' or 'arcface', got {margin_type!r}")
        if scale <= 0 or margin < 0:
            raise ValueError(f"need scale > 0 and margin >= 0, got scale={scale}, margin={margin}")
        self.scale = scale
        self.margin = margin
        self.margin_type = margin_type
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        # autocast would run F.linear in half precision whatever the input dtype: cosines near +-1 and the
        # margin need float32, so autocast is off here
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._logits(x.float(), self.weight.float(), labels)

    def _logits(self, x: Tensor, weight: Tensor, labels: Tensor | None) -> Tensor:
        cosine = F.linear(F.normalize(x, dim=1), F.normalize(weight, dim=1))
        if self.margin > 0 and labels is not None and self.training:
            target = F.one_hot(labels, cosine.shape[1]).bool()
            if self.margin_type == "cosface":
                with_margin = cosine - self.margin
            else:
                # ArcFace with the usual fallback where theta + m would pass pi (insightface convention)
                sine = (1.0 - cosine.square()).clamp(min=0.0).sqrt()
                cos_theta_m = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
                threshold = math.cos(math.pi - self.margin)
                with_margin = torch.where(
                    cosine > threshold, cos_theta_m, cosine - math.sin(math.pi - self.margin) * self.margin
                )
            cosine = torch.where(target, with_margin, cosine)
        return cosine * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}, "
            f"margin={self.margin}, margin_type={self.margin_type}"
        )


def build_classifier(
    kind: ClassifierType, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.35
) -> nn.Module:
    """Identity classifier: ``linear`` (no bias, N(0, 0.001) as in bag-of-tricks), ``cosine`` (no margin),
    ``cosface`` / ``arcface`` (scale s, margin m)."""
    if kind == "linear":
        layer = nn.Linear(in_features, num_classes, bias=False)
        nn.init.normal_(layer.weight, std=0.001)
        return layer
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, scale=scale, margin=0.0)
    if kind in ("cosface", "arcface"):
        return CosineClassifier(in_features, num_classes, scale=scale, margin=margin, margin_type=kind)
    raise ValueError(f"unknown classifier {kind!r}; choose one of linear, cosine, cosface, arcface")


class HeadOutput(NamedTuple):
    """What one embedding head gives: the metric-loss feature, the pre-BN feature (what a scene adversary
    sees), the retrieval feature and the identity logits (None in eval mode or without a classifier)."""

    metric: Tensor
    global_feature: Tensor
    inference: Tensor
    logits: Tensor | None


class EmbeddingHead(nn.Module):
    """Pool -> optional linear reduction -> BNNeck (bias-free BN) -> classifier.

    ``metric_feature``/``inference_feature``: ``"before"`` the BN (after the reduction, if any) or
    ``"after"``. Bag-of-tricks: metric loss before, classifier and retrieval after. fast-reid's SBS/MGN
    configs used by AdaSP take both after; TransReID retrieves before.
    ``pool=None`` takes already pooled [B, C] inputs (ViT tokens).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        pool: PoolType | None = "avg",
        embedding_dim: int = 0,
        bnneck: bool = True,
        classifier: ClassifierType = "linear",
        scale: float = 30.0,
        margin: float = 0.35,
        metric_feature: FeatureChoice = "before",
        inference_feature: FeatureChoice = "after",
    ) -> None:
        super().__init__()
        for arg, value in (("metric_feature", metric_feature), ("inference_feature", inference_feature)):
            if value not in ("before", "after"):
                raise ValueError(f"{arg} must be 'before' or 'after' (the BNNeck), got {value!r}")
        if embedding_dim < 0:
            raise ValueError(f"embedding_dim must be >= 0 (0 keeps the {in_features} input channels)")
        self.pool = build_pool(pool) if pool is not None else nn.Identity()
        if embedding_dim > 0:
            self.reduction = nn.Linear(in_features, embedding_dim, bias=False)
            nn.init.kaiming_normal_(self.reduction.weight, mode="fan_out")
            self.out_features = embedding_dim
        else:
            self.reduction = nn.Identity()
            self.out_features = in_features
        if bnneck:
            self.bnneck = nn.BatchNorm1d(self.out_features)
            nn.init.ones_(self.bnneck.weight)
            nn.init.zeros_(self.bnneck.bias)
            self.bnneck.bias.requires_grad_(False)
        else:
            self.bnneck = nn.Identity()
        self.classifier = (
            build_classifier(classifier, self.out_features, num_classes, scale=scale, margin=margin)
            if num_classes > 0
            else None
        )
        self.metric_feature = metric_feature
        self.inference_feature = inference_feature

    def forward(self, x: Tensor, labels: Tensor | None = None) -> HeadOutput:
        before = self.reduction(self.pool(x))
        after = self.bnneck(before)
        logits = None
        if self.training and self.classifier is not None:
            if isinstance(self.classifier, CosineClassifier):
                logits = self.classifier(after, labels)
            else:
                logits = self.classifier(after)
        return HeadOutput(
            metric=before if self.metric_feature == "before" else after,
            global_feature=before,
            inference=before if self.inference_feature == "before" else after,
            logits=logits,
        )

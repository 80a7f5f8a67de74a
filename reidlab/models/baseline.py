"""The bag-of-tricks baseline: a timm CNN body + one embedding head (BNNeck). Registered ResNet variants.

AdaSP's vehicle rows use ``resnet50_ibn_a`` (2048-d BNNeck; GeM for VehicleID); the laptop default is
``resnet18_ibn_a`` at 128 x 64.
"""

from __future__ import annotations

import os

from torch import Tensor, nn

from .base import HEAD_ARGUMENTS, SCENE_ARGUMENTS, ReIDModel, classifier_weight_of, finish_model, pop_kwargs
from .heads import EmbeddingHead
from .registry import register_model
from .resnet_ibn import create_resnet

__all__ = ["Baseline"]


class Baseline(ReIDModel):
    """``backbone.forward_features`` -> ``EmbeddingHead``; one metric feature, one classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, **head_kwargs) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(backbone.num_features, num_classes, **head_kwargs)
        self.feature_dim = self.global_feature_dim = self.head.out_features

    def forward(self, images: Tensor, camids: Tensor | None = None, labels: Tensor | None = None):
        out = self.head(self.backbone.forward_features(images), labels)
        if not self.training:
            return out.inference
        return self._train_output([out.metric], [out.logits], out.global_feature, out.inference)

    def classifier_weight(self) -> Tensor:
        return classifier_weight_of(self.head.classifier)


def _create_baseline(
    variant: str,
    num_classes: int,
    *,
    ibn: bool,
    pretrained: str | os.PathLike | None = None,
    last_stride: int = 1,
    **kwargs,
) -> Baseline:
    """Head keywords (``pool``, ``embedding_dim``, ``bnneck``, ``classifier``, ``scale``, ``margin``,
    ``metric_feature``, ``inference_feature``) go to ``EmbeddingHead``; the rest to ``timm.create_model``."""
    head_kwargs = pop_kwargs(kwargs, HEAD_ARGUMENTS)
    scene_kwargs = pop_kwargs(kwargs, SCENE_ARGUMENTS)
    backbone = create_resnet(variant, ibn=ibn, last_stride=last_stride, pretrained=pretrained, **kwargs)
    return finish_model(Baseline(backbone, num_classes, **head_kwargs), **scene_kwargs)


@register_model
def resnet18(num_classes: int, **kwargs) -> Baseline:
    """ResNet-18 BNNeck baseline (512-d), last stride 1."""
    return _create_baseline("resnet18", num_classes, ibn=False, **kwargs)


@register_model
def resnet18_ibn_a(num_classes: int, **kwargs) -> Baseline:
    """ResNet-18-IBN-a BNNeck baseline (512-d): the laptop default at 128 x 64."""
    return _create_baseline("resnet18", num_classes, ibn=True, **kwargs)


@register_model
def resnet18_tiny(num_classes: int, **kwargs) -> Baseline:
    """ResNet-18 with a quarter of the channels (128-d, ~0.7 M parameters): the CPU study and test model."""
    kwargs = {"channels": [16, 32, 64, 128], "stem_width": 16, **kwargs}
    return _create_baseline("resnet18", num_classes, ibn=False, **kwargs)


@register_model
def resnet50(num_classes: int, **kwargs) -> Baseline:
    """ResNet-50 BNNeck baseline (2048-d), last stride 1 (Luo et al. bag of tricks)."""
    return _create_baseline("resnet50", num_classes, ibn=False, **kwargs)


@register_model
def resnet50_ibn_a(num_classes: int, **kwargs) -> Baseline:
    """ResNet-50-IBN-a BNNeck baseline (2048-d): AdaSP VeRi-776 / VehicleID (``pool="gem"``) rows."""
    return _create_baseline("resnet50", num_classes, ibn=True, **kwargs)

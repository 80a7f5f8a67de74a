"""MGN (Wang et al., ACM MM 2018) as in fast-reid's ``MGN`` meta-architecture, which AdaSP trains.

Shared stem = ResNet conv1 .. layer3[0]; three branches, each with its own copy of layer3[1:] + layer4:
global (1 feature), part-2 (global + 2 horizontal stripes), part-3 (global + 3 stripes). Eight embedding
heads (GeM, 1x1 reduction to 256, BNNeck, classifier). Like fast-reid: stripes come from ``torch.chunk``
on the height; the metric loss sees 5 groups (the 3 branch globals, the 2 concatenated stripes, the 3
concatenated stripes), each weighted 0.2; cross-entropy sees 8 heads, each weighted 0.125; retrieval
uses the concatenation of all 8 (8 x 256 = 2048-d). The part branches run layer4 at stride 1; the global
branch too in fast-reid/AdaSP (their backbone's last stride is 1), stride 2 in the original paper
(``global_last_stride=2``).
"""

from __future__ import annotations

import copy
import os

import torch
from torch import Tensor, nn

from .base import HEAD_ARGUMENTS, SCENE_ARGUMENTS, ReIDModel, classifier_weight_of, finish_model, pop_kwargs
from .heads import EmbeddingHead
from .registry import register_model
from .resnet_ibn import create_resnet, set_stage_stride

__all__ = ["MGN"]

# head name -> (branch, number of stripes the branch map is cut into, stripe index or None for the whole map)
_HEADS = {
    "b1": ("b1", 1, None),
    "b2": ("b2", 2, None),
    "b21": ("b2", 2, 0),
    "b22": ("b2", 2, 1),
    "b3": ("b3", 3, None),
    "b31": ("b3", 3, 0),
    "b32": ("b3", 3, 1),
    "b33": ("b3", 3, 2),
}
_RETRIEVAL_ORDER = ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")  # fast-reid's concatenation order
_LOGIT_ORDER = ("b1", "b2", "b21", "b22", "b3", "b31", "b32", "b33")
_METRIC_GROUPS = (("b1",), ("b2",), ("b3",), ("b21", "b22"), ("b31", "b32", "b33"))


class MGN(ReIDModel):
    """Multiple Granularity Network on a timm ResNet (pretrained weights are loaded before the split)."""

    feature_weights = (0.2,) * len(_METRIC_GROUPS)
    logit_weights = (0.125,) * len(_LOGIT_ORDER)
    head_modules = ("heads", "scene_adversary")

    def __init__(self, resnet: nn.Module, num_classes: int, *, global_last_stride: int = 1, **head_kwargs) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.act1, resnet.maxpool, resnet.layer1, resnet.layer2, resnet.layer3[0]
        )
        res_conv4 = nn.Sequential(*resnet.layer3[1:])
        global_conv5 = copy.deepcopy(resnet.layer4)
        set_stage_stride(global_conv5, global_last_stride)
        part_conv5 = copy.deepcopy(resnet.layer4)
        set_stage_stride(part_conv5, 1)
        self.b1 = nn.Sequential(copy.deepcopy(res_conv4), global_conv5)
        self.b2 = nn.Sequential(copy.deepcopy(res_conv4), copy.deepcopy(part_conv5))
        self.b3 = nn.Sequential(copy.deepcopy(res_conv4), part_conv5)
        self.heads = nn.ModuleDict(
            {name: EmbeddingHead(resnet.num_features, num_classes, **head_kwargs) for name in _HEADS}
        )
        self.global_feature_dim = self.heads["b1"].out_features
        self.feature_dim = self.global_feature_dim * len(_HEADS)

    def forward(self, images: Tensor, camids: Tensor | None = None, labels: Tensor | None = None):
        shared = self.stem(images)
        maps = {"b1": self.b1(shared), "b2": self.b2(shared), "b3": self.b3(shared)}
        outputs = {}
        for name, (branch, num_stripes, stripe) in _HEADS.items():
            feature_map = maps[branch]
            if stripe is not None:
                stripes = torch.chunk(feature_map, num_stripes, dim=2)
                if len(stripes) != num_stripes:
                    raise ValueError(
                        f"MGN cannot cut a feature map of height {feature_map.shape[2]} into {num_stripes} stripes "
                        f"(torch.chunk gives {len(stripes)}); use a taller input (e.g. 384 x 128 or 256 x 128)"
                    )
                feature_map = stripes[stripe]
            outputs[name] = self.heads[name](feature_map, labels)
        feat = torch.cat([outputs[name].inference for name in _RETRIEVAL_ORDER], dim=1)
        if not self.training:
            return feat
        features = [torch.cat([outputs[name].metric for name in group], dim=1) for group in _METRIC_GROUPS]
        logits = [outputs[name].logits for name in _LOGIT_ORDER]
        return self._train_output(features, logits, outputs["b1"].global_feature, feat)

    def classifier_weight(self) -> Tensor:
        """The global branch's classifier rows [num_classes, 256]."""
        return classifier_weight_of(self.heads["b1"].classifier)


def _create_mgn(
    variant: str,
    num_classes: int,
    *,
    ibn: bool,
    pretrained: str | os.PathLike | None = None,
    global_last_stride: int = 1,
    **kwargs,
) -> MGN:
    """Head keywords go to the 8 ``EmbeddingHead``s (defaults as fast-reid's MGN in AdaSP: GeM, 256-d,
    metric and retrieval features after the BN); the rest to ``timm.create_model``."""
    if global_last_stride not in (1, 2):
        raise ValueError(f"global_last_stride must be 1 (fast-reid/AdaSP) or 2 (MGN paper), got {global_last_stride}")
    head_kwargs = {"pool": "gem", "embedding_dim": 256, "metric_feature": "after", **pop_kwargs(kwargs, HEAD_ARGUMENTS)}
    scene_kwargs = pop_kwargs(kwargs, SCENE_ARGUMENTS)
    resnet = create_resnet(variant, ibn=ibn, last_stride=1, pretrained=pretrained, **kwargs)
    model = MGN(resnet, num_classes, global_last_stride=global_last_stride, **head_kwargs)
    return finish_model(model, **scene_kwargs)


@register_model
def mgn_resnet50_ibn_a(num_classes: int, **kwargs) -> MGN:
    """MGN on ResNet-50-IBN-a, GeM, 8 x 256-d BNNeck heads (AdaSP person rows; fast-reid SBS heads:
    metric and retrieval features after the BN)."""
    return _create_mgn("resnet50", num_classes, ibn=True, **kwargs)


@register_model
def mgn_resnet50(num_classes: int, **kwargs) -> MGN:
    """MGN on plain ResNet-50."""
    return _create_mgn("resnet50", num_classes, ibn=False, **kwargs)


@register_model
def mgn_resnet18_ibn_a(num_classes: int, **kwargs) -> MGN:
    """MGN on ResNet-18-IBN-a: the same 8 x 256-d structure, small enough for a CPU at 128 x 64."""
    return _create_mgn("resnet18", num_classes, ibn=True, **kwargs)

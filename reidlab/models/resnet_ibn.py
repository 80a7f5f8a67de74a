"""ResNet backbones from timm, with the two ReID changes: IBN-a blocks and last stride 1.

IBN-a (Pan et al., ECCV 2018) is timm's ResNet with the first norm (``bn1``) of every block in stages 1-3
replaced by InstanceNorm on the first half of the channels and BatchNorm on the rest; stage 4 and the stem
stay BN. Sub-module names ``IN``/``BN`` match the IBN-Net release, so ``resnet50_ibn_a-d9d0bb7b.pth`` loads
key for key.
"""

from __future__ import annotations

import os

import timm
import torch
from timm.models.resnet import ResNet
from torch import Tensor, nn

from .weights import check_pretrained_arg, load_pretrained

__all__ = ["IBN", "convert_to_ibn_a", "create_resnet", "set_stage_stride"]


class IBN(nn.Module):
    """Instance-batch normalization: InstanceNorm (affine) on the first ``int(channels * ratio)`` channels,
    BatchNorm on the rest."""

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(channels * ratio)
        if not 0 < self.half < channels:
            raise ValueError(f"IBN needs 0 < int(channels * ratio) < channels, got channels={channels}, ratio={ratio}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.IN(x[:, : self.half].contiguous()), self.BN(x[:, self.half :].contiguous())], dim=1)


def convert_to_ibn_a(resnet: ResNet, stages: tuple[int, ...] = (1, 2, 3)) -> ResNet:
    """Swap ``bn1`` of every block in ``layer{stages}`` for an IBN module, in place."""
    for stage in stages:
        for block in getattr(resnet, f"layer{stage}"):
            block.bn1 = IBN(block.bn1.num_features)
    return resnet


def set_stage_stride(stage: nn.Sequential, stride: int) -> None:
    """Set the spatial stride of a ResNet stage (its first block: the strided 3x3 conv and the shortcut conv).

    ``stride=1`` on ``layer4`` is the ReID "last stride 1" (a 2x larger final map, no dilation).
    """
    block = stage[0]
    strided_conv = block.conv2 if hasattr(block, "conv3") else block.conv1  # Bottleneck vs BasicBlock
    strided_conv.stride = (stride, stride)
    if block.downsample is not None:
        shortcut_conv = block.downsample[0]
        if not isinstance(shortcut_conv, nn.Conv2d):
            raise ValueError("set_stage_stride supports the plain 1x1 conv shortcut (timm avg_down=False)")
        shortcut_conv.stride = (stride, stride)
    block.stride = stride


def create_resnet(
    variant: str,
    *,
    ibn: bool = False,
    last_stride: int = 1,
    pretrained: str | os.PathLike | None = None,
    strict: bool = True,
    **timm_kwargs,
) -> ResNet:
    """timm ResNet body (no pooling, no classifier) with optional IBN-a and last stride; local weights only."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 (ReID) or 2 (ImageNet), got {last_stride}")
    path = check_pretrained_arg(pretrained)
    model = timm.create_model(variant, pretrained=False, num_classes=0, global_pool="", **timm_kwargs)
    if not isinstance(model, ResNet):
        raise ValueError(f"{variant!r} is not a timm ResNet")
    if ibn:
        convert_to_ibn_a(model)
    set_stage_stride(model.layer4, last_stride)
    if path is not None:
        load_pretrained(model, path, strict=strict)
    return model

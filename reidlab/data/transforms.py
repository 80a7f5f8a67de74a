"""Train/test image pipelines (torchvision.transforms.v2) with the HBReID augmentations.

Only two transforms are written here because torchvision has no equivalent: grayscale patch replacement
(HBReID; Gong et al.'s local grayscale patch replacement) and a random gamma transformation.
Randomness comes from torch's global generator, which DataLoader seeds per worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high))


class GrayscalePatchReplacement(nn.Module):
    """With probability ``p``, replace one random rectangle of a float image [..., 3, H, W] by its grayscale
    version (luma 0.2989 R + 0.587 G + 0.114 B, as torchvision, in all three channels); the rest stays in colour.

    The rectangle is drawn like random erasing: its area is a fraction in ``scale`` of the image and its
    aspect ratio (height / width) is log-uniform in ``ratio``; up to 10 draws until one fits.
    """

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.4), ratio: Sequence[float] = (0.3, 3.33)):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability p must be in [0, 1], got {p}")
        self.p, self.scale, self.ratio = p, tuple(scale), tuple(ratio)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.p == 0 or torch.rand(1).item() >= self.p:
            return image
        height, width = image.shape[-2:]
        box = self.sample_box(height, width)
        if box is None:
            return image
        top, left, h, w = box
        image = image.clone()
        patch = image[..., top : top + h, left : left + w]
        image[..., top : top + h, left : left + w] = F.rgb_to_grayscale(patch, num_output_channels=3)
        return image

    def sample_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = height * width * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, (1,)))
                left = int(torch.randint(0, width - w + 1, (1,)))
                return top, left, h, w
        return None

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}"


class RandomGamma(nn.Module):
    """With probability ``p``, apply ``image ** gamma`` with gamma log-uniform in ``gamma`` (float images in [0, 1])."""

    def __init__(self, p: float = 0.5, gamma: Sequence[float] = (0.67, 1.5)):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability p must be in [0, 1], got {p}")
        if not 0 < gamma[0] <= gamma[1]:
            raise ValueError(f"gamma range must satisfy 0 < low <= high, got {gamma}")
        self.p, self.gamma = p, tuple(gamma)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.p == 0 or torch.rand(1).item() >= self.p:
            return image
        gamma = math.exp(_uniform(math.log(self.gamma[0]), math.log(self.gamma[1])))
        return F.adjust_gamma(image, gamma)

    def extra_repr(self) -> str:
        return f"p={self.p}, gamma={self.gamma}"


def build_transforms(
    is_train: bool,
    size: Sequence[int] = (256, 128),
    *,
    interpolation: str = "bilinear",
    flip_p: float = 0.5,
    padding: int = 10,
    erasing_p: float = 0.5,
    erasing_scale: Sequence[float] = (0.02, 0.4),
    gray_patch_p: float = 0.0,
    color_jitter_p: float = 0.0,
    color_jitter: Sequence[float] = (0.15, 0.15, 0.1, 0.1),
    blur_p: float = 0.0,
    blur_kernel: int = 5,
    blur_sigma: Sequence[float] = (0.1, 2.0),
    gamma_p: float = 0.0,
    gamma: Sequence[float] = (0.67, 1.5),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """PIL image -> normalized float Tensor[3, H, W].

    Test: resize + normalize. Train adds, in order: colour jitter (``color_jitter_p``; brightness, contrast,
    saturation, hue), horizontal flip (``flip_p``), zero padding by ``padding`` pixels + random crop back to
    ``size``, Gaussian blur (``blur_p``), gamma (``gamma_p``), grayscale patch replacement (``gray_patch_p``),
    normalization, random erasing with value 0 = the mean colour (``erasing_p``).
    Every step whose probability (or padding) is 0 is left out, so all-zero settings equal the test pipeline.
    """
    size = tuple(size)
    steps: list = [v2.Resize(size, interpolation=InterpolationMode(interpolation), antialias=True)]
    if is_train and color_jitter_p > 0:  # on the PIL image: about twice as fast as on tensors (hue)
        steps.append(v2.RandomApply([v2.ColorJitter(*color_jitter)], p=color_jitter_p))
    steps.append(v2.ToImage())
    if is_train:
        if flip_p > 0:
            steps.append(v2.RandomHorizontalFlip(flip_p))
        if padding > 0:
            steps += [v2.Pad(padding), v2.RandomCrop(size)]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if is_train:
        if blur_p > 0:
            steps.append(v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=tuple(blur_sigma))], p=blur_p))
        if gamma_p > 0:
            steps.append(RandomGamma(gamma_p, gamma))
        if gray_patch_p > 0:
            steps.append(GrayscalePatchReplacement(gray_patch_p))
    steps.append(v2.Normalize(mean, std))
    if is_train and erasing_p > 0:
        steps.append(v2.RandomErasing(erasing_p, scale=tuple(erasing_scale), value=0.0))
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)

"""Train/test pipelines, grayscale patch replacement and random gamma against explicit references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data import build_transforms
from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, GrayscalePatchReplacement, RandomGamma

SIZE = (64, 32)


def random_image(seed: int = 0, height: int = 50, width: int = 30) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_test_pipeline_is_resize_and_normalize():
    transform = build_transforms(False, size=SIZE)
    out = transform(Image.new("RGB", (30, 50), (255, 0, 51)))
    assert type(out) is torch.Tensor and out.shape == (3, *SIZE) and out.dtype == torch.float32
    for channel, value in enumerate((1.0, 0.0, 0.2)):
        expected = (value - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[channel], torch.full(SIZE, expected), atol=1e-5)


def test_train_pipeline_shapes_with_every_augmentation():
    torch.manual_seed(0)
    transform = build_transforms(True, size=SIZE, gray_patch_p=1, color_jitter_p=1, blur_p=1, gamma_p=1, erasing_p=1)
    outputs = torch.stack([transform(random_image(seed)) for seed in range(4)])
    assert outputs.shape == (4, 3, *SIZE) and torch.isfinite(outputs).all()
    low = (0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD)
    high = (1 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)
    assert low - 1e-5 <= outputs.min() and outputs.max() <= high + 1e-5
    test_output = build_transforms(False, size=SIZE)(random_image(0))
    assert not torch.allclose(outputs[0], test_output)


def test_zero_probabilities_equal_the_test_pipeline():
    torch.manual_seed(0)
    train = build_transforms(True, size=SIZE, flip_p=0, padding=0, erasing_p=0)
    test = build_transforms(False, size=SIZE)
    for seed in range(3):
        image = random_image(seed)
        assert torch.equal(train(image), test(image))


def luma(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image.double()
    return 0.2989 * r + 0.587 * g + 0.114 * b  # torchvision rgb_to_grayscale weights


@pytest.mark.parametrize("seed", range(5))
def test_grayscale_patch_is_gray_inside_and_untouched_outside(seed):
    torch.manual_seed(seed)
    image = torch.rand(3, 64, 32)
    original = image.clone()
    out = GrayscalePatchReplacement(p=1.0)(image)
    assert torch.equal(image, original)  # the input itself is not modified
    changed = (out != image).any(dim=0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    inside = torch.zeros_like(changed)
    inside[top:bottom, left:right] = True
    assert torch.equal(out[:, ~inside], image[:, ~inside])  # the rest stays RGB, bit for bit
    patch = out[:, inside].double()
    assert torch.allclose(patch[0], patch[1]) and torch.allclose(patch[1], patch[2])
    assert torch.allclose(patch[0], luma(image)[inside], atol=1e-6)
    area = (bottom - top) * (right - left) / (64 * 32)
    assert 0.015 <= area <= 0.45


def test_zero_probability_leaves_images_unchanged():
    image = torch.rand(3, 16, 8)
    assert torch.equal(GrayscalePatchReplacement(p=0.0)(image), image)
    assert torch.equal(RandomGamma(p=0.0)(image), image)
    with pytest.raises(ValueError, match="probability"):
        GrayscalePatchReplacement(p=1.5)


def test_random_gamma_is_a_power_in_range():
    torch.manual_seed(0)
    image = torch.rand(3, 16, 8) * 0.9 + 0.05
    low, high = 0.5, 2.0
    gammas = set()
    for _ in range(5):
        out = RandomGamma(p=1.0, gamma=(low, high))(image)
        exponents = torch.log(out.double()) / torch.log(image.double())
        gamma = exponents.mean().item()
        assert torch.allclose(exponents, torch.full_like(exponents, gamma), atol=1e-4)
        assert low - 1e-6 <= gamma <= high + 1e-6
        gammas.add(round(gamma, 4))
    assert len(gammas) == 5

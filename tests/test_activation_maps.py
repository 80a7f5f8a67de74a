"""Activation maps (reidlab.explore.activation): on images whose identity cue is one pasted patch, a model trained to
tell the patched images from the same images without it maps their similarity onto the patch, Grad-CAM for a CNN
and attention rollout for the ViT; the maps' range, size and flip averaging, and the model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reidlab.data import build_transforms
from reidlab.engine import TrainConfig
from reidlab.explore import ActivationMap
from reidlab.explore.activation import overlay
from reidlab.models import build_model


def config(size: tuple[int, int], flip: bool = False) -> TrainConfig:
    config = TrainConfig()
    config.data.size, config.eval.flip = list(size), flip
    return config


def patch_rectangle(size: tuple[int, int]) -> tuple[slice, slice]:
    """The pasted patch: an eighth of the image, high on the left (away from the centre a map may favour)."""
    height, width = size
    return slice(height // 8, height // 8 + height // 4), slice(0, width // 2)


def with_patch(path, size: tuple[int, int]) -> Image.Image:
    """A SynthReID image at ``size`` with a magenta and yellow checkerboard pasted in :func:`patch_rectangle`."""
    image = np.array(Image.open(path).convert("RGB").resize(size[::-1], Image.BILINEAR))
    rows, cols = patch_rectangle(size)
    y, x = np.mgrid[rows, cols]
    image[rows, cols] = np.where(((y // 4 + x // 4) % 2)[..., None] == 1, [255, 0, 255], [255, 255, 0])
    return Image.fromarray(image)


def mass_on(heat: np.ndarray, region: tuple[slice, slice]) -> float:
    """The share of a map's total in ``region`` (0 for an all-zero map)."""
    return float(heat[region].sum() / max(heat.sum(), 1e-12))


# (model, builder keywords, input size, training steps): the CNN at the study's test resolution, the ViT shrunk to
# two blocks on 64 x 32 inputs (a 7 x 3 patch grid at stride 8) so that both train in seconds
CASES = {"grad-cam": ("resnet18_tiny", {}, (128, 64), 12),
         "rollout": ("vit_tiny_transreid", {"img_size": (64, 32), "depth": 2, "stride": 8}, (64, 32), 20)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_map_of_two_patched_images_lies_on_the_patch(synth_root, case):
    """Identity A: SynthReID images with the patch; B: the same images without it. After a few steps of
    cross-entropy the patch is all that separates them, and the maps of an A-A pair (two different images) put
    more of their mass on the patch than its area share; the maps of the same pairs without the patch do not."""
    name, kwargs, size, steps = CASES[case]
    paths = sorted((synth_root / "bounding_box_train").glob("*.jpg"))[:44]
    transform = build_transforms(False, size=size)
    plain = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    patched = torch.stack([transform(with_patch(p, size)) for p in paths])
    torch.manual_seed(0)
    model = build_model(name, 2, **kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    draws = torch.Generator().manual_seed(0)
    for _ in range(steps):  # trained on the first 32 images, mapped on the other 12
        drawn = torch.randperm(32, generator=draws)[:8]
        logits = model(torch.cat([patched[drawn], plain[drawn]]))["logits"][0]
        loss = F.cross_entropy(logits, torch.tensor([0] * 8 + [1] * 8))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    maps = ActivationMap(model, config(size))
    assert maps.method == {"grad-cam": "Grad-CAM", "rollout": "attention rollout"}[case]
    region = patch_rectangle(size)
    area = (region[0].stop - region[0].start) * (region[1].stop - region[1].start) / (size[0] * size[1])
    on_patch = [mass_on(m, region) for i in range(32, 44, 2) for m in maps.pair(patched[i], patched[i + 1])]
    without = [mass_on(m, region) for i in range(32, 44, 2) for m in maps.pair(plain[i], plain[i + 1])]
    print(f"{case}: mass on the patch {np.mean(on_patch):.3f} (least {np.min(on_patch):.3f}), area share {area:.3f}, "
          f"same region without the patch {np.mean(without):.3f}")
    assert np.mean(on_patch) > 2 * area and np.mean(on_patch) > 2 * np.mean(without)


@pytest.mark.parametrize("name, kwargs", [("resnet18_tiny", {}), ("mgn_resnet18_ibn_a", {}),
                                          ("vit_tiny_transreid", {"img_size": (128, 64), "depth": 2, "jpm": True,
                                                                  "jpm_groups": 2, "num_cameras": 3})])
def test_maps_are_in_unit_range_at_the_input_size_and_leave_the_model_as_it_was(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, 4, **kwargs)
    images, camids = torch.randn(2, 3, 128, 64), torch.tensor([0, 2])  # MGN cuts its map into 3 stripes
    model.eval()
    with torch.no_grad():
        before = model(images, camids=camids)
    model.train()
    maps = ActivationMap(model, config((128, 64)))
    for heat in maps.pair(images[0], images[1], camids=(0, 2)):
        assert heat.shape == (128, 64) and heat.dtype == np.float32
        assert heat.min() == 0 and heat.max() == pytest.approx(1)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images, camids=camids), before), "no weight or statistic moved"
    if name.startswith("vit"):
        assert all(block.attn.fused_attn for block in model.backbone.blocks), "fused attention is switched back on"


def test_flip_averaging_maps_a_mirrored_pair_to_mirrored_maps():
    torch.manual_seed(0)
    model = build_model("resnet18_tiny", 4)
    images = torch.randn(2, 3, 64, 32)
    flipped = ActivationMap(model, config((64, 32), flip=True))
    straight, mirrored = flipped.pair(*images), flipped.pair(*images.flip(-1))
    for a, b in zip(straight, mirrored):
        np.testing.assert_allclose(a, b[:, ::-1], atol=1e-5)
    plain = ActivationMap(model, config((64, 32))).pair(*images)
    assert not np.allclose(plain[0], straight[0]), "eval.flip: the mirrored images count too"


def test_models_without_a_map_are_refused():
    with pytest.raises(TypeError, match="no activation map for Linear"):
        ActivationMap(torch.nn.Linear(2, 2), config((64, 32)))


def test_overlay_draws_the_map_over_the_image_at_its_size():
    image = np.full((128, 64, 3), 100, dtype=np.uint8)
    heat = np.zeros((64, 32), dtype=np.float32)
    heat[:32] = 1.0
    drawn = overlay(image, heat)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn[10, 10], drawn[120, 10]), "hot and cold regions get different colours"
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)

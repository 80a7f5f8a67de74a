"""Activation maps: where in two images a model finds what makes them similar.

The similarity explained is the one reidlab's evaluation ranks by: the cosine of the two images' evaluation
features (eval mode, the run's test transform, flip averaging as ``eval.flip``). Eval mode also makes each image's
map depend on the pair alone: train-mode features (BatchNorm on the batch's statistics, what the positive-pairs
page selects pairs on) depend on the whole batch.

- CNNs (the BNNeck ResNet baselines, MGN): Grad-CAM (Selvaraju et al. 2017) of that similarity at the last
  convolutional stage: the stage's channels weighted by the spatial mean of the similarity's gradient, summed,
  with negative evidence cut off. The gradient is taken with the image's own feature norm held, as Grad-CAM takes
  a class score before the softmax: the cosine's plain gradient is orthogonal to the image's feature (scaling a
  feature leaves its cosine unchanged), so it weighs what would change the similarity rather than what the two
  images share, and its maps came out erratic. MGN has three last stages (its global, 2-stripe and 3-stripe
  branches); their weighted channels are summed, as the similarity sums what the branches give.
- ViT (TransReID): attention rollout (Abnar & Zuidema 2020) over the global branch's blocks: head-averaged
  attention plus the identity (the residual), rows renormalised, multiplied through the layers; the class token's
  row over the patch tokens, spread over each patch's pixels. Rollout reads how the class token draws on the image,
  so a ViT map does not change with the other image of the pair (JPM's local branch is not in it).

Written here rather than taken from the ``grad-cam`` package: that pulls OpenCV, ttach and scikit-learn for the
few lines of arithmetic below.
"""

from __future__ import annotations

import base64
import html
import io
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from reidlab.data import build_transforms
from reidlab.data.image_dataset import load_image
from reidlab.engine import TrainConfig
from reidlab.models.baseline import Baseline
from reidlab.models.mgn import MGN
from reidlab.models.vit_transreid import TransReID
from reidlab.viz.images import read_image

from .tiles import figure_png

__all__ = ["ActivationMap", "last_conv_stages", "overlay"]


def last_conv_stages(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs Grad-CAM weighs: a baseline's last ResNet stage, MGN's three branches (each ends
    with its own copy of that stage)."""
    if isinstance(model, MGN):
        return [model.b1, model.b2, model.b3]
    if isinstance(model, Baseline):
        return [model.backbone.layer4]
    raise TypeError(f"no activation map for {type(model).__name__}: Grad-CAM knows Baseline and MGN, rollout "
                    "TransReID")


def _unit_range(maps: Tensor) -> Tensor:
    """Each map [B, H, W] shifted and scaled to [0, 1]; a constant map becomes zeros."""
    low = maps.amin((1, 2), keepdim=True)
    high = maps.amax((1, 2), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


class ActivationMap:
    """Activation maps of ``model`` (a run's, as :func:`reidlab.engine.load_trained` gives it) for the similarity
    of two images, read with ``config``'s test transform::

        maps = ActivationMap(model, config)
        map_a, map_b = maps.pair("a.jpg", "b.jpg")  # [H, W] in [0, 1] each, at the model's input size
    """

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        self.model = model
        self.size = tuple(config.data.size)
        self.flip = config.eval.flip
        self.transform = build_transforms(False, size=self.size)
        self.rollout = isinstance(model, TransReID)
        self.method = "attention rollout" if self.rollout else "Grad-CAM"
        self.stages = [] if self.rollout else last_conv_stages(model)

    def pair(self, image_a: str | os.PathLike | Tensor, image_b: str | os.PathLike | Tensor,
             camids: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each image's map [H, W] in [0, 1] for the two images' similarity. An image is a file or a tensor the
        test transform gave; ``camids`` (0-based) are needed by a ViT with camera embeddings."""
        images = torch.stack([image if isinstance(image, Tensor) else self.transform(load_image(str(image)))
                              for image in (image_a, image_b)])
        device = next(self.model.parameters()).device
        if self.flip:  # the mirrored images' maps are mirrored back and added
            images = torch.cat([images, images.flip(-1)])
        cams = None if camids is None else torch.as_tensor(camids * (2 if self.flip else 1), device=device)
        was_training = self.model.training
        self.model.eval()
        try:
            maps = (self._rollout if self.rollout else self._grad_cam)(images.to(device), cams)
        finally:
            self.model.train(was_training)
        if self.flip:
            maps = maps[:2] + maps[2:].flip(-1)
        maps = _unit_range(maps.detach().float().cpu()).numpy()
        return maps[0], maps[1]

    def _grad_cam(self, images: Tensor, camids: Tensor | None) -> Tensor:
        activations = []
        hooks = [stage.register_forward_hook(lambda _module, _input, output: activations.append(output))
                 for stage in self.stages]
        try:
            with torch.enable_grad():
                features = self.model(images.requires_grad_(), camids=camids)  # a frozen model still has a graph
                if self.flip:
                    features = features[:2] + features[2:]
                # each image's cosine to the other with its own norm and the other's unit feature held: the score
                # before the normalisation, as Grad-CAM takes a class score before the softmax
                norms = features.detach().norm(dim=1)
                partners = (features.detach() / norms[:, None]).flip(0)
                similarities = (features * partners).sum(1) / norms  # both equal the cosine
                gradients = torch.autograd.grad(similarities.sum(), activations)
        finally:
            for hook in hooks:
                hook.remove()
        weighted = sum(F.interpolate((gradient.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True),
                                     size=self.size, mode="bilinear", align_corners=False)
                       for activation, gradient in zip(activations, gradients))
        return F.relu(weighted[:, 0])

    def _rollout(self, images: Tensor, camids: Tensor | None) -> Tensor:
        blocks = self.model.backbone.blocks
        attentions = []
        hooks = [block.attn.attn_drop.register_forward_hook(lambda _module, _input, output: attentions.append(output))
                 for block in blocks]
        fused = [block.attn.fused_attn for block in blocks]
        for block in blocks:  # the fused kernel never forms the attention probabilities: the plain path, this pass only
            block.attn.fused_attn = False
        try:
            with torch.no_grad():
                self.model(images, camids=camids)
        finally:
            for hook, block, was_fused in zip(hooks, blocks, fused):
                hook.remove()
                block.attn.fused_attn = was_fused
        tokens = attentions[0].shape[-1]
        identity = torch.eye(tokens, device=images.device)
        rollout = identity.expand(len(images), tokens, tokens)
        for attention in attentions:
            residual = attention.float().mean(1) + identity
            rollout = (residual / residual.sum(-1, keepdim=True)) @ rollout
        patch_embed = self.model.backbone.patch_embed
        grid = _unit_range(rollout[:, 0, 1:].reshape(len(images), *patch_embed.grid_size))[:, None]
        # each patch's weight spread over the pixels it reads (overlapping patches: averaged where they overlap)
        kernel = torch.ones(1, 1, *patch_embed.patch_size, device=images.device)
        spread = F.conv_transpose2d(grid, kernel, stride=patch_embed.stride)
        cover = F.conv_transpose2d(torch.ones_like(grid), kernel, stride=patch_embed.stride)
        height, width = spread.shape[-2:]  # the bottom and right pixels no patch reads stay 0
        return F.pad(spread / cover, (0, self.size[1] - width, 0, self.size[0] - height))[:, 0]

    def overlays(self, path_a: str, path_b: str, size: tuple[int, int],
                 camids: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The two images read at ``size`` = (height, width), each with its map for their similarity over it."""
        maps = self.pair(path_a, path_b, camids)
        return overlay(read_image(path_a, size), maps[0]), overlay(read_image(path_b, size), maps[1])


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """An RGB uint8 image with ``heat`` (a map in [0, 1] of any size, stretched to the image) drawn over it in
    ``cmap``, ``alpha`` opaque."""
    height, width = image.shape[:2]
    stretched = F.interpolate(torch.as_tensor(heat, dtype=torch.float32)[None, None], size=(height, width),
                              mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    colours = plt.get_cmap(cmap)(stretched)[..., :3] * 255
    return ((1 - alpha) * image + alpha * colours).round().astype(np.uint8)


def maps_html(fig: plt.Figure, **data: object) -> str:
    """A view's activation-map figure as an HTML image (the figure is closed); ``data`` become ``data-*``
    attributes, as on the views' tiles."""
    attributes = "".join(f' data-{key.replace("_", "-")}="{html.escape(str(value))}"' for key, value in data.items())
    png = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<div class="reidlab-maps"{attributes}><img src="data:image/png;base64,{png}"></div>'


def with_maps_below(view: plt.Figure, maps: plt.Figure) -> plt.Figure:
    """A view's static figure with an activation-map figure under it, as one figure (both drawn as the PNG images
    :func:`figure_png` makes; both are closed): the static fallback of a view whose maps come on a click."""
    images = [np.asarray(Image.open(io.BytesIO(figure_png(fig))).convert("RGB")) for fig in (view, maps)]
    canvas = np.full((sum(image.shape[0] for image in images), max(image.shape[1] for image in images), 3), 255,
                     dtype=np.uint8)
    top = 0
    for image in images:
        canvas[top: top + image.shape[0], : image.shape[1]] = image
        top += image.shape[0]
    dpi = 90  # figure_png's: the stacked figure is drawn again at the same resolution
    fig = plt.figure(figsize=(canvas.shape[1] / dpi, canvas.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="none")
    ax.axis("off")
    return fig

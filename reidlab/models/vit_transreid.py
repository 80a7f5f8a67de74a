"""TransReID-style ViT (He et al., ICCV 2021) on timm's VisionTransformer.

Three TransReID parts on top of the timm body:
- overlapping patches: a 16 x 16 conv with stride 12 injected through ``embed_layer=`` (256 x 128 -> 21 x 10
  tokens, 384 x 128 -> 31 x 10);
- side-information embedding (SIE): a learned [num_cameras, 1, D] table, scaled by ``sie_coef`` (3.0), added
  to every token after the position embedding;
- jigsaw patch module (JPM): the last block is duplicated as a local branch; the patch tokens are shifted
  and shuffled, cut into k groups, and each group (with the class token) goes through the local branch.
  Features: global + k locals (each with its BNNeck head); retrieval: [global, local_1/k, ..., local_k/k].
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from functools import partial

import timm
import torch
from timm.layers import PatchEmbed, to_2tuple, trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .base import HEAD_ARGUMENTS, SCENE_ARGUMENTS, ReIDModel, classifier_weight_of, finish_model, pop_kwargs
from .heads import EmbeddingHead
from .registry import register_model
from .weights import check_pretrained_arg, load_pretrained

__all__ = ["OverlapPatchEmbed", "TransReID", "jigsaw_rearrange"]


class OverlapPatchEmbed(PatchEmbed):
    """timm PatchEmbed with a stride smaller than the patch (overlapping patches, TransReID ``PatchEmbed_overlap``).

    Grid: ((H - patch) // stride + 1, (W - patch) // stride + 1). The input must have the size the model was
    built for (the position embedding has one entry per grid cell).
    """

    def __init__(self, img_size=(256, 128), patch_size=16, in_chans=3, embed_dim=768, *, stride: int = 12,
                 bias: bool = True, **kwargs) -> None:
        if kwargs.get("dynamic_img_pad") or kwargs.get("output_fmt") not in (None, "NCHW"):
            raise ValueError("OverlapPatchEmbed supports neither dynamic_img_size nor dynamic_img_pad")
        kwargs.pop("dynamic_img_pad", None)
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         bias=bias, **kwargs)
        if stride < 1:
            raise ValueError(f"patch stride must be >= 1, got {stride}")
        height, width = self.img_size
        if height < self.patch_size[0] or width < self.patch_size[1]:
            raise ValueError(f"image size {self.img_size} is smaller than the patch size {self.patch_size}")
        self.stride = (stride, stride)
        self.grid_size = ((height - self.patch_size[0]) // stride + 1, (width - self.patch_size[1]) // stride + 1)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride, bias=bias,
                              device=self.proj.weight.device, dtype=self.proj.weight.dtype)
        self.init_weights()

    def init_weights(self) -> None:
        """TransReID's init: N(0, sqrt(2 / (k_h * k_w * out_channels))); timm's ViT init calls this hook."""
        fan_out = self.proj.kernel_size[0] * self.proj.kernel_size[1] * self.proj.out_channels
        nn.init.normal_(self.proj.weight, 0.0, math.sqrt(2.0 / fan_out))
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def feat_ratio(self, as_scalar: bool = True):
        return max(self.stride) if as_scalar else self.stride

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return ((img_size[0] - self.patch_size[0]) // self.stride[0] + 1,
                (img_size[1] - self.patch_size[1]) // self.stride[1] + 1)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != tuple(self.img_size):
            raise ValueError(
                f"input of size {tuple(x.shape[-2:])} does not fit this ViT: it was built for img_size={self.img_size} "
                f"({self.grid_size[0]} x {self.grid_size[1]} patch grid, one position embedding per cell); resize "
                "the images or build the model with img_size=(H, W) (pretrained position embeddings are resized on load)"
            )
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(x)


def jigsaw_rearrange(tokens: Tensor, shift: int, groups: int) -> Tensor:
    """TransReID's ``shuffle_unit``: [B, 1 + N, D] (class token first) -> [B, N', D] shifted, shuffled patches.

    Shift: the sequence restarts at token ``shift`` and the patches 1 .. shift-1 move to the end (the class
    token is left out). Shuffle: split into ``groups`` equal runs and interleave them (patch i of every
    run, then patch i + 1, ...). When N is not divisible by ``groups`` the second-to-last token is repeated
    to pad, as in TransReID (N' = N rounded up to a multiple of ``groups``).
    """
    if not 1 <= shift <= tokens.shape[1] - 1:
        raise ValueError(f"shift must be in [1, {tokens.shape[1] - 1}] (number of patches), got {shift}")
    batch, _, dim = tokens.shape
    x = torch.cat([tokens[:, shift:], tokens[:, 1:shift]], dim=1)
    remainder = x.shape[1] % groups
    if remainder:
        x = torch.cat([x] + [x[:, -2:-1]] * (groups - remainder), dim=1)
    return x.view(batch, groups, -1, dim).transpose(1, 2).reshape(batch, -1, dim)


class TransReID(ReIDModel):
    """A timm ViT body + SIE + optional JPM, with one BNNeck head per output feature."""

    # sie_embed is randomly initialised like the heads, so freezing the pretrained body must not freeze it
    head_modules = ("head", "local_heads", "scene_adversary", "sie_embed")

    def __init__(
        self,
        vit: VisionTransformer,
        num_classes: int,
        *,
        num_cameras: int = 0,
        sie_coef: float = 3.0,
        jpm: bool = False,
        jpm_groups: int = 4,
        shift_num: int = 5,
        shuffle_groups: int = 2,
        rearrange: bool = True,
        **head_kwargs,
    ) -> None:
        super().__init__()
        if not isinstance(vit.patch_embed, OverlapPatchEmbed) or vit.cls_token is None or vit.pos_embed is None:
            raise ValueError("TransReID needs a timm VisionTransformer with a class token, learned pos_embed and "
                             "an OverlapPatchEmbed")
        if num_cameras < 0 or jpm_groups < 1 or shuffle_groups < 1:
            raise ValueError(f"need num_cameras >= 0, jpm_groups >= 1, shuffle_groups >= 1; got {num_cameras}, "
                             f"{jpm_groups}, {shuffle_groups}")
        self.backbone = vit
        embed_dim = vit.embed_dim
        self.num_cameras = num_cameras
        self.sie_coef = sie_coef
        self.uses_camids = num_cameras > 0
        if self.uses_camids:
            self.sie_embed = nn.Parameter(torch.zeros(num_cameras, 1, embed_dim))
            trunc_normal_(self.sie_embed, std=0.02)
        self.jpm = jpm
        self.jpm_groups = jpm_groups if jpm else 0
        self.shift_num = shift_num
        self.shuffle_groups = shuffle_groups
        self.rearrange = rearrange
        if jpm:
            num_patches = vit.patch_embed.num_patches
            if num_patches < jpm_groups:
                raise ValueError(f"JPM needs at least {jpm_groups} patches, the grid has {num_patches}")
            if rearrange and not 1 <= shift_num <= num_patches:
                raise ValueError(f"shift_num must be in [1, {num_patches}] (the number of patches), got {shift_num}")
            self.local_branch = nn.Sequential(copy.deepcopy(vit.blocks[-1]), copy.deepcopy(vit.norm))
        self.head = EmbeddingHead(embed_dim, num_classes, pool=None, **head_kwargs)
        self.local_heads = nn.ModuleList(
            EmbeddingHead(embed_dim, num_classes, pool=None, **head_kwargs) for _ in range(self.jpm_groups)
        )
        self.global_feature_dim = self.head.out_features
        self.feature_dim = self.global_feature_dim * (1 + self.jpm_groups)
        if jpm:  # TransReID: 0.5 on the global loss, 0.5 on the mean of the local losses
            self.feature_weights = self.logit_weights = (0.5,) + (0.5 / jpm_groups,) * jpm_groups

    def _embed(self, images: Tensor, camids: Tensor | None) -> Tensor:
        vit = self.backbone
        x = vit.patch_embed(images)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed
        if self.uses_camids:
            x = x + self.sie_coef * self.sie_embed[self._check_camids(camids, x.shape[0])]
        x = vit.pos_drop(x)
        x = vit.patch_drop(x)
        return vit.norm_pre(x)

    def _check_camids(self, camids: Tensor | None, batch: int) -> Tensor:
        if camids is None:
            raise ValueError(f"this ViT uses camera ids (SIE over {self.num_cameras} cameras): call model(images, "
                             "camids=...) with 0-based camera ids, or build it with num_cameras=0")
        camids = torch.as_tensor(camids, device=self.sie_embed.device).long().reshape(-1)
        if camids.numel() != batch:
            raise ValueError(f"got {camids.numel()} camera ids for a batch of {batch} images")
        if int(camids.min()) < 0 or int(camids.max()) >= self.num_cameras:
            raise ValueError(f"camera ids must be in [0, {self.num_cameras}), got range "
                             f"[{int(camids.min())}, {int(camids.max())}]")
        return camids

    def forward(self, images: Tensor, camids: Tensor | None = None, labels: Tensor | None = None):
        vit = self.backbone
        x = self._embed(images, camids)
        if not self.jpm:
            global_out = self.head(vit.norm(vit.blocks(x))[:, 0], labels)
            if not self.training:
                return global_out.inference
            return self._train_output([global_out.metric], [global_out.logits], global_out.global_feature,
                                      global_out.inference)

        x = vit.blocks[:-1](x)
        global_out = self.head(vit.norm(vit.blocks[-1](x))[:, 0], labels)
        num_patches = x.shape[1] - 1
        group_length = num_patches // self.jpm_groups
        patches = jigsaw_rearrange(x, self.shift_num, self.shuffle_groups) if self.rearrange else x[:, 1:]
        batch = x.shape[0]
        # all k groups through the local branch as one batch: [k * B, 1 + group_length, D]
        groups = patches[:, : group_length * self.jpm_groups].reshape(batch, self.jpm_groups, group_length, -1)
        groups = groups.transpose(0, 1).reshape(self.jpm_groups * batch, group_length, -1)
        cls = x[:, :1].repeat(self.jpm_groups, 1, 1)
        local_tokens = self.local_branch(torch.cat([cls, groups], dim=1))[:, 0].reshape(self.jpm_groups, batch, -1)
        local_outs = [head(local_tokens[i], labels) for i, head in enumerate(self.local_heads)]
        feat = torch.cat([global_out.inference] + [out.inference / self.jpm_groups for out in local_outs], dim=1)
        if not self.training:
            return feat
        outs = [global_out] + local_outs
        return self._train_output([o.metric for o in outs], [o.logits for o in outs], global_out.global_feature, feat)

    def classifier_weight(self) -> Tensor:
        """The global head's classifier rows [num_classes, D]."""
        return classifier_weight_of(self.head.classifier)


_TRANSREID_ARGUMENTS = frozenset(inspect.signature(TransReID).parameters) - {"vit", "num_classes", "head_kwargs"}


def _create_transreid(
    timm_name: str,
    num_classes: int,
    *,
    img_size: tuple[int, int] = (256, 128),
    stride: int = 12,
    pretrained: str | os.PathLike | None = None,
    pos_embed_interpolation: str = "bilinear",
    strict: bool = True,
    drop_path_rate: float = 0.1,
    **kwargs,
) -> TransReID:
    """TransReID keywords (``num_cameras``, ``sie_coef``, ``jpm``, ``jpm_groups``, ``shift_num``,
    ``shuffle_groups``, ``rearrange``) go to ``TransReID``, head keywords to its ``EmbeddingHead``s (retrieval
    before the BN, as TransReID), the rest to ``timm.create_model`` (e.g. ``attn_drop_rate``)."""
    head_kwargs = {"inference_feature": "before", **pop_kwargs(kwargs, HEAD_ARGUMENTS)}
    scene_kwargs = pop_kwargs(kwargs, SCENE_ARGUMENTS)
    model_kwargs = pop_kwargs(kwargs, _TRANSREID_ARGUMENTS)
    path = check_pretrained_arg(pretrained)
    vit = timm.create_model(
        timm_name,
        pretrained=False,
        num_classes=0,
        global_pool="",
        img_size=to_2tuple(img_size),
        embed_layer=partial(OverlapPatchEmbed, stride=stride),
        drop_path_rate=drop_path_rate,
        **kwargs,
    )
    trunc_normal_(vit.cls_token, std=0.02)  # TransReID's init (timm uses N(0, 1e-6))
    if path is not None:
        load_pretrained(vit, path, strict=strict, pos_embed_interpolation=pos_embed_interpolation)
    model = TransReID(vit, num_classes, **model_kwargs, **head_kwargs)
    return finish_model(model, **scene_kwargs)


@register_model(input_size_kwarg="img_size")
def vit_base_transreid(num_classes: int, **kwargs) -> TransReID:
    """ViT-B/16 (768-d), stride 12; HBReID MSMT17 row: ``img_size=(384, 128), num_cameras=15, jpm=True``."""
    return _create_transreid("vit_base_patch16_224", num_classes, **kwargs)


@register_model(input_size_kwarg="img_size")
def vit_small_transreid(num_classes: int, **kwargs) -> TransReID:
    """ViT-S/16 (384-d, DeiT-S dims), stride 12."""
    return _create_transreid("vit_small_patch16_224", num_classes, **kwargs)


@register_model(input_size_kwarg="img_size")
def vit_tiny_transreid(num_classes: int, **kwargs) -> TransReID:
    """ViT-Ti/16 (192-d), stride 12: the CPU-sized ViT (128 x 64 -> 10 x 5 tokens)."""
    return _create_transreid("vit_tiny_patch16_224", num_classes, **kwargs)

"""Local pretrained weights: safe loading, key clean-up, ViT position-embedding resizing, a fit report.

Why: nothing is downloaded at run time (GPU nodes may be offline, tests must be), so every builder takes
``pretrained=PATH``. A checkpoint is data, never code: ``torch.load(weights_only=True)`` or safetensors.
A checkpoint that does not fit stops with the differing keys and shapes instead of loading half silently.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from reidlab.utils import UnreadableFileError, read_torch_file

__all__ = [
    "HEAD_PREFIXES",
    "LoadReport",
    "check_pretrained_arg",
    "load_pretrained",
    "read_state_dict",
]

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# classification heads of the ImageNet models (timm/torchvision names); never part of a ReID backbone
HEAD_PREFIXES = ("fc.", "head.", "head_dist.", "classifier.", "pre_logits.", "last_linear.")
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict")
_MAX_LISTED = 20


def check_pretrained_arg(pretrained: object) -> Path | None:
    """Validate a builder's ``pretrained`` argument: None, or the path of an existing local weight file."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True or not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(
            f"pretrained must be a path to a local weight file ({', '.join(WEIGHT_SUFFIXES)}), got {pretrained!r}. "
            "reidlab never downloads weights: save them yourself (e.g. timm.create_model('resnet50', "
            "pretrained=True).state_dict() on a machine with network, or the IBN-Net release "
            "resnet50_ibn_a-d9d0bb7b.pth) into a folder such as ./pretrained/ and pass pretrained='pretrained/<file>'"
        )
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weight file {str(path)!r} does not exist; put the file there (nothing is downloaded) "
            "or pass pretrained=None to start from random weights"
        )
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict safely: safetensors, or a torch pickle with ``weights_only=True`` (cannot run code).

    Unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``) and strips DDP's ``module.``.
    """
    path = check_pretrained_arg(path)
    if path is None:
        raise ValueError("read_state_dict needs a path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        try:
            obj = read_torch_file(path)
        except UnreadableFileError as err:
            raise ValueError(
                f"cannot read {str(path)!r} as weights: {err} (re-save it as torch.save(model.state_dict(), path) "
                "or as .safetensors)"
            ) from None
    for _ in range(3):  # nested wrappers such as {"model": {"state_dict": ...}}
        if isinstance(obj, dict):
            wrapper = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if wrapper is not None:
                obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{str(path)!r} holds {type(obj).__name__}, not a state dict of named tensors")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"{str(path)!r} holds no tensors (keys: {sorted(obj)[:_MAX_LISTED]})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: loaded keys, skipped heads, resized tensors, and what did not fit."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped_heads: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        lines = [
            f"pretrained {self.path}: {len(self.loaded)} tensors loaded, {len(self.skipped_heads)} head tensors "
            f"skipped, resized: {', '.join(self.resized) or 'none'}"
        ]
        lines += _problem_lines(self)
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text


def _listed(items: list[str]) -> str:
    more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _problem_lines(report: LoadReport) -> list[str]:
    lines = []
    if report.mismatched:
        shapes = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in report.mismatched]
        lines.append(f"  shape mismatches ({len(shapes)}): {_listed(shapes)}")
    if report.missing:
        lines.append(f"  missing in checkpoint ({len(report.missing)}): {_listed(report.missing)}")
    if report.unexpected:
        lines.append(f"  not in model ({len(report.unexpected)}): {_listed(report.unexpected)}")
    return lines


def _resize_pos_embed(
    posemb: Tensor, target: Tensor, grid_size: tuple[int, int], num_prefix_tokens: int, interpolation: str
) -> Tensor:
    """Interpolate a square pretrained grid of position embeddings to the model's (possibly non-square) grid.

    ``bilinear`` without antialias equals TransReID's ``resize_pos_embed``; ``bicubic`` with antialias is timm's.
    """
    num_old = posemb.shape[1] - num_prefix_tokens
    side = math.isqrt(num_old)
    if side * side != num_old:
        raise ValueError(
            f"cannot resize pos_embed {list(posemb.shape)}: its {num_old} patch positions are not a square grid"
        )
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"pos_embed_interpolation must be 'bilinear' (TransReID) or 'bicubic' (timm), got {interpolation!r}")
    resized = resample_abs_pos_embed(
        posemb,
        new_size=list(grid_size),
        old_size=[side, side],
        num_prefix_tokens=num_prefix_tokens,
        interpolation=interpolation,
        antialias=interpolation == "bicubic",
    )
    if resized.shape != target.shape:
        raise ValueError(f"resized pos_embed has shape {list(resized.shape)} but the model needs {list(target.shape)}")
    return resized


def load_pretrained(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    pos_embed_interpolation: Literal["bilinear", "bicubic"] = "bilinear",
    print_fn: Callable[[str], None] | None = None,
) -> LoadReport:
    """Copy a local checkpoint (timm/torchvision/IBN-Net key names) into a backbone ``module`` in place.

    Classifier heads (``fc.``, ``head.``, ...) are skipped; a ViT ``pos_embed`` of another grid is resized to
    the module's ``patch_embed.grid_size``; a distilled DeiT's extra token is dropped; BN
    ``num_batches_tracked`` counters may be missing. Anything else that does not fit raises a ValueError
    listing keys and shapes (``strict=False`` loads what fits and returns the report instead).
    """
    state = read_state_dict(path)
    report = LoadReport(path=str(path))
    if any(k.startswith("backbone.") for k in state):
        # a reidlab model's own state dict: its body is under backbone., the rest (head., sie_embed, ...) belongs
        # to the ReID model around it, not to this module
        report.skipped_heads.extend(k for k in state if not k.startswith("backbone."))
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model_state = module.state_dict()

    if "dist_token" in state and "dist_token" not in model_state and "pos_embed" in state:
        # distilled DeiT: position 1 belongs to the distillation token (TransReID drops it the same way)
        pos = state.pop("pos_embed")
        state["pos_embed"] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
        state.pop("dist_token")
        report.skipped_heads.append("dist_token")

    to_load: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in model_state:
            if key.startswith(HEAD_PREFIXES):
                report.skipped_heads.append(key)
            else:
                report.unexpected.append(key)
            continue
        target = model_state[key]
        if key == "pos_embed" and value.shape != target.shape and hasattr(module, "patch_embed"):
            num_prefix = getattr(module, "num_prefix_tokens", 1)
            value = _resize_pos_embed(value, target, tuple(module.patch_embed.grid_size), num_prefix, pos_embed_interpolation)
            report.resized.append(f"pos_embed {list(state[key].shape)} -> {list(value.shape)} ({pos_embed_interpolation})")
        if value.shape != target.shape:
            report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
            continue
        to_load[key] = value
    report.missing = [k for k in model_state if k not in state and not k.endswith("num_batches_tracked")]

    if strict and not report.fits:
        raise ValueError(
            "\n".join(
                [f"checkpoint {str(path)!r} does not fit {type(module).__name__} "
                 f"({len(to_load)} of {len(model_state)} tensors match):"]
                + _problem_lines(report)
                + ["  (check the model name / IBN variant against the checkpoint, or pass strict=False to load what fits)"]
            )
        )
    with torch.no_grad():
        for key, value in to_load.items():
            model_state[key].copy_(value)
    report.loaded = sorted(to_load)
    if print_fn is not None:
        report.summary(print_fn)
    return report

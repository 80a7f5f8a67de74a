"""Model registry in the timm style: a plain dict from name to builder function.

Why: presets, notebooks and tests name models by string; one function per variant keeps every
variant's defaults visible in one place and lets tests parametrize over ``list_models()``.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

__all__ = ["build_model", "is_model", "list_models", "register_model"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name (``fn(num_classes, **kwargs) -> nn.Module``)."""
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model name {name!r} is registered twice")
    _model_entrypoints[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a shell-style wildcard (e.g. ``"mgn_*"``)."""
    names = sorted(_model_entrypoints)
    return fnmatch.filter(names, pattern) if pattern else names


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` identity classes (0: no classifier).

    Keyword arguments go to the variant's builder (e.g. ``pretrained=PATH``, ``img_size=(384, 128)``,
    ``num_cameras=15``, ``num_scenes=3``). Unknown names raise a ValueError listing the known ones.
    """
    if name not in _model_entrypoints:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0 builds no classifier), got {num_classes!r}")
    return _model_entrypoints[name](num_classes=num_classes, **kwargs)

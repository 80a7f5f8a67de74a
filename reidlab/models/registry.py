"""Model registry in the timm style: a plain dict from name to builder function.

Why: presets, notebooks and tests name models by string; one function per variant keeps every
variant's defaults visible in one place and lets tests parametrize over ``list_models()``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["ModelInfo", "build_model", "is_model", "list_models", "model_info", "register_model"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class ModelInfo:
    """What a variant needs from a training run besides its kwargs, declared where it is registered (so the
    engine never recognises a model by its name). ``input_size_kwarg``: the builder argument that takes the
    input size (H, W), for models that size themselves from it (ViT position embeddings); None otherwise."""

    input_size_kwarg: str | None = None


_model_info: dict[str, ModelInfo] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, input_size_kwarg: str | None = None):
    """Decorator: register ``fn`` under its function name (``fn(num_classes, **kwargs) -> nn.Module``), as
    ``@register_model`` or ``@register_model(input_size_kwarg="img_size")`` (see :class:`ModelInfo`)."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model name {name!r} is registered twice")
        _model_entrypoints[name] = fn
        _model_info[name] = ModelInfo(input_size_kwarg=input_size_kwarg)
        return fn

    return register if fn is None else register(fn)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a shell-style wildcard (e.g. ``"mgn_*"``)."""
    names = sorted(_model_entrypoints)
    return fnmatch.filter(names, pattern) if pattern else names


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def _check_name(name: str) -> None:
    if name not in _model_entrypoints:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def model_info(name: str) -> ModelInfo:
    """The registered :class:`ModelInfo` of ``name``."""
    _check_name(name)
    return _model_info[name]


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` identity classes (0: no classifier).

    Keyword arguments go to the variant's builder (e.g. ``pretrained=PATH``, ``img_size=(384, 128)``,
    ``num_cameras=15``, ``num_scenes=3``). Unknown names raise a ValueError listing the known ones.
    """
    _check_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0 builds no classifier), got {num_classes!r}")
    return _model_entrypoints[name](num_classes=num_classes, **kwargs)

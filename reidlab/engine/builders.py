"""Builders: a `TrainConfig` -> the library objects a run uses (dataset, model, loss), plus seeding and the
autocast dtype. Shared by the trainer, evaluation of checkpoints and run reloading."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reidlab.data import build_dataset
from reidlab.losses import CombinedLoss, build_loss
from reidlab.models import build_model, model_info

from .config import ConfigError, TrainConfig, check_paths
from .distributed import DistContext, barrier


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_dataset(config: TrainConfig, ctx: DistContext = DistContext()):
    """Build the dataset of a config. With `data.generate` (synthreid), rank 0 first makes sure SynthReID with
    the configured seed and knobs is at `data.root` (generate() reuses an identical one and refuses to replace another)."""
    check_paths(config)
    root = Path(config.data.root)
    if config.data.generate and config.data.name == "synthreid":
        if ctx.is_main:
            from reidlab.data import synth

            try:
                synth.generate(root, seed=config.data.synth_seed, **config.data.synth_knobs)
            except FileExistsError as error:
                raise ConfigError(f"data.root: {error}; or set data.generate=false to train on the data there") from None
        barrier(ctx)
    try:
        return build_dataset(config.data.name, root, **config.data.dataset_kwargs)
    except ValueError as error:  # the data layer's bad-input errors (names, lists, meta.json), one line on the CLI
        raise ConfigError(f"data.root={root}: {error}") from None


def build_reid_model(config: TrainConfig, dataset) -> nn.Module:
    """The model of a config for a dataset: identity classes, cameras and scenes come from the data."""
    kwargs = dict(config.model.kwargs)
    size_kwarg = model_info(config.model.name).input_size_kwarg  # e.g. ViTs size their position embeddings
    if size_kwarg:
        kwargs.setdefault(size_kwarg, tuple(config.data.size))
    if config.model.camera_embedding:
        kwargs["num_cameras"] = dataset.num_cameras
    if config.model.pretrained is not None:
        kwargs["pretrained"] = config.model.pretrained
    if config.scene.enabled:
        if dataset.num_scenes < 2:
            raise ConfigError(
                f"scene.enabled=true needs at least 2 scenes, but {config.data.name} has {dataset.num_scenes}; "
                "choose another data.dataset_kwargs.sceneid or set scene.enabled=false"
            )
        kwargs["num_scenes"] = dataset.num_scenes
        kwargs["scene_lambda"] = config.scene.grl_lambda if config.scene.ramp_epochs <= 0 else 0.0
    return build_model(config.model.name, dataset.num_train_pids, **kwargs)


def build_reid_loss(config: TrainConfig, model: nn.Module) -> ModelWeightedLoss:
    """`reidlab.losses.build_loss` from the config, with the model's published per-group weights."""
    loss = build_loss(
        ce_weight=config.loss.ce_weight,
        label_smoothing=config.loss.label_smoothing,
        metric=None if config.loss.metric == "none" else config.loss.metric,
        metric_weight=config.loss.metric_weight,
        temperature=config.loss.temperature,
        margin=config.loss.margin,
        gamma=config.loss.gamma,
        hard_mining=config.loss.hard_mining,
        normalize=config.loss.normalize,
        scene_weight=config.scene.weight if config.scene.enabled else 0.0,
        gather=config.loss.gather,
    )
    return ModelWeightedLoss(loss, {"features": model.feature_weights, "logits": model.logit_weights})


class ModelWeightedLoss(nn.Module):
    """Applies a model's per-group loss weights (MGN: 0.2 per metric group, 0.125 per CE head; TransReID JPM:
    0.5 global + 0.5 / k per local group) to the terms of a `CombinedLoss`.

    Uniform weights become a mean over the groups times their sum; non-uniform ones split the term into
    one term per group (outputs `source_g`), logged as `name_g` plus their weighted mean under `name`.
    """

    def __init__(self, loss: CombinedLoss, group_weights: dict[str, Sequence[float]]) -> None:
        super().__init__()
        self.split: dict[str, tuple[str, int]] = {}  # source -> (term name, number of groups)
        terms = []
        for term in loss.terms:
            weights = group_weights.get(term.source)
            if weights is None:
                terms.append(term)
            elif len(set(weights)) == 1:
                terms.append(replace(term, group_reduction="mean", weight=term.weight * sum(weights)))
            else:
                self.split[term.source] = (term.name, len(weights))
                for g, w in enumerate(weights):
                    terms.append(replace(term, name=f"{term.name}_{g}", source=f"{term.source}_{g}", weight=term.weight * w))
        self.combined = CombinedLoss(terms)
        self.weights = {t.name: t.weight for t in terms}

    def forward(self, outputs: dict, labels: torch.Tensor, scene_labels: torch.Tensor | None = None):
        if self.split:
            outputs = dict(outputs)
            for source, (_, groups) in self.split.items():
                if len(outputs[source]) != groups:
                    raise ValueError(f"model output {source!r} has {len(outputs[source])} groups, expected {groups}")
                outputs.update({f"{source}_{g}": value for g, value in enumerate(outputs[source])})
        total, logs = self.combined(outputs, labels, scene_labels)
        for name, groups in self.split.values():
            parts = [f"{name}_{g}" for g in range(groups) if f"{name}_{g}" in logs]
            if parts:
                weight = sum(self.weights[p] for p in parts)
                logs[name] = sum(self.weights[p] * logs[p] for p in parts) / weight
        return total, logs


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run of `config` uses on `device` (None: full precision), for training and extraction."""
    if device.type != "cuda" or config.optim.amp == "none":
        return None
    return torch.bfloat16 if config.optim.amp == "bf16" else torch.float16

"""Builders: a `TrainConfig` -> the library objects a run uses (dataset, model, loss, sampler, optimizer), plus
seeding and the autocast dtype. Shared by the trainer, evaluation of checkpoints and run reloading."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reidlab.data import build_dataset, dataset_class
from reidlab.data.samplers import HardBatchSampler, PKSampler
from reidlab.losses import CombinedLoss, build_loss
from reidlab.models import build_model, model_info

from .config import ConfigError, TrainConfig, check_paths
from .distributed import DistContext, barrier


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_dataset(config: TrainConfig, ctx: DistContext = DistContext(), training: bool = True):
    """Build the dataset of a config and check that its splits can be used (`check_splits`), before any image
    is read. With `data.generate` (synthreid), rank 0 first makes sure SynthReID with the configured seed and
    knobs is at `data.root` (generate() reuses an identical one and refuses to replace another)."""
    check_paths(config)
    root = Path(config.data.root)
    generate = dataset_class(config.data.name).generate
    if config.data.generate and generate is not None:
        if ctx.is_main:
            try:
                generate(root, seed=config.data.synth_seed, **config.data.synth_knobs)
            except FileExistsError as error:
                raise ConfigError(f"data.root: {error}; or set data.generate=false to train on the data there") from None
        barrier(ctx)
    try:
        dataset = build_dataset(config.data.name, root, **config.data.dataset_kwargs)
    except ValueError as error:  # the data layer's bad-input errors (names, lists, meta.json), one line on the CLI
        raise ConfigError(f"data.root={root}: {error}") from None
    check_splits(dataset, config, training)
    return dataset


def check_splits(dataset, config: TrainConfig, training: bool = True) -> None:
    """ConfigError when a split the run needs is empty, or when no query has a true match in the gallery (same
    identity, another camera: the Market protocol scores nothing else). VehicleID draws its own galleries."""
    where = f"data.root={config.data.root} ({config.data.name})"
    if training and not dataset.train:
        raise ConfigError(f"{where}: the training split is empty; check the folder layout "
                          f"(`reidlab summary {config.data.name} ROOT` counts each split)")
    if not dataset.query or not dataset.gallery:
        raise ConfigError(f"{where}: {len(dataset.query)} query and {len(dataset.gallery)} gallery images, but "
                          f"evaluation needs both; check the folder layout (`reidlab summary {config.data.name} ROOT`)")
    if dataset.protocol != "market":  # e.g. VehicleID draws its own galleries
        return
    cameras_of: dict[int, set[int]] = {}
    for record in dataset.gallery:
        cameras_of.setdefault(record.pid, set()).add(record.camid)
    if not any(record.pid >= 0 and cameras_of.get(record.pid, set()) - {record.camid} for record in dataset.query):
        raise ConfigError(f"{where}: no query identity appears in the gallery under another camera, so there is "
                          "nothing to score; check that query and gallery come from the same test set")

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
        kwargs["scene_objective"] = config.scene.objective
        kwargs["scene_strength"] = config.scene.strength if config.scene.ramp_epochs <= 0 else 0.0
    return build_model(config.model.name, dataset.num_train_pids, **kwargs)


def build_reid_loss(config: TrainConfig, model: nn.Module) -> CombinedLoss:
    """`reidlab.losses.build_loss` from the config, with the model's published per-group weights."""
    return build_loss(
        ce_weight=config.loss.ce_weight,
        label_smoothing=config.loss.label_smoothing,
        metric=None if config.loss.metric == "none" else config.loss.metric,
        metric_weight=config.loss.metric_weight,
        temperature=config.loss.temperature,
        margin=config.loss.margin,
        gamma=config.loss.gamma,
        hard_mining=config.loss.hard_mining,
        normalize=config.loss.normalize,
        scene_objective=config.scene.objective if config.scene.enabled else None,
        gather=config.loss.gather,
        group_weights={"features": model.feature_weights, "logits": model.logit_weights},
        metric_kwargs=config.loss.kwargs,
    )


def build_sampler(config: TrainConfig, dataset, ctx: DistContext = DistContext()) -> PKSampler:
    """The P x K batch sampler of a config over the dataset's training records (this rank's share)."""
    cfg = config.sampler
    pids = [record.pid for record in dataset.train]
    common = dict(seed=config.seed, rank=ctx.rank, world_size=ctx.world_size)
    if cfg.name == "hard":
        return HardBatchSampler(pids, cfg.p, cfg.k, warmup_epochs=cfg.hard_warmup_epochs, plan=cfg.hard_plan, **common)
    camids = [record.camid for record in dataset.train] if cfg.camera_balanced else None
    return PKSampler(pids, cfg.p, cfg.k, camids=camids, **common)


def build_optimizer(config: TrainConfig, model: nn.Module, loss_fn: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over the model's trainable parameters (biases in their own group) and any
    learnable parameters of the loss."""
    cfg = config.optim
    decay_bias = cfg.weight_decay if cfg.weight_decay_bias is None else cfg.weight_decay_bias
    weights, biases = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (biases if name.endswith(".bias") else weights).append(param)
    groups = [{"params": weights, "weight_decay": cfg.weight_decay}]
    if biases:
        groups.append({"params": biases, "weight_decay": decay_bias, "lr": cfg.lr * cfg.bias_lr_factor})
    params = [p for p in loss_fn.parameters() if p.requires_grad]
    if params:  # a loss with learnable parameters
        groups.append({"params": params, "weight_decay": cfg.weight_decay})
    if cfg.name == "sgd":
        # not fused: torch's fused SGD fails when the first step leaves some grads None (frozen backbone)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    optimizer_cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    try:  # the fused kernel: one pass over the parameters (4x faster than the loop on CPU)
        return optimizer_cls(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch or a device without it
        return optimizer_cls(groups, lr=cfg.lr)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run of `config` uses on `device` (None: full precision), for training and extraction."""
    if device.type != "cuda" or config.optim.amp == "none":
        return None
    return torch.bfloat16 if config.optim.amp == "bf16" else torch.float16

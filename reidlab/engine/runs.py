"""Finished runs: evaluating a checkpoint, rebuilding a run's model and dataset, comparing saved configs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from .builders import build_reid_model, prepare_dataset
from .checkpoint import load_checkpoint
from .config import ConfigError, EvalConfig, TrainConfig, config_from_dict, config_to_dict
from .distributed import cleanup, init_distributed, resolve_device
from .evaluator import run_evaluation

PrintFn = Callable[[str], object] | None


def config_differences(saved: dict, current: dict, prefix: str = "") -> set[str]:
    """Dotted keys whose values differ between two config dicts (``config_to_dict`` form); free-form mappings
    (model kwargs, dataset kwargs, augmentation, SynthReID knobs) compare as one value."""
    keys = set()
    for key in set(saved) | set(current):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key not in ("kwargs", "dataset_kwargs", "aug", "synth_knobs"):
            keys |= config_differences(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            keys.add(f"{prefix}{key}")
    return keys


def _without_pretrained(config: TrainConfig) -> TrainConfig:
    """A finished run's config for rebuilding it: its weights come from a checkpoint, so the pretrained file it
    started from is neither loaded nor required to exist any more."""
    return replace(config, model=replace(config.model, pretrained=None))


def _trained_settings(state: dict, config: TrainConfig) -> dict[str, Any]:
    """The settings that shape the network's forward pass (model name, kwargs, camera embedding, input size)
    with which a training checkpoint was made, where `config` sets them otherwise."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return {}
    shaping = {"model.name", "model.kwargs", "model.camera_embedding", "data.size"}
    keys = sorted(config_differences(saved, config_to_dict(config)) & shaping)
    return {key: saved.get(key.split(".")[0], {}).get(key.split(".")[1]) for key in keys}


def _load_model(config: TrainConfig, dataset, checkpoint: str | os.PathLike, device: torch.device,
                print_fn: PrintFn = None) -> tuple[nn.Module, dict]:
    """(the model of `config` with the checkpoint's weights, in eval mode; the config the checkpoint was trained
    with, {} when it holds none)."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    weights = state["model"] if "model" in state and isinstance(state["model"], dict) else state
    trained = ", ".join(f"{k}={v!r}" for k, v in _trained_settings(state, config).items())
    model = build_reid_model(_without_pretrained(config), dataset)
    own = model.state_dict()
    left_out = sorted(k for k, v in weights.items() if model.is_training_only(k)
                      and (k not in own or getattr(own[k], "shape", None) != getattr(v, "shape", None)))
    weights = {k: v for k, v in weights.items() if k not in left_out}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not model.is_training_only(k)]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    except RuntimeError as error:
        hint = (f"; it was trained with {trained}: pass those overrides, or -c OUTPUT_DIR/config.yaml of its run"
                if trained else "")
        raise ConfigError(
            f"checkpoint {checkpoint} does not fit model {config.model.name!r} on {config.data.name}{hint}: {error}"
        ) from None
    if trained and print_fn is not None:
        print_fn(f"warning: {checkpoint} was trained with {trained}; evaluating with this config's values instead")
    if left_out and print_fn is not None:
        heads = sorted({"scene adversary" if k.startswith("scene_adversary") else "identity classifier" for k in left_out})
        print_fn(f"loaded the backbone and embedding neck of {checkpoint}; left out its {' and '.join(heads)} "
                 f"({len(left_out)} tensors, trained for another dataset; inference does not use them)")
    saved = state.get("config")
    return model.to(device).eval(), saved if isinstance(saved, dict) else {}


def eval_result_path(checkpoint: str | os.PathLike, config: TrainConfig, trained_data: dict | None = None) -> Path:
    """Where `evaluate_checkpoint` writes its metrics: `<checkpoint>.eval[.on-DATA][.flip][.rerank].json`, so
    that evaluations with other options never overwrite each other: `best.pt.eval.json`,
    `best.pt.eval.rerank.json`, `best.pt.eval.rerank-k1=30.json` (re-ranking parameters off their defaults),
    `best.pt.eval.on-dukemtmc-DukeMTMC-reID.json` (another dataset than `trained_data`, the checkpoint's
    training data settings: its name and the folder's)."""
    options, default = config.eval, EvalConfig()
    parts = ["eval"]
    if trained_data is not None and (trained_data.get("name"), _resolved(trained_data.get("root"))) != (
            config.data.name, _resolved(config.data.root)):
        parts.append(f"on-{config.data.name}-{Path(config.data.root or '').name}")
    if options.flip:
        parts.append("flip")
    if options.rerank:
        changed = [f"{short}={getattr(options, key)}" for key, short in
                   (("rerank_k1", "k1"), ("rerank_k2", "k2"), ("rerank_lambda", "lambda"))
                   if getattr(options, key) != getattr(default, key)]
        parts.append("-".join(["rerank", *changed]))
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.name}.{'.'.join(parts)}.json")


def _resolved(root: str | None) -> str | None:
    return None if root is None else str(Path(root).resolve())


def evaluate_checkpoint(config: TrainConfig, checkpoint: str | os.PathLike | None = None, print_fn: PrintFn = print) -> dict[str, Any]:
    """Evaluate a checkpoint (default: `config.checkpoint`) on the config's query/gallery; the metrics are also
    written next to it, in a file named by the evaluation options (`eval_result_path`)."""
    checkpoint = checkpoint or config.checkpoint
    if checkpoint is None:
        raise ConfigError("no checkpoint to evaluate: pass checkpoint=PATH")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    created = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.device)
    try:
        dataset = prepare_dataset(_without_pretrained(config), ctx, training=False)
        model, trained_config = _load_model(config, dataset, checkpoint, ctx.device, print_fn if ctx.is_main else None)
        metrics = run_evaluation(model, dataset, config, ctx)
    finally:
        if created:
            cleanup(ctx)
    metrics["checkpoint"] = str(checkpoint)
    out = eval_result_path(checkpoint, config, trained_config.get("data"))
    if ctx.is_main:
        out.write_text(json.dumps(metrics, indent=2))
        if print_fn is not None:
            print_fn(
                f"{checkpoint}: mAP {metrics['mAP']:.1%}, rank-1 {metrics.get('rank1', float('nan')):.1%}"
                + (f", mINP {metrics['mINP']:.1%}" if "mINP" in metrics else "")
                + f"{' (re-ranked)' if config.eval.rerank else ''}; written to {out}"
            )
    return metrics


class TrainedRun(NamedTuple):
    """A finished run, rebuilt: the model (eval mode, weights loaded), its config and its dataset."""

    model: nn.Module
    config: TrainConfig
    dataset: Any
    checkpoint: Path


def load_trained(output_dir: str | os.PathLike, checkpoint: str | os.PathLike = "last", device: str = "cpu",
                 dataset: Any = None) -> TrainedRun:
    """Rebuild a trained run from OUTPUT_DIR: its config.yaml and `checkpoints/<checkpoint>.pt`: `last` (the end
    of training, the default), `epoch_003` (with `save_every`), or a file path. `best`, the epoch of highest
    *test* mAP, must be asked for: a model chosen by its test score leaks the test set, so use it only to look
    at that choice; a run without best.pt gives last.pt (the returned `checkpoint` names the file loaded).
    `dataset`: the run's dataset, already prepared (loading many checkpoints of one run reads its folder once)."""
    import yaml

    output_dir = Path(output_dir)
    config_path = output_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {str(output_dir)!r} the output_dir of a training run?")
    config = config_from_dict(yaml.safe_load(config_path.read_text()))
    path = Path(checkpoint)
    if not path.is_file():
        path = output_dir / "checkpoints" / f"{checkpoint}.pt"
        if not path.is_file() and checkpoint == "best":
            path = output_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint!r} in {output_dir / 'checkpoints'}")
    if dataset is None:
        dataset = prepare_dataset(_without_pretrained(config))
    model, _ = _load_model(config, dataset, path, resolve_device(device))
    return TrainedRun(model, config, dataset, path)


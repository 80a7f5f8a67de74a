"""Finished runs: the run folder (`RunDir`), evaluating a checkpoint, rebuilding a run's model and dataset (`TrainedRun`),
comparing saved configs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from reidlab.evaluation import extract_features
from reidlab.utils import atomic_write
from reidlab.utils.lease import LockHeld, exclusive_lock

from .builders import autocast_dtype, build_reid_model, prepare_dataset
from .checkpoint import load_checkpoint
from .config import ConfigError, EvalConfig, TrainConfig, config_from_dict, config_to_dict
from .distributed import cleanup, init_distributed, resolve_device
from .evaluator import eval_loader, run_evaluation

PrintFn = Callable[[str], object] | None


class RunDir:
    """A training run's folder: the one place that names its files. The trainer writes through it; the study,
    the explorer and the notebooks read through it.

    ``config.yaml`` (the resolved config), ``metrics.json`` (the final metrics: the run has finished),
    ``metrics.jsonl`` (the log), ``provenance.json``, ``train.lock`` (locked while a process trains here),
    ``checkpoints/`` with ``last.pt``, ``best.pt`` (highest *test* mAP: leaky, asked for by name only) and
    ``epoch_NNN.pt`` (``save_every``), ``tensorboard/``."""

    CONFIG, METRICS, LOG, PROVENANCE = "config.yaml", "metrics.json", "metrics.jsonl", "provenance.json"
    CHECKPOINTS, TENSORBOARD, LOCK = "checkpoints", "tensorboard", "train.lock"
    # what a training run writes; clear() removes these and leaves the rest (figures, notebooks, sweep records)
    TRAINING_FILES = (CHECKPOINTS, METRICS, LOG, CONFIG, PROVENANCE, TENSORBOARD)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def provenance_path(self) -> Path:
        return self.path / self.PROVENANCE

    @property
    def lock_path(self) -> Path:
        """Locked (``flock``) by the process training here; it names that process."""
        return self.path / self.LOCK

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    def checkpoint(self, name: str | int = "last") -> Path:
        """``checkpoints/<name>.pt``: ``last``, ``best``, ``epoch_003``, or an epoch number."""
        return self.checkpoint_dir / (f"epoch_{name:03d}.pt" if isinstance(name, int) else f"{name}.pt")

    def epoch_checkpoints(self) -> dict[int, Path]:
        """Epoch -> its checkpoint (runs trained with ``save_every``), in epoch order; {} without any."""
        found = {}
        for path in self.checkpoint_dir.glob("epoch_*.pt"):
            number = path.stem.removeprefix("epoch_")
            if number.isdigit():
                found[int(number)] = path
        return dict(sorted(found.items()))

    def is_finished(self) -> bool:
        """The trainer writes metrics.json last, once the run has finished."""
        return self.metrics_path.is_file()

    def status(self) -> str:
        """``finished``, ``interrupted`` (a last checkpoint, no final metrics: ``resume=auto`` continues it) or
        ``empty``."""
        if self.is_finished():
            return "finished"
        return "interrupted" if self.checkpoint().is_file() else "empty"

    def metrics(self) -> dict[str, Any]:
        """The final metrics; FileNotFoundError naming the folder when the run has not finished."""
        if not self.is_finished():
            raise FileNotFoundError(f"{self.path} holds no finished training run (no {self.METRICS}; {self.status()})")
        return json.loads(self.metrics_path.read_text())

    def config(self) -> TrainConfig:
        """The run's resolved config."""
        import yaml

        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.config_path} not found: is {str(self.path)!r} the output_dir of a training run?")
        return config_from_dict(yaml.safe_load(self.config_path.read_text()))

    def clear(self) -> list[str]:
        """Delete the training run here (checkpoints, metrics, log, config) so a new one can train in this folder;
        other files stay. Returns the names removed. A run that another process is training is left alone: a
        ConfigError names that process."""
        import shutil

        if not self.path.is_dir():
            return []
        removed = []
        try:  # a trainer made the lock file; without one, nobody trains here
            with exclusive_lock(self.lock_path, wait=False) if self.lock_path.exists() else contextlib.nullcontext():
                for name in self.TRAINING_FILES:
                    path = self.path / name
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
                    else:
                        continue
                    removed.append(name)
        except LockHeld as held:
            raise ConfigError(f"{self.path} is being trained by {held.holder or 'another process'}; deleting its run "
                              "(resume = False) must wait for it to end, or choose another output_dir") from None
        return removed


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
        atomic_write(out, json.dumps(metrics, indent=2))
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

    def features(self, split: str | Sequence[Any] = "query", flip: bool | None = None,
                 normalize: bool = True) -> tuple[torch.Tensor, Any, Any]:
        """(features, pids, camids) of a split of the run's dataset (``query``, ``gallery``, ``train``) or of given
        records, as the run's evaluation sees them: its test transform, its AMP, flip averaging as ``eval.flip``
        unless ``flip`` says otherwise; ``normalize=False`` gives the raw features (what a scene adversary saw)."""
        records = getattr(self.dataset, split) if isinstance(split, str) else split
        device = next(self.model.parameters()).device
        return extract_features(self.model, eval_loader(records, self.config), flip=self.config.eval.flip if flip is None
                                else flip, amp=autocast_dtype(self.config, device) or False, normalize=normalize)


def load_trained(output_dir: str | os.PathLike, checkpoint: str | os.PathLike = "last", device: str = "cpu",
                 dataset: Any = None) -> TrainedRun:
    """Rebuild a trained run from OUTPUT_DIR: its config.yaml and `checkpoints/<checkpoint>.pt`: `last` (the end
    of training, the default), `epoch_003` (with `save_every`), or a file path. `best`, the epoch of highest
    *test* mAP, must be asked for: a model chosen by its test score leaks the test set, so use it only to look
    at that choice; a run without best.pt gives last.pt (the returned `checkpoint` names the file loaded).
    `dataset`: the run's dataset, already prepared (loading many checkpoints of one run reads its folder once)."""
    run = RunDir(output_dir)
    config = run.config()
    path = Path(checkpoint)
    if not path.is_file():
        path = run.checkpoint(checkpoint)
        if not path.is_file() and checkpoint == "best":
            path = run.checkpoint("last")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint!r} in {run.checkpoint_dir}")
    if dataset is None:
        dataset = prepare_dataset(_without_pretrained(config))
    model, _ = _load_model(config, dataset, path, resolve_device(device))
    return TrainedRun(model, config, dataset, path)


"""Trainer, checkpoints and distributed helpers.

Modules: ``config`` (YAML -> dataclasses), ``builders`` (config -> dataset, model, loss), ``trainer`` (the loop),
``evaluator`` (metrics during training), ``runs`` (finished runs: evaluate, reload), ``checkpoint``,
``distributed``, ``logging``, ``provenance``, ``schedulers``.

Notebook/CLI entry points: `load_config(preset_or_path, overrides)`, `train(config)`,
`evaluate_checkpoint(config, checkpoint)`, `load_trained(output_dir)` (and its `.features(split)`); `RunDir`, the
run folder; `Callback` for per-epoch hooks; `TrainingInterrupted`, raised after a signal stopped a run; `read_metrics(output_dir)` for the logged curves.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SamplerConfig,
    SceneConfig,
    TrainConfig,
    list_presets,
    load_config,
    parse_overrides,
)
from .builders import autocast_dtype
from .distributed import DistContext, init_distributed
from .logging import read_metrics
from .runs import RunDir, TrainedRun, eval_result_path, evaluate_checkpoint, load_trained
from .schedulers import build_scheduler, lr_factor
from .callbacks import Callback, HardBatchMining, SceneStrengthRamp, bound_hooks, training_callbacks
from .trainer import NonFiniteLossError, Trainer, TrainingInterrupted, train

__all__ = [
    "Callback",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DistContext",
    "EvalConfig",
    "HardBatchMining",
    "LossConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "RunDir",
    "SamplerConfig",
    "SceneConfig",
    "SceneStrengthRamp",
    "TrainConfig",
    "TrainedRun",
    "Trainer",
    "TrainingInterrupted",
    "autocast_dtype",
    "bound_hooks",
    "build_scheduler",
    "eval_result_path",
    "evaluate_checkpoint",
    "init_distributed",
    "list_presets",
    "load_checkpoint",
    "load_config",
    "load_trained",
    "lr_factor",
    "parse_overrides",
    "read_metrics",
    "save_checkpoint",
    "train",
    "training_callbacks",
]

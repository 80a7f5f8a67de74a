"""Training configuration: small dataclasses read from YAML presets, with `key=value` overrides.

Configs live only at the CLI/notebook edge; the trainer turns them into plain keyword arguments for the
library objects. A preset is a YAML file in `reidlab/configs/` (or any path); it may name a `base:` preset
whose values it extends. Overrides use dotted keys (`data.root=/x`, `optim.lr=1e-3`) and are typed with
`yaml.safe_load`, so `epochs=5` is an int and `eval.rerank=true` a bool. Unknown keys and wrong types
raise `ConfigError` naming the key and the valid choices.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any, Union

import yaml

from reidlab.data import dataset_class, list_datasets
from reidlab.losses import METRIC_LOSSES
from reidlab.models import is_model, list_models
from reidlab.models.scene import SCENE_OBJECTIVES
from reidlab.utils import atomic_write, parse_key_values

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config key, value or referenced file is wrong; the message says which and how to fix it."""


def _choices(*values: str) -> dict:
    return {"choices": values}


def _registered(names: Callable[[], Iterable[str]]) -> dict:
    """Choices read from a registry when a value is checked, so that what is registered later counts too."""
    return {"choices": names}


@dataclass
class DataConfig:
    """Which dataset, where, and how images are loaded."""

    name: str = "synthreid"
    root: str | None = None
    size: list[int] = field(default_factory=lambda: [128, 64])  # [height, width]
    num_workers: int = 2
    cache_images: bool = False  # decode the training images once and keep them in memory (CPU runs)
    skip_corrupt: bool = False  # leave unreadable images out (logged, counted in metrics.json) instead of stopping
    test_batch_size: int = 128
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_dataset(...) arguments
    aug: dict[str, Any] = field(default_factory=dict)  # extra build_transforms(is_train=True, ...) arguments
    generate: bool = False  # synthreid only: generate the benchmark at `root` when it is not there yet
    synth_seed: int = 0
    synth_knobs: dict[str, Any] = field(default_factory=dict)  # reidlab.data.synth.generate(...) knobs


@dataclass
class ModelConfig:
    """Which network (reidlab.models registry name) and how to initialise and run it."""

    name: str = "resnet18_ibn_a"
    pretrained: str | None = None  # local .pth/.safetensors file; nothing is downloaded
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_model(...) arguments
    camera_embedding: bool = False  # pass num_cameras=<dataset cameras> (TransReID side-information embedding)
    sync_bn: bool = False
    # NHWC memory format. None: on CUDA only. On CPU it depends on the model: resnet18_tiny trains ~1.5x faster,
    # resnet18_ibn_a ~10% slower (its instance norms); the CPU study profiles switch it on
    channels_last: bool | None = None
    freeze_backbone_iters: int = 0  # train only the heads for the first N iterations


@dataclass
class LossConfig:
    """Identity cross-entropy plus one metric loss (weight 0 switches a term off); reidlab.losses.build_loss."""

    ce_weight: float = 1.0
    label_smoothing: float = 0.1
    metric: str = field(default="adasp", metadata=_registered(lambda: (*METRIC_LOSSES, "none")))  # registered losses
    metric_weight: float = 1.0
    temperature: float = 0.04  # adasp / sp-h / sp-lh
    margin: float | None = None  # triplet (0 = soft margin) / circle; None = the loss's default (0.3 / 0.25)
    gamma: float = 128.0  # circle
    hard_mining: bool = True  # triplet
    normalize: bool = False  # triplet on cosine instead of Euclidean distances
    gather: bool = False  # all-gather embeddings across DDP ranks before the metric loss
    kwargs: dict[str, Any] = field(default_factory=dict)  # more options of the metric loss (register_metric_loss)


@dataclass
class OptimConfig:
    """Optimizer and per-iteration learning-rate schedule."""

    name: str = field(default="adam", metadata=_choices("adam", "adamw", "sgd"))
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    bias_lr_factor: float = 1.0
    weight_decay_bias: float | None = None  # None: same as weight_decay
    scheduler: str = field(default="cosine", metadata=_choices("cosine", "multistep", "flat_cosine", "constant"))
    warmup_epochs: float = 0.0
    warmup_iters: int = 0  # overrides warmup_epochs when > 0
    warmup_factor: float = 0.01  # lr multiplier at the first iteration, rising linearly to 1
    milestones: list[int] = field(default_factory=list)  # multistep, in epochs
    gamma: float = 0.1  # multistep decay factor
    flat_epochs: float = 0.0  # flat_cosine: constant lr until this epoch, cosine after
    min_lr_factor: float = 0.0  # cosine floor as a fraction of lr
    clip_grad_norm: float | None = None
    amp: str = field(default="none", metadata=_choices("none", "bf16", "fp16"))  # CUDA only


@dataclass
class SamplerConfig:
    """Batch composition: P identities x K images."""

    name: str = field(default="pk", metadata=_choices("pk", "hard"))
    p: int = 16
    k: int = 4
    hard_warmup_epochs: int = 1  # hard: random P x K for these first epochs
    # hard: "rounds" keeps the random plan's epoch length; "single_round" is HBReID's one round per epoch
    # (every class once; shorter epochs). reidlab.data.samplers.hard explains both
    hard_plan: str = field(default="rounds", metadata=_choices("rounds", "single_round"))
    camera_balanced: bool = False  # pk: each identity's K images dealt round-robin over its cameras


@dataclass
class SceneConfig:
    """Adversarial scene removal (HBReID): a scene classifier on the retrieval feature, and the push that makes
    the backbone hide the scene from it (reidlab.models.scene explains the objectives)."""

    enabled: bool = False
    # moments: every scene gets the same mean feature (the default: the only one that lowers a fresh probe's
    # scene accuracy, docs/design.md); reverse: HBReID's gradient reversal of the classifier's cross-entropy;
    # confusion: towards a uniform scene posterior; entropy: towards a maximum-entropy one
    objective: str = field(default="moments", metadata=_choices(*SCENE_OBJECTIVES))
    strength: float = 1.0  # scale of every gradient the adversary sends into the backbone, reached after the ramp
    ramp_epochs: float = 0.0  # linear ramp of the strength from 0 over this many epochs (0 = constant)


@dataclass
class EvalConfig:
    """Evaluation on query/gallery during and after training."""

    every: int = 1  # epochs between evaluations; 0 = only at the end
    rerank: bool = False  # k-reciprocal re-ranking (Zhong et al.) with k1, k2, lambda below
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    flip: bool = False  # average the features of the image and its mirror
    max_rank: int = 50


@dataclass
class TrainConfig:
    """One training run. Paths are relative to the working directory."""

    preset: str = ""
    output_dir: str = "runs/default"
    seed: int = 0
    epochs: int = 10
    # true: continue the run in output_dir (an error when it has no checkpoint); auto: continue it when there is
    # one, else start fresh (a requeued cluster job); false: start fresh (an error when a run is there)
    resume: bool | str = field(default=False, metadata=_choices("auto"))
    checkpoint: str | None = None  # `reidlab eval`: the checkpoint to evaluate
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only)
    max_iters_per_epoch: int | None = None  # cap the epoch length (quick runs and tests)
    log_every: int = 10  # iterations between the log's step lines
    save_every: int = 0  # also keep checkpoints/epoch_NNN.pt every N epochs (0 = only last and best)
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = False  # needs the tensorboard package
    threads: int | None = None  # torch CPU threads (None: torch default)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------------------- presets


def list_presets() -> list[str]:
    """Names of the presets shipped in reidlab/configs (files starting with `_` are shared bases)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_"))


def _resolve_preset(preset_or_path: str | os.PathLike) -> Path:
    text = str(preset_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = CONFIG_DIR / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    if path.suffix in (".yaml", ".yml"):
        raise FileNotFoundError(f"config file {path} does not exist")
    raise ConfigError(f"unknown preset {text!r}; presets: {', '.join(list_presets())} (or give a .yaml path)")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise ConfigError(f"preset {path} inherits from itself through 'base:'")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / base) if str(base).endswith((".yaml", ".yml")) else _resolve_preset(base)
    return _deep_merge(_read_yaml(base_path, seen + (path,)), data)


def _deep_merge(base: dict, update: dict) -> dict:
    """Nested dicts merge key by key; everything else (lists included) is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# -------------------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(key: str, value: Any, tp: Any, choices: tuple | None) -> Any:
    """Return `value` converted to `tp` (int -> float, list -> list of the item type) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg, choices)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if tp is Any:
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list of {_type_name(item_tp)}, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item_tp, None) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} expects a float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} expects an int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"config key {key!r} has invalid value {value!r}; choices: {', '.join(choices)}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key!r}")  # a bug in this module


# keys of earlier releases -> what replaced them
RENAMED_KEYS = {
    "scene.grl_lambda": "scene.strength sets how hard the adversary pushes the backbone (with any scene.objective)",
    "scene.weight": "the adversary's classifier always has weight 1; scene.strength sets the push on the backbone",
}


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def dataclass_from_dict(cls: type, values: dict, prefix: str = "") -> Any:
    """`cls(**values)` with every key and value checked against the dataclass fields (sections recurse);
    a bad key or value is a ConfigError that names it and the valid keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if dotted in RENAMED_KEYS:
            raise ConfigError(f"config key {dotted!r} is gone: {RENAMED_KEYS[dotted]}")
        if key not in fields:
            raise ConfigError(
                f"unknown config key {dotted!r}; valid keys{' in ' + prefix[:-1] if prefix else ''}: "
                f"{', '.join(fields)}"
            )
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} is a section; give {dotted}.<key>=<value>")
            kwargs[key] = dataclass_from_dict(tp, value, f"{dotted}.")
        else:
            choices = fields[key].metadata.get("choices")
            kwargs[key] = _check_value(dotted, value, tp, tuple(choices()) if callable(choices) else choices)
    return cls(**kwargs)


def load_dataclass(cls: type, values: dict, where: str) -> Any:
    """The one typed parser of YAML settings (training configs, study profiles, cluster files): ``cls(**values)``
    with every key and value checked against its fields; a bad one is a ConfigError (a ValueError) in one form
    everywhere: ``<where>: unknown config key 'x'; valid keys: ...`` or ``<where>: config key 'x' expects ...``."""
    try:
        return dataclass_from_dict(cls, values)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def parse_overrides(overrides: dict | list[str] | tuple[str, ...] | None) -> dict:
    """`["a.b=1", "c=x"]` or `{"a.b": 1}` -> nested dict with YAML-typed values."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        # copies: a later dotted key (data.aug.p) must not write into the caller's nested dict (data.aug)
        items = [(key, copy.deepcopy(value)) for key, value in overrides.items()]
    else:
        try:
            items = list(parse_key_values(overrides).items())
        except ValueError as error:
            raise ConfigError(str(error)) from None
    nested: dict = {}
    for key, value in items:
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return nested


def load_config(preset_or_path: str | os.PathLike = "synth_cpu", overrides: dict | list[str] | None = None) -> TrainConfig:
    """Read a preset (name in reidlab/configs or a .yaml path), apply overrides, validate every key."""
    path = _resolve_preset(preset_or_path)
    values = _deep_merge(_read_yaml(path), parse_overrides(overrides))
    values.setdefault("preset", path.stem)
    config = dataclass_from_dict(TrainConfig, values)
    validate(config)
    return config


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a config saved with `config_to_dict` (e.g. OUTPUT_DIR/config.yaml)."""
    config = dataclass_from_dict(TrainConfig, values)
    validate(config)
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the config as YAML, its paths made absolute, so that the file works from any directory."""

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    config = dataclasses.replace(
        config,
        output_dir=absolute(config.output_dir),
        data=dataclasses.replace(config.data, root=absolute(config.data.root)),
        model=dataclasses.replace(config.model, pretrained=absolute(config.model.pretrained)),
    )
    atomic_write(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


# The ranges a numeric config value can be required to lie in: (in words, the test).
AT_LEAST_ONE = (">= 1", lambda v: v >= 1)
NON_NEGATIVE = (">= 0", lambda v: v >= 0)
POSITIVE = ("> 0", lambda v: v > 0)
FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
PROPER_FRACTION = ("in [0, 1)", lambda v: 0 <= v < 1)
FACTOR = ("in (0, 1]", lambda v: 0 < v <= 1)

# key -> its range; None passes wherever the type allows it
VALUE_RANGES: dict[str, tuple[str, Any]] = {
    "epochs": AT_LEAST_ONE, "log_every": AT_LEAST_ONE, "save_every": NON_NEGATIVE, "threads": AT_LEAST_ONE,
    "max_iters_per_epoch": AT_LEAST_ONE,
    "data.num_workers": NON_NEGATIVE, "data.test_batch_size": AT_LEAST_ONE,
    "model.freeze_backbone_iters": NON_NEGATIVE,
    "loss.ce_weight": NON_NEGATIVE, "loss.metric_weight": NON_NEGATIVE, "loss.label_smoothing": PROPER_FRACTION,
    "loss.temperature": POSITIVE, "loss.margin": NON_NEGATIVE, "loss.gamma": POSITIVE,
    "optim.lr": POSITIVE, "optim.weight_decay": NON_NEGATIVE, "optim.weight_decay_bias": NON_NEGATIVE,
    "optim.momentum": PROPER_FRACTION, "optim.bias_lr_factor": POSITIVE, "optim.warmup_epochs": NON_NEGATIVE,
    "optim.warmup_iters": NON_NEGATIVE, "optim.warmup_factor": FACTOR, "optim.gamma": FACTOR,
    "optim.flat_epochs": NON_NEGATIVE, "optim.min_lr_factor": FRACTION, "optim.clip_grad_norm": POSITIVE,
    "sampler.p": (">= 2 (a pairwise loss and the classifier need several identities per batch)", lambda v: v >= 2),
    "sampler.k": AT_LEAST_ONE,
    "scene.strength": NON_NEGATIVE, "scene.ramp_epochs": NON_NEGATIVE,
    "eval.every": (">= 0 (0 = only at the end)", lambda v: v >= 0), "eval.rerank_k1": AT_LEAST_ONE,
    "eval.rerank_k2": AT_LEAST_ONE, "eval.rerank_lambda": FRACTION, "eval.max_rank": AT_LEAST_ONE,
}


def _config_value(config: TrainConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def validate(config: TrainConfig) -> None:
    """Value ranges and cross-field checks that the types alone cannot express: every one a ConfigError
    naming the key, what it must be and what it got, raised before any data or model is touched."""
    for key, (must, ok) in VALUE_RANGES.items():
        value = _config_value(config, key)
        if value is not None and not ok(value):
            raise ConfigError(f"config key {key!r} must be {must}, got {value!r}")
    if len(config.data.size) != 2 or min(config.data.size) <= 0:
        raise ConfigError(f"config key 'data.size' must be [height, width] > 0, got {config.data.size}")
    if config.data.name not in list_datasets():
        raise ConfigError(f"config key 'data.name' names no registered dataset: {config.data.name!r}; "
                          f"choose one of {', '.join(list_datasets())}")
    if not is_model(config.model.name):
        raise ConfigError(f"config key 'model.name' names no registered model: {config.model.name!r}; "
                          f"choose one of {', '.join(list_models())}")
    if config.sampler.k < 2 and config.loss.metric != "none" and config.loss.metric_weight > 0:
        raise ConfigError(
            f"sampler.k=1 gives every identity one image per batch, so loss.metric={config.loss.metric} never sees "
            "a positive pair; set sampler.k >= 2, or loss.metric=none to train with cross-entropy alone"
        )
    if config.loss.kwargs:
        takes = METRIC_LOSSES[config.loss.metric].options if config.loss.metric in METRIC_LOSSES else ()
        if unknown := sorted(set(config.loss.kwargs) - set(takes)):
            raise ConfigError(f"config key 'loss.kwargs' has {unknown}, which loss.metric={config.loss.metric} does not "
                              f"take; its options: {', '.join(takes) or 'none'}")
    if config.loss.ce_weight <= 0 and (config.loss.metric == "none" or config.loss.metric_weight <= 0):
        raise ConfigError("the loss is empty: set loss.ce_weight > 0 or a loss.metric with loss.metric_weight > 0")
    if config.optim.scheduler == "multistep" and not config.optim.milestones:
        raise ConfigError("optim.scheduler=multistep needs optim.milestones (epochs), e.g. optim.milestones=[30,40]")
    if list(config.optim.milestones) != sorted(config.optim.milestones):
        raise ConfigError(f"optim.milestones must be increasing, got {config.optim.milestones}")
    if config.sampler.name == "hard" and config.sampler.camera_balanced:
        raise ConfigError("sampler.camera_balanced applies to sampler.name=pk; the hard sampler picks images at random")
    if config.sampler.name == "hard" and config.loss.ce_weight <= 0:
        raise ConfigError(
            "sampler.name=hard ranks classes by the identity classifier's weights; it needs loss.ce_weight > 0"
        )
    if config.sampler.name == "hard" and config.sampler.hard_warmup_epochs < 1:
        raise ConfigError(
            "config key 'sampler.hard_warmup_epochs' must be >= 1 with sampler.name=hard: the first plan ranks "
            f"classes by classifier weights that epoch 0 has not trained yet, got {config.sampler.hard_warmup_epochs}"
        )


def check_paths(config: TrainConfig) -> None:
    """Fail early, naming the file or folder to provide, when the run's inputs are not on disk."""
    if config.model.pretrained is not None and not Path(config.model.pretrained).is_file():
        raise FileNotFoundError(
            f"preset {config.preset!r} starts from pretrained weights at model.pretrained={config.model.pretrained!r}, "
            "which does not exist; download them on a machine with network access and pass "
            "model.pretrained=/path/to/weights.pth (or model.pretrained=null to start from scratch)"
        )
    if config.data.root is None:
        raise FileNotFoundError(
            f"preset {config.preset!r} needs the {config.data.name} dataset: pass data.root=/path/to/{config.data.name}"
        )
    root = Path(config.data.root)
    generated = dataset_class(config.data.name).generate is not None
    if not root.exists() and not (config.data.generate and generated):
        raise FileNotFoundError(
            f"dataset folder {str(root)!r} for {config.data.name} does not exist: "
            f"pass data.root=/path/to/{config.data.name}"
            + (f" (or data.generate=true to create {config.data.name} there)" if generated else "")
        )

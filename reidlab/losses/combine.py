"""Weighted sums of losses over model outputs and feature groups, with per-term values for logging."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .circle import CircleLoss
from .distributed import DistributedLossWrapper
from .scene import SCENE_PUSH_LOSSES
from .sparse_pairwise import SparsePairwiseLoss
from .triplet import TripletLoss

__all__ = ["METRIC_LOSSES", "CombinedLoss", "LossTerm", "MetricLossEntry", "build_loss", "create_metric_loss", "register_metric_loss"]

@dataclass(frozen=True)
class MetricLossEntry:
    """A registered metric loss: its constructor, called as ``loss(embeddings[B, D], labels[B]) -> scalar``, and the
    options it takes (``reidlab.engine`` LossConfig fields, plus anything in ``loss.kwargs``)."""

    build: Callable[..., nn.Module]
    options: tuple[str, ...] = ()


METRIC_LOSSES: dict[str, MetricLossEntry] = {}


def register_metric_loss(name: str, *options: str) -> Callable:
    """Decorator (or call on a constructor): make a metric loss buildable as ``loss.metric=<name>``; ``options``
    are the config options it takes, and only those reach it. Adding a loss is this plus its test."""

    def decorator(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in METRIC_LOSSES:
            raise ValueError(f"metric loss {name!r} is already registered")
        METRIC_LOSSES[name] = MetricLossEntry(build, tuple(options))
        return build

    return decorator


for _mode in ("adasp", "sp-h", "sp-lh"):
    register_metric_loss(_mode, "temperature")(functools.partial(SparsePairwiseLoss, mode=_mode))
register_metric_loss("triplet", "margin", "hard_mining", "normalize")(TripletLoss)
register_metric_loss("circle", "margin", "gamma")(CircleLoss)

GROUP_REDUCTIONS = ("mean", "sum")
TARGETS = ("labels", "scene_labels")


def create_metric_loss(name: str, **options) -> nn.Module:
    """Build a registered metric loss by name with the ``options`` it takes (others are left out; None keeps the
    loss's default), e.g. ``create_metric_loss("adasp", temperature=0.05, margin=None)``."""
    if name not in METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; choose one of {sorted(METRIC_LOSSES)}")
    entry = METRIC_LOSSES[name]
    return entry.build(**{k: v for k, v in options.items() if k in entry.options and v is not None})


@dataclass
class LossTerm:
    """One weighted loss applied to one model output.

    source: key of the model's train-mode output dict ("features", "logits", "scene_logits", ...); a list
        value (MGN: 5 feature groups, 8 logits heads) is reduced over its groups with group_reduction
        ("mean": each of G groups weighs 1/G; "sum": fast-reid's per-head CE).
    group_weights: a weight per group instead (a model's published ones: MGN 0.125 per CE head, JPM 0.5 global
        + 0.5 / k per local group); the term is then weight * sum_g w_g loss_g. Non-uniform weights also log
        each group's value as "<name>_<g>"; "<name>" is always the w-weighted mean.
    target: "labels" (identities) or "scene_labels".
    report_accuracy: also log the argmax accuracy of the (logits) source as "<name>_accuracy".
    """

    name: str
    loss: Callable[[Tensor, Tensor], Tensor]
    weight: float = 1.0
    source: str = "features"
    target: str = "labels"
    group_reduction: str = "mean"
    report_accuracy: bool = False
    group_weights: Sequence[float] | None = None

    def __post_init__(self):
        if self.group_reduction not in GROUP_REDUCTIONS:
            raise ValueError(f"group_reduction must be one of {GROUP_REDUCTIONS}, got {self.group_reduction!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.group_weights is not None:
            self.group_weights = tuple(float(w) for w in self.group_weights)
            if not self.group_weights or min(self.group_weights) < 0 or sum(self.group_weights) <= 0:
                raise ValueError(f"group_weights of term {self.name!r} must be >= 0 with a positive sum, "
                                 f"got {self.group_weights}")

    def reduce(self, values: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(the term's value before `weight`, what to log) from its per-group loss values."""
        if self.group_weights is None:
            value = sum(values[1:], values[0])
            if self.group_reduction == "mean":
                value = value / len(values)
            return value, {self.name: value.detach()}
        if len(values) != len(self.group_weights):
            raise ValueError(f"loss term {self.name!r} has {len(self.group_weights)} group weights, but model output "
                             f"{self.source!r} has {len(values)} groups")
        value = sum(w * v for w, v in zip(self.group_weights, values))
        logs = {self.name: value.detach() / sum(self.group_weights)}
        if len(set(self.group_weights)) > 1:
            logs.update({f"{self.name}_{g}": v.detach() for g, v in enumerate(values)})
        return value, logs


def _as_groups(value) -> list[Tensor]:
    return list(value) if isinstance(value, Sequence) else [value]


class CombinedLoss(nn.Module):
    """total = sum_k weight_k * reduce_groups(loss_k(outputs[source_k][g], target_k)).

    forward(outputs, labels, scene_labels=None) -> (total, logs) where logs maps each term name (and
    "<name>_accuracy" where asked, and "total") to a detached scalar tensor. Terms with weight 0 are skipped.
    """

    def __init__(self, terms: Sequence[LossTerm]):
        super().__init__()
        names = [term.name for term in terms]
        if not terms or len(set(names)) != len(names) or "total" in names:
            raise ValueError(f"terms need unique names other than 'total' and at least one term, got {names}")
        self.terms = list(terms)
        # Registered so that .to(device) and state_dict reach loss modules (e.g. a learnable head).
        self.loss_modules = nn.ModuleDict({t.name: t.loss for t in self.terms if isinstance(t.loss, nn.Module)})

    def extra_repr(self) -> str:
        return ", ".join(f"{t.name}: {t.weight} x {t.source}" for t in self.terms)

    def forward(
        self, outputs: Mapping[str, Tensor | Sequence[Tensor]], labels: Tensor, scene_labels: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        targets = {"labels": labels, "scene_labels": scene_labels}
        total, logs = None, {}
        for term in self.terms:
            if term.weight == 0:
                continue
            if term.source not in outputs:
                raise KeyError(
                    f"loss term {term.name!r} reads model output {term.source!r}, but the model returned only "
                    f"{sorted(outputs)} (attach a scene adversary or drop the term)"
                )
            target = targets[term.target]
            if target is None:
                raise ValueError(f"loss term {term.name!r} needs {term.target}, which were not passed")
            groups = _as_groups(outputs[term.source])
            value, term_logs = term.reduce([term.loss(group, target) for group in groups])
            logs.update(term_logs)
            if term.report_accuracy:
                accuracies = [(group.detach().argmax(dim=1) == target).float().mean() for group in groups]
                logs[f"{term.name}_accuracy"] = sum(accuracies) / len(accuracies)
            total = term.weight * value if total is None else total + term.weight * value
        if total is None:
            raise ValueError("every loss term has weight 0: nothing to optimize")
        logs["total"] = total.detach()
        return total, logs


def build_loss(
    ce_weight: float = 1.0,
    label_smoothing: float = 0.1,
    metric: str | None = "adasp",
    metric_weight: float = 1.0,
    temperature: float = 0.04,
    margin: float | None = None,
    gamma: float = 128.0,
    hard_mining: bool = True,
    normalize: bool = False,
    scene_objective: str | None = None,
    gather: bool = False,
    group_weights: Mapping[str, Sequence[float]] | None = None,
    metric_kwargs: Mapping[str, object] | None = None,
) -> CombinedLoss:
    """The usual ReID objective from plain arguments (what a config holds).

    ce_weight * sum over CE heads of cross_entropy(logits, labels, label_smoothing)
    + metric_weight * mean over feature groups of the metric loss
    + cross_entropy(scene_logits, scene_labels) with a scene objective (the scene adversary's classifier; with
      "reverse" the model's gradient reversal makes the backbone maximize it)
    + the objective's push on the backbone (``SCENE_PUSH_LOSSES``: "confusion", cross-entropy to uniform, and
      "entropy", negative entropy, on scene_confusion_logits; "moments", the scene's share of the feature
      variance, on scene_feature; the model sends only their gradient to the backbone, scaled by the strength).
    Each metric loss receives only the options it registered (``register_metric_loss``): temperature for
    adasp / sp-h / sp-lh, margin (None = its default: triplet 0.3, circle 0.25) and more for the others;
    ``metric_kwargs`` adds options of a loss the arguments here do not name. gather wraps the metric loss in ``DistributedLossWrapper`` (global batch).
    group_weights: per-group weights by output ({"features": ..., "logits": ...}, a model's ``feature_weights``
    and ``logit_weights``), see :class:`LossTerm`.
    """
    group_weights = dict(group_weights or {})
    terms = []
    if ce_weight:
        cross_entropy = functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
        terms.append(LossTerm("ce", cross_entropy, ce_weight, "logits", group_reduction="sum", report_accuracy=True,
                              group_weights=group_weights.get("logits")))
    if metric is not None and metric_weight:
        options = {"temperature": temperature, "margin": margin, "gamma": gamma, "hard_mining": hard_mining,
                   "normalize": normalize, **(metric_kwargs or {})}
        metric_loss = create_metric_loss(metric, **options)
        terms.append(LossTerm(metric, DistributedLossWrapper(metric_loss) if gather else metric_loss, metric_weight,
                              "features", group_weights=group_weights.get("features")))
    if scene_objective is not None:
        if scene_objective not in ("reverse", *SCENE_PUSH_LOSSES):
            raise ValueError(f"unknown scene objective {scene_objective!r}; choose one of "
                             f"{('reverse', *SCENE_PUSH_LOSSES)}")
        terms.append(LossTerm("scene", F.cross_entropy, 1.0, "scene_logits", target="scene_labels", report_accuracy=True))
        if scene_objective in SCENE_PUSH_LOSSES:
            push, source = SCENE_PUSH_LOSSES[scene_objective]
            terms.append(LossTerm(f"scene_{scene_objective}", push, 1.0, source, target="scene_labels"))
    return CombinedLoss(terms)

"""Weighted sums of losses over model outputs and feature groups, with per-term values for logging."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .circle import CircleLoss
from .distributed import DistributedLossWrapper
from .sparse_pairwise import SparsePairwiseLoss
from .triplet import TripletLoss

__all__ = ["METRIC_LOSSES", "CombinedLoss", "LossTerm", "build_loss", "create_metric_loss"]

# name -> constructor; every entry is called as loss(embeddings[B, D], labels[B]) -> scalar.
METRIC_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "adasp": functools.partial(SparsePairwiseLoss, mode="adasp"),
    "sp-h": functools.partial(SparsePairwiseLoss, mode="sp-h"),
    "sp-lh": functools.partial(SparsePairwiseLoss, mode="sp-lh"),
    "triplet": TripletLoss,
    "circle": CircleLoss,
}

GROUP_REDUCTIONS = ("mean", "sum")
TARGETS = ("labels", "scene_labels")


def create_metric_loss(name: str, **kwargs) -> nn.Module:
    """Build a registered metric loss by name, e.g. ``create_metric_loss("adasp", temperature=0.05)``."""
    if name not in METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; choose one of {sorted(METRIC_LOSSES)}")
    return METRIC_LOSSES[name](**kwargs)


@dataclass
class LossTerm:
    """One weighted loss applied to one model output.

    source: key of the model's train-mode output dict ("features", "logits", "scene_logits", ...); a list
        value (MGN: 5 feature groups, 8 logits heads) is reduced over its groups with group_reduction
        ("mean": each of G groups weighs 1/G, as MGN's 0.2 per metric group; "sum": fast-reid's per-head CE).
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

    def __post_init__(self):
        if self.group_reduction not in GROUP_REDUCTIONS:
            raise ValueError(f"group_reduction must be one of {GROUP_REDUCTIONS}, got {self.group_reduction!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


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
            values = [term.loss(group, target) for group in groups]
            value = sum(values[1:], values[0])
            if term.group_reduction == "mean":
                value = value / len(values)
            logs[term.name] = value.detach()
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
    scene_weight: float = 0.0,
    gather: bool = False,
) -> CombinedLoss:
    """The usual ReID objective from plain arguments (what a config holds).

    ce_weight * sum over CE heads of cross_entropy(logits, labels, label_smoothing)
    + metric_weight * mean over feature groups of the metric loss
    + scene_weight * cross_entropy(scene_logits, scene_labels)  (the adversary's gradient reversal makes the
      backbone maximize it). margin None = the loss's default (triplet 0.3, circle 0.25); temperature applies
    to adasp/sp-h/sp-lh only; gather wraps the metric loss in ``DistributedLossWrapper`` (global batch).
    """
    terms = []
    if ce_weight:
        cross_entropy = functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
        terms.append(LossTerm("ce", cross_entropy, ce_weight, "logits", group_reduction="sum", report_accuracy=True))
    if metric is not None and metric_weight:
        kwargs: dict = {}
        if metric in ("adasp", "sp-h", "sp-lh"):
            kwargs["temperature"] = temperature
        elif metric == "triplet":
            kwargs.update(hard_mining=hard_mining, normalize=normalize)
        elif metric == "circle":
            kwargs["gamma"] = gamma
        if margin is not None and metric in ("triplet", "circle"):
            kwargs["margin"] = margin
        metric_loss = create_metric_loss(metric, **kwargs)
        terms.append(LossTerm(metric, DistributedLossWrapper(metric_loss) if gather else metric_loss, metric_weight, "features"))
    if scene_weight:
        terms.append(
            LossTerm("scene", F.cross_entropy, scene_weight, "scene_logits", target="scene_labels", report_accuracy=True)
        )
    return CombinedLoss(terms)

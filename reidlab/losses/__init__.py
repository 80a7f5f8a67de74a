"""Classification and pairwise losses, one small object per loss.

Cross-entropy with label smoothing is ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)``;
``build_loss`` wires it with a metric loss and the scene adversary's loss.
"""

from .circle import CircleLoss
from .common import DegenerateBatchWarning, LabelLayout, label_layout, value_checks
from .combine import (
    METRIC_LOSSES,
    CombinedLoss,
    LossTerm,
    MetricLossEntry,
    build_loss,
    create_metric_loss,
    register_metric_loss,
)
from .distributed import DistributedLossWrapper, gather_with_grad
from .scene import SCENE_PUSH_LOSSES, negative_entropy, scene_variance_ratio, uniform_cross_entropy
from .sparse_pairwise import SPARSE_PAIRWISE_MODES, PairSelection, SparsePairwiseLoss, sparse_pairwise_terms
from .triplet import TripletLoss, pairwise_distance

__all__ = [
    "METRIC_LOSSES",
    "SCENE_PUSH_LOSSES",
    "SPARSE_PAIRWISE_MODES",
    "CircleLoss",
    "CombinedLoss",
    "DegenerateBatchWarning",
    "DistributedLossWrapper",
    "LabelLayout",
    "LossTerm",
    "PairSelection",
    "SparsePairwiseLoss",
    "TripletLoss",
    "build_loss",
    "create_metric_loss",
    "register_metric_loss",
    "MetricLossEntry",
    "gather_with_grad",
    "label_layout",
    "negative_entropy",
    "pairwise_distance",
    "scene_variance_ratio",
    "sparse_pairwise_terms",
    "uniform_cross_entropy",
    "value_checks",
]

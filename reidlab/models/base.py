"""What every reidlab model shares: the train-mode output dict, the scene adversary hook, classifier access.

Why: the trainer, the losses and the hard-batch sampler talk to all models the same way (COMMON.md
contract): eval mode returns the retrieval feature [B, D]; train mode returns
``{"features": [...], "logits": [...], "global_feature": ..., "feat": ..., "scene_logits"?: ..., "scene_confusion_logits" | "scene_feature"?: ...}``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from .heads import EmbeddingHead
from .scene import SceneAdversary

__all__ = ["HEAD_ARGUMENTS", "SCENE_ARGUMENTS", "ReIDModel", "classifier_weight_of", "finish_model", "pop_kwargs"]

# builder keyword arguments that configure the embedding head(s) (pool, embedding_dim, bnneck, classifier, ...)
HEAD_ARGUMENTS = frozenset(inspect.signature(EmbeddingHead).parameters) - {"in_features", "num_classes"}
# builder keyword arguments that attach a scene adversary (see finish_model)
SCENE_ARGUMENTS = frozenset({"num_scenes", "scene_objective", "scene_strength", "scene_hidden"})


class ReIDModel(nn.Module):
    """Base class. Subclasses set ``feature_dim`` (retrieval D, also what a scene adversary sees),
    ``global_feature_dim`` (the global branch's pooled feature), ``feature_weights`` / ``logit_weights`` (the published per-group loss weights) and
    implement ``forward(images, camids=None, labels=None)`` and ``classifier_weight()``."""

    uses_camids: bool = False
    feature_dim: int
    global_feature_dim: int
    feature_weights: tuple[float, ...] = (1.0,)
    logit_weights: tuple[float, ...] = (1.0,)
    head_modules: tuple[str, ...] = ("head", "scene_adversary")  # children trained from scratch

    def __init__(self) -> None:
        super().__init__()
        self.scene_adversary: nn.Module | None = None

    def attach_scene_adversary(self, num_scenes: int, objective: str = "moments", strength: float = 1.0,
                               hidden: int | None = None) -> None:
        """Put a :class:`SceneAdversary` on the retrieval feature ``feat`` (all branches: MGN's 8 parts, JPM's
        groups); train mode then adds its outputs (``scene_logits`` [B, num_scenes], ...) to the output dict."""
        self.scene_adversary = SceneAdversary(self.feature_dim, num_scenes, objective, strength, hidden=hidden)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of everything but ``head_modules``: what a trainer freezes while the heads warm up."""
        return [p for name, p in self.named_parameters() if name.split(".")[0] not in self.head_modules]

    def classifier_weight(self) -> Tensor:
        """Weight rows [num_classes, L] of the (global) identity classifier, for hard batch mining."""
        raise NotImplementedError

    @staticmethod
    def is_training_only(key: str) -> bool:
        """Whether a state-dict entry belongs to a part that inference never runs: an identity classifier (its
        size is the training set's identity count) or the scene adversary. Cross-domain evaluation leaves
        these out of a checkpoint trained on another dataset."""
        parts = key.split(".")
        return parts[0] == "scene_adversary" or "classifier" in parts

    def _train_output(
        self,
        features: Sequence[Tensor],
        logits: Sequence[Tensor | None],
        global_feature: Tensor,
        feat: Tensor,
    ) -> dict[str, object]:
        out: dict[str, object] = {
            "features": list(features),
            "logits": [t for t in logits if t is not None],
            "global_feature": global_feature,
            "feat": feat,
        }
        if self.scene_adversary is not None:
            out.update(self.scene_adversary(feat))
        return out


def finish_model(model: ReIDModel, num_scenes: int | None = None, scene_objective: str = "moments",
                 scene_strength: float = 1.0, scene_hidden: int | None = None) -> ReIDModel:
    """Builder epilogue: attach the scene adversary when ``num_scenes`` is given (every builder takes these
    keywords, SCENE_ARGUMENTS)."""
    if num_scenes is not None:
        model.attach_scene_adversary(num_scenes, scene_objective, scene_strength, scene_hidden)
    return model


def classifier_weight_of(classifier: nn.Module | None) -> Tensor:
    if classifier is None:
        raise ValueError("this model was built with num_classes=0 and has no classifier weights")
    return classifier.weight


def pop_kwargs(kwargs: dict, names: Iterable[str]) -> dict:
    """Move the entries named in ``names`` out of a builder's ``kwargs`` (the rest goes to timm)."""
    names = set(names)
    return {key: kwargs.pop(key) for key in list(kwargs) if key in names}

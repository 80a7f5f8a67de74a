"""Backbones, embedding heads, MGN and the TransReID-style ViT, built through one registry.

``build_model(name, num_classes, **kwargs)``; ``list_models()``. Eval mode: ``model(images, camids=None)``
-> retrieval feature [B, D]; train mode -> the dict in ``ReIDModel`` (features, logits, global_feature,
feat, scene_logits when a scene adversary is attached).
"""

from .base import ReIDModel
from .baseline import Baseline
from .heads import CosineClassifier, EmbeddingHead, GeneralizedMeanPooling, HeadOutput, build_classifier, build_pool
from .mgn import MGN
from .registry import ModelInfo, build_model, is_model, list_models, model_info, register_model
from .resnet_ibn import IBN, convert_to_ibn_a, create_resnet, set_stage_stride
from .scene import SCENE_OBJECTIVES, GradientScale, SceneAdversary, grad_reverse, scale_gradient
from .vit_transreid import OverlapPatchEmbed, TransReID, jigsaw_rearrange
from .weights import LoadReport, load_pretrained, read_state_dict

__all__ = [
    "IBN",
    "SCENE_OBJECTIVES",
    "MGN",
    "Baseline",
    "GradientScale",
    "CosineClassifier",
    "EmbeddingHead",
    "GeneralizedMeanPooling",
    "HeadOutput",
    "LoadReport",
    "ModelInfo",
    "OverlapPatchEmbed",
    "ReIDModel",
    "SceneAdversary",
    "TransReID",
    "build_classifier",
    "build_model",
    "build_pool",
    "convert_to_ibn_a",
    "create_resnet",
    "grad_reverse",
    "is_model",
    "jigsaw_rearrange",
    "list_models",
    "load_pretrained",
    "model_info",
    "read_state_dict",
    "register_model",
    "scale_gradient",
    "set_stage_stride",
]

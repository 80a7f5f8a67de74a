"""The study's manipulation checks: does each SynthReID copy contain the mechanism its claims are about?

A verdict about a claim counts only where the benchmark demonstrably contains the claim's mechanism. Each check
below is a measured quantity with a threshold fixed here, before any arm is compared (the thresholds are not
tuned on outcomes); a claim whose check fails is ``untestable`` (``reidlab.study.claims``):

- AdaSP (``hard-positive-rise``, ``hard-positives@person``): the share of positive pairs less similar than the
  median negative pair, in the shared backbone's features ("positive pairs that share few visual similarities"),
  must rise clearly from the person-like to the vehicle-like copy, and exist at all where AdaSP meets the triplet.
- GS (``colour-unreliable-across-cameras``, ``texture-beats-colour-across-cameras``): a colour histogram must
  tell identities apart within a camera much better than across cameras, and across cameras a colour-free
  gradient histogram must tell them apart at least as well as the colour histogram.
- HM (``batch-class-ratio``, ``hm-harder-negatives``): a batch must hold a realistic share of the classes (at
  most 2%, MSMT17's 16 of 1,041), and mined batches must hold harder negatives than random P x K batches.
- SR (``scene-decodable``, ``scene-hurts-retrieval``): a held-out-identity linear probe must decode the scene
  from the baseline's features well above chance, and positives must be less separable across scenes than within.
- Re-ranking (``gallery-true-matches``): k-reciprocal neighbours need several true matches per query.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .records import run_folder
from .controls import (
    Control,
    colour_histograms,
    gallery_matches,
    gradient_histograms,
    hard_positive_share,
    hardest_negative_similarity,
    load_images,
    pair_auc,
    scene_probe,
)

# name: (threshold, direction); written once here and shown with every measured value.
THRESHOLDS: dict[str, tuple[float, str]] = {
    "hard-positive-rise": (0.10, ">="),
    "hard-positives@person": (0.02, ">="),
    "colour-unreliable-across-cameras": (0.10, ">="),
    "texture-beats-colour-across-cameras": (0.0, ">="),
    "batch-class-ratio": (0.02, "<="),
    "hm-harder-negatives": (0.05, ">="),
    "scene-decodable": (0.20, ">="),
    "scene-hurts-retrieval": (0.02, ">="),
    "gallery-true-matches": (2.0, ">="),
}


def _check(name: str, value: float, description: str) -> Control:
    threshold, direction = THRESHOLDS[name]
    return Control.check(name, float(value), threshold, direction, description)


def adasp_controls(person: tuple[np.ndarray, np.ndarray], vehicle: tuple[np.ndarray, np.ndarray]) -> list[Control]:
    """``person`` / ``vehicle``: (features, pids) of each regime's images in one feature space."""
    share_person, share_vehicle = hard_positive_share(*person), hard_positive_share(*vehicle)
    return [
        _check("hard-positive-rise", share_vehicle - share_person,
               f"hard-positive share vehicle {share_vehicle:.3f} - person {share_person:.3f} (positive pairs below "
               "the median negative similarity)"),
        _check("hard-positives@person", share_person, "hard-positive share on the person-like copy"),
    ]


def gs_controls(images: np.ndarray, pids: np.ndarray, camids: np.ndarray) -> list[Control]:
    """Colour-only and colour-free identity cues of a copy's images, within and across cameras."""
    colour = colour_histograms(images)
    within = pair_auc(colour, pids, camids, same_group=True, similarity="intersection")
    across = pair_auc(colour, pids, camids, same_group=False, similarity="intersection")
    texture = pair_auc(gradient_histograms(images), pids, camids, same_group=False)
    return [
        _check("colour-unreliable-across-cameras", within - across,
               f"colour-histogram pair AUC within cameras {within:.3f} - across cameras {across:.3f}"),
        _check("texture-beats-colour-across-cameras", texture - across,
               f"pair AUC across cameras of a colour-free gradient histogram {texture:.3f} - of the colour histogram "
               f"{across:.3f}"),
    ]


def hm_controls(features: np.ndarray, pids: np.ndarray, class_weights: np.ndarray, p: int, k: int,
                seed: int = 0) -> list[Control]:
    """Batches mined from ``class_weights`` (row c = relabelled pid c) against random P x K batches, on
    ``features`` of the same training images."""
    from reidlab.data.samplers import HardBatchSampler, PKSampler

    num_classes = len(np.unique(pids))
    mined = HardBatchSampler(pids.tolist(), p, k, warmup_epochs=0, seed=seed)
    mined.update_weights(class_weights)
    random_plan = PKSampler(pids.tolist(), p, k, seed=seed).plan(0)
    hard, plain = (hardest_negative_similarity(features, pids, plan) for plan in (mined.plan(0), random_plan))
    return [
        _check("batch-class-ratio", p / num_classes, f"P / training identities = {p} / {num_classes}"),
        _check("hm-harder-negatives", hard - plain,
               f"mean hardest-negative cosine in mined batches {hard:.3f} - in random P x K batches {plain:.3f}"),
    ]


def sr_controls(features: np.ndarray, pids: np.ndarray, scenes: np.ndarray) -> list[Control]:
    """Whether the scene is in the features and whether it separates positives."""
    probe = scene_probe(features, scenes, pids)
    within = pair_auc(features, pids, scenes, same_group=True)
    across = pair_auc(features, pids, scenes, same_group=False)
    return [
        _check("scene-decodable", probe["accuracy"] - probe["chance"],
               f"held-out-identity scene probe accuracy {probe['accuracy']:.3f} - chance {probe['chance']:.3f}"),
        _check("scene-hurts-retrieval", within - across,
               f"pair AUC within scenes {within:.3f} - across scenes {across:.3f}"),
    ]


def rerank_controls(query: Sequence[Any], gallery: Sequence[Any]) -> list[Control]:
    """``query`` / ``gallery``: records with ``pid`` and ``camid``."""
    matches = gallery_matches(*(np.array([getattr(r, key) for r in records]) for records in (query, gallery)
                                for key in ("pid", "camid")))
    return [_check("gallery-true-matches", matches, "mean valid true matches per query in the gallery")]


# --------------------------------------------------------------------------------------------------------------
# Measuring them for a study


def _labels(records: Sequence[Any]) -> dict[str, np.ndarray]:
    return {key: np.array([getattr(r, key) for r in records]) for key in ("pid", "camid", "sceneid")}


def _trained(run_dir: str | os.PathLike) -> Any:
    """A finished run at its last checkpoint (never the best one, which test mAP chose)."""
    from reidlab import engine

    return engine.load_trained(run_dir, "last")


def _features(trained: Any, records: Sequence[Any]) -> np.ndarray:
    """Features of ``records`` (any dataset's) under a trained run's model and test transform, without flips."""
    return trained.features(records, flip=False)[0].numpy()


def _synth(root: str) -> Any:
    from reidlab.data import build_dataset

    return build_dataset("synthreid", root)


def measure_controls(roots: Mapping[str, str], backbone_run: str | os.PathLike | None = None,
                     hm_run: str | os.PathLike | None = None, baseline_run: str | os.PathLike | None = None,
                     p: int = 16, k: int = 4) -> dict[str, dict[str, Any]]:
    """Every check the study can measure, by name (``Control.to_json()`` records), on the training splits of the
    copies in ``roots`` (``person``, ``vehicle``, ``hbreid``, ``hm``): the AdaSP checks in the shared backbone's
    features (``backbone_run``), the GS and re-ranking checks on the HBReID copy's images, the HM check with a
    +GS +HM run on the HM copy (``hm_run``, P x K = ``p`` x ``k``) and the SR checks on a baseline run's test
    features (``baseline_run``).
    What cannot be measured (a copy, the backbone or a run is missing) is left out, so its claims are untestable."""
    checks: list[Control] = []
    if backbone_run is not None and {"person", "vehicle"} <= set(roots):
        backbone = _trained(backbone_run)
        regimes = [_synth(roots[name]).train for name in ("person", "vehicle")]
        checks += adasp_controls(*[(_features(backbone, train), _labels(train)["pid"]) for train in regimes])
    if "hbreid" in roots:
        hbreid = _synth(roots["hbreid"])
        labels = _labels(hbreid.train)
        checks += gs_controls(load_images([r.path for r in hbreid.train]), labels["pid"], labels["camid"])
        if baseline_run is not None and run_folder(baseline_run).checkpoint("last").is_file():
            test = [r for r in list(hbreid.query) + list(hbreid.gallery) if r.pid > 0]  # identities, no distractors
            test_labels = _labels(test)
            checks += sr_controls(_features(_trained(baseline_run), test), test_labels["pid"], test_labels["sceneid"])
        checks += rerank_controls(hbreid.query, hbreid.gallery)
    if "hm" in roots and hm_run is not None and run_folder(hm_run).checkpoint("last").is_file():
        train = _synth(roots["hm"]).train
        mined = _trained(hm_run)
        weights = mined.model.classifier_weight().detach().double().numpy()
        checks += hm_controls(_features(mined, train), _labels(train)["pid"], weights, p, k)
    return {check.name: check.to_json() for check in checks}

"""Named SynthReID regimes: knob sets that each carry the mechanism one of the sources' claims is about.

A study profile builds each of its copies from regimes (``copies: {hbreid: {regimes: [gs, sr]}}``), merged in
order over its shared knobs; ``reidlab synth ROOT --regime vehicle`` does the same on the command line. The
manipulation checks of ``reidlab.study.mechanisms`` measure, per copy, that the mechanism is there.
"""

from __future__ import annotations

from typing import Any

from .config import _check_knob_names

_MILD = {"occlusion_prob": 0.0, "misalignment": 0.0, "noise": (0.0, 0.5), "blur": (0.0, 0.0), "color_cast": 0.0}
# Persons and vehicles in one square frame (vehicles seen from the side are wide), so the AdaSP contrast keeps
# the image size and the model's input fixed.
_SQUARE = {"image_size": (48, 48)}

REGIMES: dict[str, dict[str, Any]] = {
    "person": {"subject": "person", "camera_views": "mixed", "variation": 0.5, "variation_spread": 0.1,
               "family_size": (1, 1), "cameras_per_id": (2, 4), **_MILD, **_SQUARE},
    "vehicle": {"subject": "vehicle", "camera_views": "fixed", "variation": 0.1, "variation_spread": 0.1,
                "family_size": (1, 3), "family_mutations": (1, 2), "cameras_per_id": (2, 4),
                "images_per_camera": (1, 2), **_MILD, **_SQUARE},
    "gs": {"subject": "person", "color_shift": 0.9, "texture": 0.9, "variation": 0.1, "variation_spread": 0.1},
    "hm": {"num_train_ids": 800, "family_size": (8, 16), "family_mutations": (1, 1), "cameras_per_id": (2, 4),
           "images_per_camera": (1, 2), "variation": 0.1, "variation_spread": 0.1, **_MILD},
    "sr": {"num_scenes": 3, "color_cast": 1.0, "noise": (2.0, 30.0), "blur": (0.0, 3.0), "occlusion_prob": 0.15,
           "misalignment": 0.05},
    "pretrain": {"subject": "person", "camera_views": "mixed", "variation": 0.5, "family_size": (1, 1), **_MILD,
                 **_SQUARE},
}

REGIME_NOTES: dict[str, str] = {
    "person": "Person-like ReID (the AdaSP claims' persons): one appearance across views, low intra-class variation "
              "(0.5 +- 0.1: a jacket, bag or hat now and then comes or goes, so that some positive pairs are hard: "
              "in the shared backbone pretrained at 36b61ab the hard-positive share is 0.0155 at 0.3 and 0.4, 0.024 "
              "at 0.45, 0.027 at 0.5, 0.039 at 0.6; the triplet claim needs 0.02), pose and accessory "
              "jitter, every camera shows all views, no families, mild nuisances, 2-4 cameras per identity (as "
              "`vehicle`).",
    "vehicle": "Vehicle-like ReID (the AdaSP claims' vehicles): rigid vehicles whose front, rear and side show "
               "different parts; each camera sees one fixed face, so many positive pairs share only colour and "
               "outline; same-model families differ only in small marks. Differs from `person` also in: subject, "
               "views per camera, families, 1-2 images per camera and identity (fewer images), accessory variation "
               "(0.1 against 0.5). Both are 48 x 48 "
               "with 2-4 cameras per identity.",
    "gs": "Grayscale-patch regime: a strong per-camera colour shift (hue rotation about the grey axis, saturation) "
          "makes colour unreliable across cameras while luminance is kept, and patterned garments with logos carry "
          "identity by texture; low intra-class variation (0.1 +- 0.1), so jackets seldom hide the pattern. 64 x 32 "
          "(a colour-free gradient histogram separates identities no better at 96 x 48 or 128 x 64).",
    "hm": "Hard-mining regime: 800 training identities, so that a batch of P = 16 classes is 2% of them (MSMT17: 16 "
          "of 1,041), in families of 8-16 near-duplicates that differ in one attribute group (crowds of alike "
          "dress, as MSMT17's winter coats); 1-2 images per camera, low accessory variation, mild nuisances. HBReID "
          "ranks every class by its classifier row's cosine to one random class and cuts the ranking into batches, "
          "so a batch gathers alike classes only where families are large and tight: with families of 2-6, or "
          "under the `sr` regime's noise and blur, the rows of a CPU-budget model barely rank them (docs/study.md, "
          "\"Why HM has its own copy\").",
    "sr": "Scene-removal regime: three scenes with strong per-scene colour casts, blur (radius up to 3 pixels), "
          "noise (std up to 30), occluders and misalignment on top of their backgrounds, so the scene is decodable "
          "from features and hurts retrieval across scenes even after the full profile's 8 epochs (with casts at 0.6, "
          "noise up to 10 and blur up to 1, or casts at 1.0 with noise up to 20 and blur up to 2, that baseline's "
          "cross-scene pair AUC fell only 0.014-0.021 below the within-scene one; with these knobs 0.033).",
    "pretrain": "Pretraining copy of the shared backbone (ImageNet's role): persons only, moderate variation, no "
                "families, mild nuisances. No vehicles: a backbone trained on vehicle identities across faces has "
                "already learned the view invariance the AdaSP vehicle claims are about (measured, quick profile: "
                "hard-positive share vehicle 0.024 vs person 0.022 with a mixed copy; 0.361 vs 0.023 persons only), "
                "as ImageNet's category labels never teach it.",
}


def regime_knobs(*names: str, **overrides: Any) -> dict[str, Any]:
    """The knobs of ``names`` merged left to right, then ``overrides``."""
    unknown = [name for name in names if name not in REGIMES]
    if unknown:
        raise ValueError(f"unknown SynthReID regime(s) {unknown}; valid regimes: {', '.join(REGIMES)}")
    _check_knob_names(overrides)
    merged: dict[str, Any] = {}
    for name in names:
        merged.update(REGIMES[name])
    return {**merged, **overrides}

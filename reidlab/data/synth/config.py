"""SynthReID's knobs: the generator settings, their validation and their command-line form."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

FORMAT = "synthreid-v3"  # v3: vehicles, fixed camera views, per-camera colour shift, texture; older folders must be regenerated
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
SUPERSAMPLE = 2  # people are drawn at twice the output size, then downsampled (anti-aliasing)
VIEWS = ("front", "back", "left", "right")
SUBJECTS = ("person", "vehicle", "mixed")
CAMERA_VIEWS = ("mixed", "fixed")

# RNG stream ids: np.random.default_rng([seed, STREAM, ...]) keeps every draw independent of the others.
_S_SPLIT, _S_FAMILY, _S_MEMBER, _S_IMAGE, _S_SCENE, _S_CAMERA, _S_VISIT = 0, 1, 2, 3, 4, 5, 6
_S_VARIATION, _S_DISTRACTOR, _S_JUNK, _S_SUBJECT = 7, 8, 9, 10


@dataclass
class SynthConfig:
    """Generator knobs (``reidlab synth ROOT key=value ...``; ranges are written ``lo,hi``).

    num_train_ids: identities in ``bounding_box_train``.
    num_test_ids: identities in ``query`` + ``bounding_box_test`` (disjoint from the train ones).
    num_cameras: cameras 1..num_cameras (at most 9: Market names hold one digit).
    num_scenes: scenes; cameras are split into contiguous groups, one per scene.
    image_size: (height, width) of every image.
    cameras_per_id: range of the number of cameras an identity appears in (lo >= 2).
    images_per_camera: range of images per identity per camera; test identities get at least 2,
        so that after the query draw every camera still holds a gallery image.
    family_size: range of identities per family; members share all attributes but
        ``family_mutations`` of them. (1,1) switches families off.
    family_mutations: range of attribute groups in which a family member differs from the family base.
    variation: mean per-identity intra-class variation level in [0, 1] (sweep it for ablations): the
        level sets how often jacket/bag/hat/sleeves change between cameras and how much garment
        colours shift per camera. 0 gives identities that change only with viewpoint and pose.
    variation_spread: per-identity levels are uniform in variation +- variation_spread, clipped to [0, 1].
    occlusion_prob: probability that an image has an occluder (pole, car, bin, passer-by).
    misalignment: bounding-box error: max shift and scale change as a fraction of the box size.
    pose_jitter: scale of stride, arm swing, stance and position jitter (0 = one stiff pose).
    noise: range from which each scene's Gaussian pixel-noise std (0-255 units) is drawn.
    blur: range from which each scene's Gaussian blur radius (output pixels) is drawn.
    color_cast: strength of the per-scene and per-camera colour cast and illumination change.
    subject: "person", "vehicle" (rigid vehicles whose faces differ: ``reidlab.data.synth.vehicles``) or "mixed"
        (each identity a person or a vehicle with probability 0.5; a neutral pretraining copy).
    camera_views: "mixed" (each camera prefers two views but shows all) or "fixed" (each camera sees its subjects
        from one face: front, rear or side; so many cross-camera positive pairs show disjoint faces).
    color_shift: strength in [0, 1] of a per-camera colour transform (a hue rotation about the grey axis, which
        keeps luminance, and a saturation change): at high values a garment's colour is an unreliable cue across
        cameras while it stays consistent within one.
    texture: in [0, 1], how much identity is carried by shape and texture: the probability that a person's upper
        garment is patterned (stripes, checks, two-tone) and carries a logo, over the usual share of solid shirts.
    num_distractors: gallery images with pid 0000 (background clutter and badly cropped strangers).
    num_junk: gallery images with pid -1 (fragments; loaders drop them like Market's junk).
    jpeg_quality: JPEG quality of the written files.
    """

    num_train_ids: int = 200
    num_test_ids: int = 200
    num_cameras: int = 6
    num_scenes: int = 3
    image_size: tuple[int, int] = (128, 64)
    cameras_per_id: tuple[int, int] = (2, 6)
    images_per_camera: tuple[int, int] = (1, 4)
    family_size: tuple[int, int] = (1, 4)
    family_mutations: tuple[int, int] = (1, 2)
    variation: float = 0.5
    variation_spread: float = 0.5
    occlusion_prob: float = 0.3
    misalignment: float = 0.1
    pose_jitter: float = 1.0
    noise: tuple[float, float] = (2.0, 9.0)
    blur: tuple[float, float] = (0.0, 0.9)
    color_cast: float = 0.3
    subject: str = "person"
    camera_views: str = "mixed"
    color_shift: float = 0.0
    texture: float = 0.0
    num_distractors: int = 300
    num_junk: int = 60
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(SynthConfig)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hints[f.name] in (tuple[int, int], tuple[float, float]):
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise ValueError(f"knob {f.name} must be a pair lo,hi; got {value!r}")
                cast = int if hints[f.name] == tuple[int, int] else float
                lo, hi = (cast(v) for v in value)
                if lo > hi and f.name != "image_size":
                    raise ValueError(f"knob {f.name}: lo must be <= hi; got {value!r}")
                setattr(self, f.name, (lo, hi))
        checks = [
            (self.num_train_ids >= 1, "num_train_ids must be >= 1"),
            (self.num_test_ids >= 1, "num_test_ids must be >= 1"),
            (self.num_train_ids + self.num_test_ids <= 9999, "num_train_ids + num_test_ids must be <= 9999 (4-digit pids)"),
            (2 <= self.num_cameras <= 9, "num_cameras must be in 2..9 (one digit in Market names)"),
            (1 <= self.num_scenes <= self.num_cameras, "num_scenes must be in 1..num_cameras"),
            (self.image_size[0] >= 32 and self.image_size[1] >= 16, "image_size must be at least 32,16 (height,width)"),
            (2 <= self.cameras_per_id[0], "cameras_per_id lo must be >= 2 (queries need a cross-camera match)"),
            (self.images_per_camera[0] >= 1, "images_per_camera lo must be >= 1"),
            (self.family_size[0] >= 1, "family_size lo must be >= 1"),
            (1 <= self.family_mutations[0] and self.family_mutations[1] <= 4,
             "family_mutations must lie in 1..4 (0 would make identical twins; use family_size=1,1 for no families)"),
            (0.0 <= self.variation <= 1.0, "variation must be in [0, 1]"),
            (0.0 <= self.variation_spread <= 1.0, "variation_spread must be in [0, 1]"),
            (0.0 <= self.occlusion_prob <= 1.0, "occlusion_prob must be in [0, 1]"),
            (0.0 <= self.misalignment <= 0.3, "misalignment must be in [0, 0.3]"),
            (0.0 <= self.pose_jitter <= 2.0, "pose_jitter must be in [0, 2]"),
            (self.noise[0] >= 0, "noise must be >= 0"),
            (self.blur[0] >= 0, "blur must be >= 0"),
            (0.0 <= self.color_cast <= 1.0, "color_cast must be in [0, 1]"),
            (self.subject in SUBJECTS, f"subject must be one of {SUBJECTS}"),
            (self.camera_views in CAMERA_VIEWS, f"camera_views must be one of {CAMERA_VIEWS}"),
            (0.0 <= self.color_shift <= 1.0, "color_shift must be in [0, 1]"),
            (0.0 <= self.texture <= 1.0, "texture must be in [0, 1]"),
            (0 <= self.num_distractors <= 20000, "num_distractors must be in 0..20000"),
            (0 <= self.num_junk <= 20000, "num_junk must be in 0..20000"),
            (1 <= self.jpeg_quality <= 95, "jpeg_quality must be in 1..95"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"bad SynthReID knob: {message}")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def knob_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SynthConfig)]


def _check_knob_names(names) -> None:
    unknown = sorted(set(names) - set(knob_names()))
    if unknown:
        raise ValueError(f"unknown SynthReID knob(s) {unknown}; valid knobs: {', '.join(knob_names())}")


def parse_knobs(knobs: dict[str, str]) -> dict[str, Any]:
    """Convert ``key=value`` strings from the command line into typed knob values.

    Pairs are written ``lo,hi`` (``image_size`` also as ``128x64``)."""
    _check_knob_names(knobs)
    hints = typing.get_type_hints(SynthConfig)
    parsed: dict[str, Any] = {}
    for name, text in knobs.items():
        kind = hints[name]
        try:
            if kind in (tuple[int, int], tuple[float, float]):
                parts = str(text).replace("x", ",").split(",")
                if len(parts) != 2:
                    raise ValueError
                cast = int if kind == tuple[int, int] else float
                parsed[name] = (cast(parts[0]), cast(parts[1]))
            else:
                parsed[name] = kind(text)
        except ValueError:
            form = "lo,hi" if kind in (tuple[int, int], tuple[float, float]) else kind.__name__
            raise ValueError(f"knob {name}={text!r}: expected {form}") from None
    return parsed

"""SynthReID: a procedurally drawn pedestrian ReID benchmark written in the exact Market-1501 layout.

Real benchmarks cannot be downloaded or redistributed here, so the default study runs on this one.
It is built to exercise what the losses and tricks are about (README, "SynthReID"):

- identities with consistent attributes (build, skin, hair, garments with colours and patterns, shoes,
  bags, hats) so that a network can learn them across cameras;
- identity *families* that share all but one or two attributes: hard negatives;
- a per-identity intra-class variation level: items (jacket, bag, hat, sleeves) that change between
  cameras, colour shifts, on top of front/back/side views that look different;
- cameras grouped into scenes (background, illumination, colour cast, blur, noise) with scene labels;
- per-image viewpoint, pose jitter, partial occlusion and bounding-box misalignment;
- disjoint train/test identities, one query per test identity per camera, distractors (pid 0000) and
  junk images (pid -1) in the gallery.

Everything is drawn from ``np.random.default_rng([seed, stream, ...])`` keyed by identity, camera and
image, so the same seed gives byte-identical files whatever the worker count or job order.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FORMAT = "synthreid-v2"  # v2: no look-alike identities (visible_attributes); v1 folders must be regenerated
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
SUPERSAMPLE = 2  # people are drawn at twice the output size, then downsampled (anti-aliasing)
VIEWS = ("front", "back", "left", "right")

# RNG stream ids: np.random.default_rng([seed, STREAM, ...]) keeps every draw independent of the others.
_S_SPLIT, _S_FAMILY, _S_MEMBER, _S_IMAGE, _S_SCENE, _S_CAMERA, _S_VISIT = 0, 1, 2, 3, 4, 5, 6
_S_VARIATION, _S_DISTRACTOR, _S_JUNK = 7, 8, 9


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


# --------------------------------------------------------------------------- identity attributes

# name -> RGB. Garment colours lean towards dark neutrals, as in real street data.
COLORS = {
    "black": (25, 25, 28), "charcoal": (60, 60, 65), "grey": (125, 125, 128), "white": (225, 225, 220),
    "navy": (30, 40, 90), "blue": (45, 90, 180), "lightblue": (130, 170, 215), "red": (180, 35, 40),
    "maroon": (110, 30, 40), "green": (50, 120, 60), "olive": (100, 105, 50), "beige": (200, 180, 140),
    "brown": (110, 70, 40), "yellow": (220, 190, 50), "pink": (225, 140, 170), "purple": (110, 60, 140),
    "orange": (225, 120, 40), "teal": (30, 120, 125),
}
GARMENT_COLORS = tuple(COLORS)
GARMENT_WEIGHTS = np.array([3, 2, 2, 2, 2, 1.5, 1, 1, 1, 1, 1, 1.5, 1, 0.7, 0.7, 0.7, 0.6, 0.7])
SKIN_TONES = {"s1": (240, 205, 180), "s2": (225, 180, 145), "s3": (195, 145, 105), "s4": (160, 110, 75),
              "s5": (115, 75, 50), "s6": (85, 55, 40)}
HAIR_COLORS = {"black": (20, 18, 18), "darkbrown": (55, 35, 25), "brown": (100, 65, 35), "blonde": (200, 165, 95),
               "grey": (150, 150, 150), "auburn": (130, 50, 30)}
HAIR_WEIGHTS = np.array([4, 3, 2, 1.2, 0.8, 0.7])

# Categorical attributes and their vocabularies; the rest of `attributes` are floats (build) and RGB lists.
CATEGORIES = {
    "skin": tuple(SKIN_TONES),
    "hair_color": tuple(HAIR_COLORS),
    "hair_style": ("short", "long", "bald", "ponytail"),
    "upper_color": GARMENT_COLORS,
    "upper_pattern": ("solid", "hstripes", "vstripes", "checks", "twotone"),
    "upper_color2": GARMENT_COLORS,
    "sleeves": ("long", "short"),
    "logo": ("none", "circle", "square"),
    "logo_color": GARMENT_COLORS,
    "lower_type": ("trousers", "shorts", "skirt"),
    "lower_color": GARMENT_COLORS,
    "shoe_color": GARMENT_COLORS,
    "jacket": ("none", "open"),
    "jacket_color": GARMENT_COLORS,
    "bag": ("none", "backpack", "shoulder", "handbag"),
    "bag_color": GARMENT_COLORS,
    "hat": ("none", "cap", "beanie"),
    "hat_color": GARMENT_COLORS,
}
BUILD = {"height": (0.80, 0.92), "shoulder": (0.10, 0.14), "hip": (0.085, 0.115), "legs": (0.44, 0.50),
         "head": (0.9, 1.1), "pattern_period": (0.035, 0.07)}
# Attribute groups: the unit a family member mutates.
GROUPS = {
    "build": ("height", "shoulder", "hip", "legs", "head"),
    "skin": ("skin",),
    "hair_color": ("hair_color",),
    "hair_style": ("hair_style",),
    "upper_color": ("upper_color",),
    "upper_pattern": ("upper_pattern", "upper_color2", "pattern_period"),
    "sleeves": ("sleeves",),
    "logo": ("logo", "logo_color"),
    "lower_type": ("lower_type",),
    "lower_color": ("lower_color",),
    "shoes": ("shoe_color",),
    "jacket": ("jacket", "jacket_color"),
    "bag": ("bag", "bag_color"),
    "hat": ("hat", "hat_color"),
}
_CATEGORY_WEIGHTS = {
    "hair_color": HAIR_WEIGHTS, "hair_style": np.array([5, 3, 1, 1.5]), "upper_pattern": np.array([5, 1.5, 1, 1, 1]),
    "sleeves": np.array([3, 2]), "logo": np.array([4, 1, 1]), "lower_type": np.array([6, 1.5, 1.5]),
    "jacket": np.array([3, 1]), "bag": np.array([3, 1.5, 1.5, 1]), "hat": np.array([5, 1, 1]),
    "shoe_color": np.array([4, 2, 1, 3] + [0.3] * (len(GARMENT_COLORS) - 4)),
}


def _choice(rng: np.random.Generator, name: str) -> str:
    vocab = CATEGORIES[name]
    weights = _CATEGORY_WEIGHTS.get(name, GARMENT_WEIGHTS if vocab is GARMENT_COLORS else np.ones(len(vocab)))
    return vocab[int(rng.choice(len(vocab), p=weights / weights.sum()))]


def _draw_group(rng: np.random.Generator, group: str, attrs: dict[str, Any]) -> None:
    for key in GROUPS[group]:
        if key in CATEGORIES:
            attrs[key] = _choice(rng, key)
        else:
            lo, hi = BUILD[key]
            attrs[key] = round(float(rng.uniform(lo, hi)), 4)


def random_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """Draw a full attribute set (the family base)."""
    attrs: dict[str, Any] = {}
    for group in GROUPS:
        _draw_group(rng, group, attrs)
    while attrs["upper_color2"] == attrs["upper_color"]:
        attrs["upper_color2"] = _choice(rng, "upper_color2")
    return attrs


def visible_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes that show when an identity wears its own items (variation 0): what must differ between
    two pids, since a redrawn colour of an absent item changes no pixel.

    Dropped: hair colour on a bald head, a solid shirt's second colour and stripe period (also twotone's
    period), sleeves under an open jacket, colours of absent jacket, bag and hat; a logo in the colour of a
    solid shirt counts as no logo."""
    shown = dict(attributes)
    hidden = [f"{item}_color" for item in ("jacket", "bag", "hat") if attributes[item] == "none"]
    if attributes["hair_style"] == "bald":
        hidden.append("hair_color")
    solid = attributes["upper_pattern"] == "solid"
    if solid:
        hidden += ["upper_color2", "pattern_period"]
    elif attributes["upper_pattern"] == "twotone":
        hidden.append("pattern_period")
    if attributes["logo"] == "none" or (solid and attributes["logo_color"] == attributes["upper_color"]):
        shown["logo"] = "none"
        hidden.append("logo_color")
    if attributes["jacket"] != "none":
        hidden.append("sleeves")
    for key in hidden:
        del shown[key]
    return shown


def _visible_key(attributes: dict[str, Any]) -> tuple:
    return tuple(sorted(visible_attributes(attributes).items()))


def mutate_attributes(rng: np.random.Generator, base: dict[str, Any], num_mutations: int) -> tuple[dict[str, Any], list[str]]:
    """Copy `base` and redraw `num_mutations` attribute groups so that each one changes what is drawn.

    A redraw can be invisible (a logo colour without a logo, sleeves under a jacket, or a hair colour that a
    second mutation to bald hides), so groups are chosen again until undoing any one of them changes
    `visible_attributes`."""
    while True:
        attrs = dict(base)
        groups = [str(g) for g in rng.choice(list(GROUPS), size=num_mutations, replace=False)]
        for group in groups:
            before = tuple(base[k] for k in GROUPS[group])
            while tuple(attrs[k] for k in GROUPS[group]) == before or (
                group in ("upper_color", "upper_pattern") and attrs["upper_color2"] == attrs["upper_color"]
            ):
                _draw_group(rng, group, attrs)
        key = _visible_key(attrs)
        if all(key != _visible_key({**attrs, **{k: base[k] for k in GROUPS[g]}}) for g in groups):
            return attrs, groups


def attribute_vector(attributes: dict[str, Any]) -> np.ndarray:
    """Encode an identity's attributes as a float vector (one-hot categories, build scaled to [0, 1])."""
    parts = []
    for name, vocab in CATEGORIES.items():
        one_hot = np.zeros(len(vocab))
        one_hot[vocab.index(attributes[name])] = 1.0
        parts.append(one_hot)
    scaled = [(attributes[k] - lo) / (hi - lo) for k, (lo, hi) in BUILD.items()]
    return np.concatenate(parts + [np.asarray(scaled)])


# --------------------------------------------------------------------------- dataset plan


def _split_into_families(rng: np.random.Generator, pids: list[int], size_range: tuple[int, int]) -> list[list[int]]:
    families, start = [], 0
    while start < len(pids):
        size = int(rng.integers(size_range[0], size_range[1] + 1))
        families.append(pids[start:start + size])
        start += size
    return families


def _visit_state(seed: int, pid: int, cam: int, attrs: dict[str, Any], level: float) -> dict[str, Any]:
    """What an identity wears and carries in one camera: the intra-class variation between cameras."""
    rng = np.random.default_rng([seed, _S_VISIT, pid, cam])
    u = rng.random(6)
    jacket = attrs["jacket"] != "none"
    if u[0] < 0.6 * level:
        jacket = not jacket
    bag = attrs["bag"]
    if bag != "none" and u[1] < 0.5 * level:
        bag = "none"
    elif bag == "none" and u[1] < 0.3 * level:
        bag = "handbag"
    hat = attrs["hat"]
    if hat != "none" and u[2] < 0.5 * level:
        hat = "none"
    elif hat == "none" and u[2] < 0.2 * level:
        hat = "beanie"
    sleeves = "short" if attrs["sleeves"] == "long" and u[3] < 0.3 * level else attrs["sleeves"]
    shade = 1.0 + 0.25 * level * float(rng.standard_normal())
    return {"jacket": jacket, "bag": bag, "hat": hat, "sleeves": sleeves, "shade": round(max(0.6, min(1.4, shade)), 4)}


def _scene_params(seed: int, scene: int, config: SynthConfig) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _S_SCENE, scene])
    template = SCENE_TEMPLATES[scene % len(SCENE_TEMPLATES)]
    gain = rng.uniform(0.65, 0.8) if template == "night" else rng.uniform(0.75, 1.15)
    cast = 1.0 + config.color_cast * rng.uniform(-0.6, 0.6, 3)
    return {
        "name": f"{template}{scene // len(SCENE_TEMPLATES) or ''}",
        "template": template,
        "gain": round(float(gain), 4),
        "cast": [round(float(c), 4) for c in cast / cast.mean()],
        "gamma": round(float(rng.uniform(0.85, 1.2)), 4),
        "noise": round(float(rng.uniform(*config.noise)), 4),
        "blur": round(float(rng.uniform(*config.blur)), 4),
        "wall": _pick_color(rng, SCENE_WALLS[template]),
        "ground": _pick_color(rng, SCENE_GROUNDS[template]),
    }


def _pick_color(rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...]) -> list[int]:
    base = np.array(palette[int(rng.integers(len(palette)))])
    return [int(c) for c in np.clip(base + rng.integers(-15, 16, 3), 0, 255)]


def _camera_params(seed: int, cam: int, config: SynthConfig) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _S_CAMERA, cam])
    cast = 1.0 + 0.5 * config.color_cast * rng.uniform(-0.5, 0.5, 3)
    preferred = [("front", "back"), ("left", "right"), ("front", "left"), ("back", "right")][int(rng.integers(4))]
    views = np.array([0.4 if v in preferred else 0.1 for v in VIEWS])
    return {
        "scene": cam * config.num_scenes // config.num_cameras,
        "gain": round(float(1.0 + config.color_cast * rng.uniform(-0.4, 0.4)), 4),
        "cast": [round(float(c), 4) for c in cast / cast.mean()],
        "gradient": [int(rng.integers(2)), round(float(config.color_cast * rng.uniform(0, 0.8)), 4)],
        "horizon": round(float(rng.uniform(0.45, 0.72)), 4),
        "view_probs": [round(float(p), 4) for p in views / views.sum()],
    }


def build_plan(seed: int, config: SynthConfig) -> dict[str, Any]:
    """Decide everything but pixels: splits, families, attributes, cameras, and the list of images."""
    rng = np.random.default_rng([seed, _S_SPLIT])
    order = [int(p) + 1 for p in rng.permutation(config.num_train_ids + config.num_test_ids)]
    splits = {"train": order[:config.num_train_ids], "test": order[config.num_train_ids:]}
    identities: dict[int, dict[str, Any]] = {}
    family_id = 0
    drawn: set[tuple] = set()  # visible attributes of every identity so far: no two may look alike
    for split, pids in splits.items():
        for members in _split_into_families(rng, pids, config.family_size):
            family_rng = np.random.default_rng([seed, _S_FAMILY, family_id])
            base = random_attributes(family_rng)
            while _visible_key(base) in drawn:
                base = random_attributes(family_rng)
            for i, pid in enumerate(members):
                member_rng = np.random.default_rng([seed, _S_MEMBER, pid])
                attrs, changed = base, []
                if i > 0:
                    n = int(member_rng.integers(config.family_mutations[0], config.family_mutations[1] + 1))
                    attrs, changed = mutate_attributes(member_rng, base, n)
                    while _visible_key(attrs) in drawn:  # siblings mutated alike would be twins
                        attrs, changed = mutate_attributes(member_rng, base, n)
                drawn.add(_visible_key(attrs))
                var_rng = np.random.default_rng([seed, _S_VARIATION, pid])
                level = config.variation + config.variation_spread * float(var_rng.uniform(-1, 1))
                level = round(min(1.0, max(0.0, level)), 4)
                n_cams = int(var_rng.integers(config.cameras_per_id[0], config.cameras_per_id[1] + 1))
                cams = sorted(int(c) for c in var_rng.choice(config.num_cameras, min(n_cams, config.num_cameras), replace=False))
                counts = {}
                for cam in cams:
                    n_img = int(var_rng.integers(config.images_per_camera[0], config.images_per_camera[1] + 1))
                    counts[cam] = max(2, n_img) if split == "test" else n_img
                identities[pid] = {
                    "split": split, "family": family_id, "variation": level, "mutated": changed,
                    "attributes": attrs, "counts": counts,
                    "visits": {cam: _visit_state(seed, pid, cam, attrs, level) for cam in cams},
                }
            family_id += 1

    jobs = []  # (kind, pid, cam, index, relative path)
    for pid in sorted(identities):
        ident = identities[pid]
        for cam, count in ident["counts"].items():
            name_rng = np.random.default_rng([seed, _S_VISIT, pid, cam, 1])
            seq, frame0 = int(name_rng.integers(1, 7)), int(name_rng.integers(0, 900000))
            for i in range(count):
                folder = "bounding_box_train" if ident["split"] == "train" else ("query" if i == 0 else "bounding_box_test")
                name = f"{pid:04d}_c{cam + 1}s{seq}_{frame0 + 1 + 25 * i:06d}_01.jpg"
                jobs.append(("person", pid, cam, i, f"{folder}/{name}"))
    for kind, stream, count, prefix in (("distractor", _S_DISTRACTOR, config.num_distractors, "0000"),
                                        ("junk", _S_JUNK, config.num_junk, "-1")):
        for k in range(count):
            r = np.random.default_rng([seed, stream, k, 0])
            cam = int(r.integers(config.num_cameras))
            jobs.append((kind, 0, cam, k, f"bounding_box_test/{prefix}_c{cam + 1}s{int(r.integers(1, 7))}_{k * 37 + 11:06d}_01.jpg"))
    return {
        "seed": seed, "config": config, "identities": identities, "jobs": jobs,
        "scenes": {s: _scene_params(seed, s, config) for s in range(config.num_scenes)},
        "cameras": {c: _camera_params(seed, c, config) for c in range(config.num_cameras)},
    }


# --------------------------------------------------------------------------- backgrounds

SCENE_TEMPLATES = ("street", "mall", "park", "station", "campus", "night")
# Base colours per scene template (walls/facades and floors), jittered per scene and per camera.
SCENE_WALLS = {
    "street": ((200, 185, 160), (170, 170, 175), (150, 110, 90), (215, 210, 200)),
    "mall": ((220, 215, 205), (200, 200, 210), (190, 180, 170)),
    "park": ((120, 150, 90), (100, 130, 100), (140, 150, 80)),
    "station": ((120, 140, 160), (160, 160, 165), (90, 100, 120)),
    "campus": ((150, 70, 50), (170, 95, 70), (120, 60, 45)),
    "night": ((60, 60, 70), (45, 45, 55), (70, 60, 55)),
}
SCENE_GROUNDS = {
    "street": ((90, 90, 95), (110, 105, 100), (70, 72, 78)),
    "mall": ((200, 195, 185), (170, 165, 160), (215, 205, 190)),
    "park": ((95, 125, 60), (180, 160, 120), (120, 110, 90)),
    "station": ((80, 80, 85), (120, 120, 120), (100, 95, 90)),
    "campus": ((140, 140, 140), (170, 160, 150), (125, 120, 115)),
    "night": ((40, 40, 45), (55, 50, 50), (35, 38, 45)),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR))


def _background_texture(seed: int, cam: int, scene: dict[str, Any], camera: dict[str, Any], h: int, w: int) -> np.ndarray:
    """A wide strip of one camera's background; images take random horizontal windows of it."""
    rng = np.random.default_rng([seed, _S_CAMERA, cam, 1])
    wall = np.clip(np.array(scene["wall"], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
    ground = np.clip(np.array(scene["ground"], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
    horizon = int(h * camera["horizon"])
    yy, xx = np.mgrid[0:h, 0:w]
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = wall
    template = scene["template"]
    if template in ("street", "night"):
        px, py = int(rng.integers(40, 70)), int(rng.integers(50, 80))
        win = ((xx % px) < px * 0.55) & ((yy % py) < py * 0.5) & ((yy % py) > py * 0.1)
        lit = (rng.random((h // py + 1, w // px + 1)) < (0.35 if template == "night" else 0.15))[yy // py, xx // px]
        dark = wall * 0.45 if template == "street" else wall * 0.3
        tex[win] = dark
        tex[win & lit] = (235, 215, 140)
    elif template == "mall":
        edges = np.cumsum(rng.integers(60, 140, w // 60 + 2))
        seg = np.searchsorted(edges, xx[0])
        colors = np.array([COLORS[c] for c in GARMENT_COLORS], np.float32)[rng.integers(len(COLORS), size=len(edges) + 1)]
        tex[:] = 0.55 * colors[seg][None, :, :] + 0.45 * wall
        tex[yy < h * 0.15] = wall * 0.5
    elif template == "park":
        n = _smooth_noise(rng, h, w, 18)[..., None]
        tex[:] = (1 - n) * np.array((30, 70, 30)) + n * np.array((110, 160, 80)) * (wall / wall.mean())
        for x in rng.integers(0, w, w // 90):
            tex[:, x:x + int(rng.integers(8, 18))] = (80, 55, 35)
    elif template == "station":
        period = int(rng.integers(40, 80))
        tex[((xx // period) % 2 == 1)] = wall * 0.75
        for x in rng.integers(0, w, w // 150 + 1):
            tex[int(h * 0.2):int(h * 0.4), x:x + 50] = COLORS[GARMENT_COLORS[int(rng.integers(len(GARMENT_COLORS)))]]
    elif template == "campus":
        rh, bw = 14, 34
        offset = ((yy // rh) % 2) * (bw // 2)
        mortar = ((yy % rh) < 2) | (((xx + offset) % bw) < 2)
        tex[:] = wall * (0.85 + 0.3 * rng.random((h // rh + 1, w // bw + 2))[yy // rh, (xx + offset) // bw])[..., None]
        tex[mortar] = (190, 185, 175)
    floor = yy >= horizon
    grain = _smooth_noise(rng, h, w, 6)[..., None]
    tex[floor] = (ground * (0.85 + 0.3 * grain))[floor]
    if template in ("mall", "campus"):
        tile = int(rng.integers(24, 40))
        tex[floor & (((xx % tile) < 2) | (((yy - horizon) % tile) < 2))] *= 0.8
    elif template == "station":
        tex[(yy >= horizon + 6) & (yy < horizon + 12)] = (210, 180, 40)
    tex[np.abs(yy - horizon) < 2] *= 0.6
    tex *= 0.9 + 0.2 * _smooth_noise(rng, h, w, 40)[..., None]
    return np.clip(tex, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- drawing people


def _rgb(name: str, shade: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(min(255, c * shade)) for c in COLORS[name])


def _limb(draw: ImageDraw.ImageDraw, p0, p1, w0: float, w1: float, fill) -> None:
    """A tapered quad from p0 (width w0) to p1 (width w1), with a round end at p1."""
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    nx, ny = -(y1 - y0) / length, (x1 - x0) / length
    draw.polygon([(x0 + nx * w0 / 2, y0 + ny * w0 / 2), (x1 + nx * w1 / 2, y1 + ny * w1 / 2),
                  (x1 - nx * w1 / 2, y1 - ny * w1 / 2), (x0 - nx * w0 / 2, y0 - ny * w0 / 2)], fill=fill)
    draw.ellipse([x1 - w1 / 2, y1 - w1 / 2, x1 + w1 / 2, y1 + w1 / 2], fill=fill)


def _lerp(p0, p1, t: float):
    return (p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]))


def _pattern(box: tuple[int, int, int, int], attrs: dict[str, Any], top: float, ph: float, y_mid: float, shade: float) -> Image.Image:
    """The upper garment's pattern over the canvas region `box` (stripes keep their phase across regions)."""
    x0, y0, x1, y1 = box
    c1, c2 = np.array(_rgb(attrs["upper_color"], shade), np.uint8), np.array(_rgb(attrs["upper_color2"], shade), np.uint8)
    period = max(2.0, attrs["pattern_period"] * ph)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    kind = attrs["upper_pattern"]
    if kind == "hstripes":
        second = np.broadcast_to(((yy - top) / period) % 2 < 1, (y1 - y0, x1 - x0))
    elif kind == "vstripes":
        second = np.broadcast_to((xx / period) % 2 < 1, (y1 - y0, x1 - x0))
    elif kind == "checks":
        second = (((yy - top) / period) % 2 < 1) ^ ((xx / period) % 2 < 1)
    else:  # twotone: lower half of the garment in the second colour
        second = np.broadcast_to(yy > y_mid, (y1 - y0, x1 - x0))
    return Image.fromarray(np.where(second[..., None], c2, c1))


def draw_person(img: Image.Image, attrs: dict[str, Any], visit: dict[str, Any], view: str, pose: dict[str, float],
                cx: float, feet: float, box_h: float) -> None:
    """Draw one pedestrian onto `img` (feet at `feet`, centred at `cx`), layered back to front."""
    draw = ImageDraw.Draw(img)
    shade = visit["shade"]
    skin, hair = SKIN_TONES[attrs["skin"]], HAIR_COLORS[attrs["hair_color"]]
    lower = _rgb(attrs["lower_color"], shade)
    ph = box_h * attrs["height"] * pose["scale"]
    top = feet - ph
    side = 0 if view in ("front", "back") else (1 if view == "right" else -1)
    hh = 0.13 * ph * attrs["head"]
    hw = hh * 0.8
    y_sh = top + hh * 1.12
    y_hip = feet - ph * attrs["legs"]
    sw = ph * attrs["shoulder"] * (0.55 if side else 1.0)
    hipw = ph * attrs["hip"] * (0.7 if side else 1.0)
    aw, y_bottom = ph * 0.05, y_hip + 0.02 * ph
    sleeves = visit["sleeves"]

    # Legs, lower garment and shoes.
    if side:
        hips = [(cx, y_hip), (cx, y_hip)]
        ankles = [(cx + side * pose["stride"] / 2, feet - 0.03 * ph), (cx - side * pose["stride"] / 2, feet - 0.03 * ph)]
        leg_w = (hipw * 1.4, ph * 0.05)
    else:
        hips = [(cx - hipw * 0.5, y_hip), (cx + hipw * 0.5, y_hip)]
        ankles = [(cx - hipw * 0.5 - pose["stance"], feet - 0.03 * ph), (cx + hipw * 0.5 + pose["stance"], feet - 0.03 * ph)]
        leg_w = (hipw * 0.95, hipw * 0.6)
    for hip, ankle in zip(hips, ankles):
        if attrs["lower_type"] == "trousers":
            _limb(draw, hip, ankle, leg_w[0], leg_w[1], lower)
        else:
            _limb(draw, hip, ankle, leg_w[0], leg_w[1], skin)
            if attrs["lower_type"] == "shorts":
                knee = _lerp(hip, ankle, 0.4)
                _limb(draw, hip, knee, leg_w[0], leg_w[0] * 0.85 + leg_w[1] * 0.15, lower)
        ax, ay = ankle
        fx0, fx1 = (ax - 0.03 * ph, ax + 0.03 * ph) if not side else (ax - 0.025 * ph + side * 0.02 * ph, ax + 0.025 * ph + side * 0.035 * ph)
        draw.ellipse([min(fx0, fx1), ay - 0.01 * ph, max(fx0, fx1), feet], fill=_rgb(attrs["shoe_color"]))
    if attrs["lower_type"] == "skirt":
        flare = 1.6 if not side else 1.9
        y_hem = y_hip + 0.45 * (feet - y_hip)
        draw.polygon([(cx - hipw * 1.05, y_hip - 0.02 * ph), (cx + hipw * 1.05, y_hip - 0.02 * ph),
                      (cx + hipw * flare, y_hem), (cx - hipw * flare, y_hem)], fill=lower)
    else:
        draw.polygon([(cx - hipw * 1.02, y_hip - 0.02 * ph), (cx + hipw * 1.02, y_hip - 0.02 * ph),
                      (cx + hipw * 0.8, y_hip + 0.07 * ph), (cx - hipw * 0.8, y_hip + 0.07 * ph)], fill=lower)

    # A backpack seen from the side sits behind the torso.
    bag_rgb = _rgb(attrs["bag_color"], shade)
    if visit["bag"] == "backpack" and side:
        x_in = cx - side * sw * 0.8
        x_out = cx - side * (sw + 0.08 * ph)
        draw.rounded_rectangle([min(x_in, x_out), y_sh + 0.02 * ph, max(x_in, x_out), y_sh + 0.22 * ph], radius=0.02 * ph, fill=bag_rgb)

    # Arms (skin), then the garment over torso and sleeves, then the open jacket.
    if side:
        shoulders = [(cx, y_sh + 0.03 * ph)] * 2
        hands = [(cx - side * pose["swing"] * 0.8, y_hip + 0.05 * ph), (cx + side * pose["swing"], y_hip + 0.06 * ph)]
    else:
        shoulders = [(cx - sw + aw * 0.45, y_sh + 0.03 * ph), (cx + sw - aw * 0.45, y_sh + 0.03 * ph)]
        hands = [(cx - hipw - aw * 0.8 - pose["swing"] * 0.3, y_hip + 0.06 * ph), (cx + hipw + aw * 0.8 + pose["swing"] * 0.3, y_hip + 0.06 * ph)]
    for s, h in zip(shoulders, hands):
        _limb(draw, s, h, aw, aw * 0.7, skin)
    torso = [(cx - sw * 0.75, y_sh - 0.012 * ph), (cx + sw * 0.75, y_sh - 0.012 * ph), (cx + sw, y_sh + 0.03 * ph),
             (cx + hipw * 1.05, y_bottom), (cx - hipw * 1.05, y_bottom), (cx - sw, y_sh + 0.03 * ph)]

    def garment_mask(sleeve_frac: float, extend: float) -> Image.Image:
        mask = Image.new("L", img.size, 0)
        mdraw = ImageDraw.Draw(mask)
        pts = torso[:3] + [(cx + hipw * 1.1, y_bottom + extend), (cx - hipw * 1.1, y_bottom + extend)] + torso[5:]
        mdraw.polygon(pts, fill=255)
        for s, h in zip(shoulders, hands):
            _limb(mdraw, s, _lerp(s, h, sleeve_frac), aw * 1.1, aw * (1.05 if sleeve_frac < 0.5 else 0.85), 255)
        return mask

    mask = garment_mask(0.88 if sleeves == "long" else 0.35, 0.0)
    box = mask.getbbox()
    if attrs["upper_pattern"] == "solid":
        img.paste(_rgb(attrs["upper_color"], shade), box, mask.crop(box))
    elif box is not None:
        img.paste(_pattern(box, attrs, top, ph, (y_sh + y_bottom) / 2, shade), box, mask.crop(box))
    if view == "front" and attrs["logo"] != "none":
        r, lx, ly = 0.03 * ph, cx, y_sh + 0.1 * ph
        shape = draw.ellipse if attrs["logo"] == "circle" else draw.rectangle
        shape([lx - r, ly - r, lx + r, ly + r], fill=_rgb(attrs["logo_color"], shade))
    if visit["jacket"]:
        mask = garment_mask(0.9, 0.05 * ph)
        if view == "front":  # open jacket: the shirt shows in a strip down the middle
            ImageDraw.Draw(mask).polygon([(cx - sw * 0.28, y_sh - 0.02 * ph), (cx + sw * 0.28, y_sh - 0.02 * ph),
                                          (cx + hipw * 0.35, y_bottom + 0.06 * ph), (cx - hipw * 0.35, y_bottom + 0.06 * ph)], fill=0)
        box = mask.getbbox()
        img.paste(_rgb(attrs["jacket_color"], shade), box, mask.crop(box))
    for h in hands:
        draw.ellipse([h[0] - aw * 0.4, h[1] - aw * 0.3, h[0] + aw * 0.4, h[1] + aw * 0.5], fill=skin)

    # Bags worn on the body.
    strap = max(1, int(0.015 * ph))
    if visit["bag"] == "backpack" and view == "back":
        draw.rounded_rectangle([cx - hipw * 0.85, y_sh + 0.03 * ph, cx + hipw * 0.85, y_sh + 0.03 * ph + 0.6 * (y_hip - y_sh)],
                               radius=0.02 * ph, fill=bag_rgb)
    elif visit["bag"] == "backpack" and view == "front":
        for s in (-1, 1):
            draw.line([(cx + s * sw * 0.55, y_sh), (cx + s * sw * 0.6, y_sh + 0.2 * ph)], fill=bag_rgb, width=strap)
    elif visit["bag"] == "shoulder":
        if not side:
            s = 1 if view == "front" else -1
            draw.line([(cx - s * sw * 0.7, y_sh), (cx + s * hipw * 1.15, y_hip - 0.03 * ph)], fill=bag_rgb, width=strap)
            bx = cx + s * (hipw * 1.15 + 0.03 * ph)
        else:
            bx = cx - side * 0.01 * ph
        draw.rounded_rectangle([bx - 0.05 * ph, y_hip - 0.05 * ph, bx + 0.05 * ph, y_hip + 0.06 * ph], radius=0.01 * ph, fill=bag_rgb)
    elif visit["bag"] == "handbag":
        hx, hy = hands[1]
        draw.rectangle([hx - 0.035 * ph, hy + 0.01 * ph, hx + 0.035 * ph, hy + 0.08 * ph], fill=bag_rgb)

    # Neck, hair behind the head, head, face, hair on top, hat.
    hcx = cx + side * 0.012 * ph
    draw.rectangle([cx - hw * 0.22, top + hh * 0.8, cx + hw * 0.22, y_sh + 0.01 * ph], fill=skin)
    style = attrs["hair_style"]
    if style == "long":
        x0, x1 = (hcx - hw * 0.6, hcx + hw * 0.6) if not side else sorted((hcx - side * hw * 0.55, hcx + side * hw * 0.05))
        draw.rounded_rectangle([x0, top + hh * 0.3, x1, y_sh + 0.1 * ph], radius=0.02 * ph, fill=hair)
    head_box = [hcx - hw / 2, top, hcx + hw / 2, top + hh]
    if view == "back":
        draw.ellipse(head_box, fill=skin if style == "bald" else hair)
        if style == "ponytail":
            draw.rounded_rectangle([hcx - hw * 0.12, top + hh * 0.5, hcx + hw * 0.12, y_sh + 0.05 * ph], radius=0.01 * ph, fill=hair)
    else:
        if style != "bald":
            draw.ellipse([head_box[0] - hw * 0.04, top - hh * 0.03, head_box[2] + hw * 0.04, top + hh * 0.9], fill=hair)
        face_x = (hcx - hw * 0.42, hcx + hw * 0.42) if not side else sorted((hcx - side * hw * 0.1, hcx + side * hw * 0.52))
        draw.ellipse([face_x[0], top + hh * (0.3 if style != "bald" else 0.0), face_x[1], top + hh], fill=skin)
        if style == "ponytail" and side:
            px = hcx - side * hw * 0.55
            draw.ellipse([px - hw * 0.15, top + hh * 0.3, px + hw * 0.15, top + hh * 0.85], fill=hair)
        if view == "front":
            r = max(1.0, 0.006 * ph)
            for s in (-1, 1):
                draw.ellipse([hcx + s * hw * 0.2 - r, top + hh * 0.55 - r, hcx + s * hw * 0.2 + r, top + hh * 0.55 + r], fill=(40, 30, 30))
    if visit["hat"] != "none":
        hat = _rgb(attrs["hat_color"], shade)
        height = 0.5 if visit["hat"] == "beanie" else 0.42
        draw.pieslice([head_box[0] - hw * 0.06, top - hh * 0.08, head_box[2] + hw * 0.06, top + hh * 2 * height], 180, 360, fill=hat)
        if visit["hat"] == "cap":
            y = top + hh * height
            if side:
                x0, x1 = sorted((hcx + side * hw * 0.3, hcx + side * hw * 0.95))
                draw.rectangle([x0, y - hh * 0.06, x1, y + hh * 0.02], fill=hat)
            elif view == "front":
                draw.ellipse([hcx - hw * 0.5, y - hh * 0.08, hcx + hw * 0.5, y + hh * 0.1], fill=hat)


def _draw_occluder(img: Image.Image, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """Something between camera and person: a pole, a car, a bin, or a passer-by at the edge."""
    draw = ImageDraw.Draw(img)
    x0, y0, bw, bh = box
    kind = ("pole", "car", "bin", "passerby")[int(rng.integers(4))]
    color = _rgb(GARMENT_COLORS[int(rng.choice(len(GARMENT_COLORS), p=GARMENT_WEIGHTS / GARMENT_WEIGHTS.sum()))])
    if kind == "pole":
        x, w = x0 + rng.uniform(0.05, 0.95) * bw, rng.uniform(0.06, 0.14) * bw
        gray = int(rng.integers(40, 140))
        draw.rectangle([x - w / 2, 0, x + w / 2, img.height], fill=(gray, gray, gray + 10))
    elif kind == "car":
        top = y0 + rng.uniform(0.55, 0.8) * bh
        left = rng.random() < 0.5
        edge = x0 + rng.uniform(0.35, 0.9) * bw
        xa, xb = (0, edge) if left else (x0 + bw - (edge - x0), img.width)
        draw.rounded_rectangle([xa, top, xb, img.height], radius=0.05 * bw, fill=color)
        draw.rectangle([xa, top + 0.04 * bh, xb, top + 0.1 * bh], fill=(40, 45, 55))
    elif kind == "bin":
        w, h = rng.uniform(0.3, 0.6) * bw, rng.uniform(0.2, 0.4) * bh
        x = x0 + rng.uniform(0.1, 0.9) * bw
        draw.rectangle([x - w / 2, y0 + bh - h, x + w / 2, img.height], fill=color)
    else:
        side = -1 if rng.random() < 0.5 else 1
        x = x0 + bw / 2 + side * bw * rng.uniform(0.45, 0.7)
        other = random_attributes(rng)
        visit = {"jacket": False, "bag": "none", "hat": "none", "sleeves": other["sleeves"], "shade": 1.0}
        pose = {"scale": float(rng.uniform(0.95, 1.15)), "stride": 0.1 * bh, "stance": 0.0, "swing": 0.03 * bh}
        draw_person(img, other, visit, VIEWS[int(rng.integers(4))], pose, x, y0 + bh * rng.uniform(0.98, 1.1), bh)


# --------------------------------------------------------------------------- rendering images

_WORKER: dict[str, Any] = {}


def _init_worker(plan: dict[str, Any]) -> None:
    _WORKER.clear()
    _WORKER.update(plan=plan, textures={})


def _texture(cam: int, h: int, w: int) -> np.ndarray:
    textures = _WORKER["textures"]
    if cam not in textures:
        plan = _WORKER["plan"]
        camera = plan["cameras"][cam]
        textures[cam] = _background_texture(plan["seed"], cam, plan["scenes"][camera["scene"]], camera, h, w)
    return textures[cam]


def _render(job: tuple, root: str) -> None:
    kind, pid, cam, index, relpath = job
    plan = _WORKER["plan"]
    config: SynthConfig = plan["config"]
    seed = plan["seed"]
    out_h, out_w = config.image_size
    bh, bw = out_h * SUPERSAMPLE, out_w * SUPERSAMPLE
    ch, cw = int(bh * 1.5), int(bw * 2.0)
    bx0, by0 = (cw - bw) / 2, (ch - bh) / 2
    stream = {"person": _S_IMAGE, "distractor": _S_DISTRACTOR, "junk": _S_JUNK}[kind]
    rng = np.random.default_rng([seed, stream, pid, cam, index, 1] if kind == "person" else [seed, stream, index, 1])
    camera = plan["cameras"][cam]
    scene = plan["scenes"][camera["scene"]]

    texture = _texture(cam, ch, cw * 3)
    offset = int(rng.integers(0, texture.shape[1] - cw))
    img = Image.fromarray(texture[:, offset:offset + cw])

    jitter = config.pose_jitter
    pose = {"scale": float(1 + 0.03 * jitter * rng.uniform(-1, 1)),
            "stride": bh * (0.1 + 0.06 * jitter * rng.uniform(-1, 1)),
            "stance": bh * 0.02 * jitter * rng.random(),
            "swing": bh * 0.06 * jitter * rng.uniform(-1, 1)}
    view = VIEWS[int(rng.choice(4, p=camera["view_probs"]))]
    cx = cw / 2 + 0.05 * jitter * bw * rng.uniform(-1, 1)
    feet = by0 + bh * (0.97 + 0.02 * jitter * rng.uniform(-1, 1))
    shift = config.misalignment
    if kind == "person":
        ident = plan["identities"][pid]
        draw_person(img, ident["attributes"], ident["visits"][cam], view, pose, cx, feet, bh)
    elif kind == "junk" or rng.random() < 0.6:  # a stranger (distractor) or a fragment of one (junk)
        attrs = random_attributes(rng)
        visit = {"jacket": bool(rng.random() < 0.3), "bag": attrs["bag"], "hat": attrs["hat"], "sleeves": attrs["sleeves"], "shade": 1.0}
        draw_person(img, attrs, visit, view, pose, cx, feet, bh)
        shift = 0.45 if kind == "junk" else float(rng.uniform(0.2, 0.35))
    if rng.random() < (config.occlusion_prob if kind == "person" else 0.8):
        _draw_occluder(img, rng, (bx0, by0, bw, bh))

    dx, dy = rng.uniform(-shift, shift) * bw, rng.uniform(-shift, shift) * bh * 0.6
    scale = 1 + rng.uniform(-min(shift, 0.2), min(shift, 0.2))
    w, h = bw * scale, bh * scale
    x0 = min(max(0.0, bx0 + (bw - w) / 2 + dx), cw - w)
    y0 = min(max(0.0, by0 + (bh - h) / 2 + dy), ch - h)
    img = img.resize((out_w, out_h), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
    if scene["blur"] > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(scene["blur"]))

    arr = np.asarray(img, np.float32) / 255.0
    gain = scene["gain"] * camera["gain"] * float(rng.uniform(0.9, 1.1))
    axis, amount = camera["gradient"]
    ramp = np.linspace(1 - amount / 2, 1 + amount / 2, arr.shape[axis], dtype=np.float32)
    ramp = ramp[:, None, None] if axis == 0 else ramp[None, :, None]
    cast = np.asarray(scene["cast"], np.float32) * np.asarray(camera["cast"], np.float32)
    arr = np.clip(arr * gain * cast * ramp, 0, 1) ** scene["gamma"] * 255.0
    arr += rng.normal(0.0, scene["noise"], arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    out.save(os.path.join(root, relpath), format="JPEG", quality=config.jpeg_quality)


def _render_chunk(args: tuple[list[tuple], str]) -> int:
    jobs, root = args
    for job in jobs:
        _render(job, root)
    return len(jobs)


# --------------------------------------------------------------------------- public API


def _meta(plan: dict[str, Any]) -> dict[str, Any]:
    config: SynthConfig = plan["config"]
    counts = {d: 0 for d in SPLIT_DIRS}
    for job in plan["jobs"]:
        counts[job[4].split("/")[0]] += 1
    families: dict[str, list[str]] = {}
    for pid in sorted(plan["identities"]):
        families.setdefault(str(plan["identities"][pid]["family"]), []).append(f"{pid:04d}")
    return {
        "format": FORMAT,
        "seed": plan["seed"],
        "knobs": config.to_json(),
        "image_size": list(config.image_size),
        "cameras": {str(c + 1): cam for c, cam in plan["cameras"].items()},
        "scenes": {str(s): scene for s, scene in plan["scenes"].items()},
        "identities": {
            f"{pid:04d}": {
                "split": ident["split"], "family": ident["family"], "variation": ident["variation"],
                "mutated_groups": ident["mutated"], "attributes": ident["attributes"],
                "cameras": {str(c + 1): {"images": ident["counts"][c], **ident["visits"][c]} for c in ident["counts"]},
            }
            for pid, ident in sorted(plan["identities"].items())
        },
        "families": families,
        "counts": counts,
        "num_distractors": config.num_distractors,
        "num_junk": config.num_junk,
    }


def load_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read a SynthReID ``meta.json``."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a SynthReID folder; create one with `reidlab synth {root}` "
                                "or reidlab.data.synth.generate(root)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}; made by another reidlab version: regenerate it "
                         f"with `reidlab synth --overwrite {root}`")
    return meta


def train_identities(dataset) -> dict[int, dict[str, Any]]:
    """The ``meta.json`` entry (family, variation, attributes) of each train identity of a SynthReID dataset, by
    its relabelled pid (the classifier's row): file names start with the generator's own pid."""
    entries = {}
    for record in dataset.train:
        if record.pid not in entries:
            entries[record.pid] = dataset.meta["identities"][Path(record.path).name.split("_")[0]]
    return entries


def _is_complete(root: Path, seed: int, config: SynthConfig) -> bool:
    try:
        meta = load_meta(root)
    except (FileNotFoundError, ValueError, json.JSONDecodeError):
        return False
    if meta["seed"] != seed or meta["knobs"] != config.to_json():
        return False
    return all(len(list((root / d).glob("*.jpg"))) == n for d, n in meta["counts"].items())


def _difference(root: Path, seed: int, config: SynthConfig) -> str:
    """What separates the SynthReID at `root` from the one asked for, in words."""
    try:
        meta = load_meta(root)
    except (ValueError, json.JSONDecodeError) as error:
        return f"unreadable meta.json: {error}"
    wanted = config.to_json()
    changes = [f"seed {meta['seed']} -> {seed}"] if meta["seed"] != seed else []
    changes += [f"{k} {meta['knobs'].get(k)!r} -> {v!r}" for k, v in wanted.items() if meta["knobs"].get(k) != v]
    return ", ".join(changes) or "same settings but missing images"


def generate(root: str | os.PathLike, seed: int = 0, *, workers: int | None = None, overwrite: bool = False,
             **knobs: Any) -> Path:
    """Write SynthReID to `root` and return its path (knobs: see `SynthConfig`).

    A `root` that already holds this exact dataset (same seed, knobs, file counts) is reused. One holding
    another SynthReID raises FileExistsError naming what differs, unless `overwrite=True` (runs trained on
    it must not find their data swapped underneath); a non-empty folder that is not SynthReID always raises.
    The images are written into ``<root>.partial`` and moved into place at the end, so an interrupted run
    never looks complete. `workers` processes draw images (default: up to 2); output does not depend on it.
    """
    _check_knob_names(knobs)
    config = SynthConfig(**knobs)
    root = Path(root)
    if _is_complete(root, seed, config):
        return root
    if root.exists() and any(root.iterdir()) and not (root / "meta.json").is_file():
        raise FileExistsError(f"{root} exists, is not empty and holds no SynthReID meta.json; choose an empty or new folder")
    if (root / "meta.json").is_file() and not overwrite:
        raise FileExistsError(f"{root} holds another SynthReID ({_difference(root, seed, config)}); pass "
                              "overwrite=True (`reidlab synth --overwrite`) to replace it, or choose another root")
    partial = root.resolve().with_name(root.resolve().name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for d in SPLIT_DIRS:
        (partial / d).mkdir(parents=True)

    plan = build_plan(seed, config)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    jobs = plan["jobs"]
    if workers <= 1:
        _init_worker(plan)
        _render_chunk((jobs, str(partial)))
    else:
        # Chunks keep the per-camera texture cache warm; files do not depend on which worker draws them.
        chunks = [(jobs[i:i + 64], str(partial)) for i in range(0, len(jobs), 64)]
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(plan,)) as pool:
            for _ in pool.imap_unordered(_render_chunk, chunks):
                pass
    (partial / "meta.json").write_text(json.dumps(_meta(plan), indent=1))
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)
    return root

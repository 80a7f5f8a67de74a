"""The dataset plan: splits, families, attributes, camera visits and the list of images, everything but pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import _S_DISTRACTOR, _S_FAMILY, _S_JUNK, _S_MEMBER, _S_SPLIT, _S_SUBJECT, _S_VARIATION, _S_VISIT, SynthConfig
from .people import _visible_key, mutate_attributes, random_attributes, with_texture
from .scenes import _camera_params, _scene_params
from .vehicles import mutate_vehicle, random_vehicle, vehicle_key


def _family_subject(seed: int, family_id: int, config: SynthConfig) -> str:
    if config.subject != "mixed":
        return config.subject
    return "vehicle" if np.random.default_rng([seed, _S_SUBJECT, family_id]).random() < 0.5 else "person"


def _family_base(rng: np.random.Generator, subject: str, config: SynthConfig, drawn: set[tuple]) -> dict[str, Any]:
    """A family's attributes, unlike every identity drawn so far."""
    while True:
        base = random_vehicle(rng) if subject == "vehicle" else with_texture(rng, random_attributes(rng), config.texture)
        if _identity_key(base, subject) not in drawn:
            return base


def _identity_key(attrs: dict[str, Any], subject: str) -> tuple:
    return (subject, vehicle_key(attrs) if subject == "vehicle" else _visible_key(attrs))


def _vehicle_visit(seed: int, pid: int, cam: int, level: float) -> dict[str, Any]:
    """A vehicle changes only in light and dirt between cameras (``variation`` scales it)."""
    rng = np.random.default_rng([seed, _S_VISIT, pid, cam])
    return {"shade": round(max(0.7, min(1.3, 1.0 + 0.15 * level * float(rng.standard_normal()))), 4)}

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
            subject = _family_subject(seed, family_id, config)
            base = _family_base(family_rng, subject, config, drawn)
            mutate = mutate_vehicle if subject == "vehicle" else mutate_attributes
            for i, pid in enumerate(members):
                member_rng = np.random.default_rng([seed, _S_MEMBER, pid])
                attrs, changed = base, []
                if i > 0:
                    n = int(member_rng.integers(config.family_mutations[0], config.family_mutations[1] + 1))
                    attrs, changed = mutate(member_rng, base, n)
                    while _identity_key(attrs, subject) in drawn:  # siblings mutated alike would be twins
                        attrs, changed = mutate(member_rng, base, n)
                drawn.add(_identity_key(attrs, subject))
                var_rng = np.random.default_rng([seed, _S_VARIATION, pid])
                level = config.variation + config.variation_spread * float(var_rng.uniform(-1, 1))
                level = round(min(1.0, max(0.0, level)), 4)
                n_cams = int(var_rng.integers(config.cameras_per_id[0], config.cameras_per_id[1] + 1))
                cams = sorted(int(c) for c in var_rng.choice(config.num_cameras, min(n_cams, config.num_cameras), replace=False))
                counts = {}
                for cam in cams:
                    n_img = int(var_rng.integers(config.images_per_camera[0], config.images_per_camera[1] + 1))
                    counts[cam] = max(2, n_img) if split == "test" else n_img
                visit = (lambda cam: _vehicle_visit(seed, pid, cam, level)) if subject == "vehicle" else (
                    lambda cam: _visit_state(seed, pid, cam, attrs, level))
                identities[pid] = {
                    "split": split, "family": family_id, "subject": subject, "variation": level, "mutated": changed,
                    "attributes": attrs, "counts": counts, "visits": {cam: visit(cam) for cam in cams},
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



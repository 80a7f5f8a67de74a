"""Drawing the images of a plan: one JPEG per job, in worker processes that keep per-camera textures."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from .config import _S_DISTRACTOR, _S_IMAGE, _S_JUNK, SUPERSAMPLE, VIEWS, SynthConfig
from .people import _draw_occluder, draw_person, random_attributes
from .scenes import _background_texture, colour_transform
from .vehicles import draw_vehicle

# A person's view and the vehicle face it corresponds to (side: +1 facing right, -1 left).
VEHICLE_FACE = {"front": ("front", 1), "back": ("rear", 1), "left": ("side", -1), "right": ("side", 1)}

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
    if kind == "person" and plan["identities"][pid]["subject"] == "vehicle":
        ident = plan["identities"][pid]
        face, side = VEHICLE_FACE[view]
        draw_vehicle(img, ident["attributes"], face, side, cx, feet, bw, ident["visits"][cam]["shade"])
    elif kind == "person":
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
    transform = colour_transform(camera)
    if transform is not None:
        arr = arr @ transform.T.astype(np.float32)
    arr += rng.normal(0.0, scene["noise"], arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    out.save(os.path.join(root, relpath), format="JPEG", quality=config.jpeg_quality)


def _render_chunk(args: tuple[list[tuple], str]) -> int:
    jobs, root = args
    for job in jobs:
        _render(job, root)
    return len(jobs)



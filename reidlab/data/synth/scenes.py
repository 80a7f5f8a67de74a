"""Scenes and cameras: illumination, colour, blur and noise per scene and camera, and background textures."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .config import _S_CAMERA, _S_SCENE, VIEWS, SynthConfig
from .people import COLORS, GARMENT_COLORS

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
    camera = {
        "scene": cam * config.num_scenes // config.num_cameras,
        "gain": round(float(1.0 + config.color_cast * rng.uniform(-0.4, 0.4)), 4),
        "cast": [round(float(c), 4) for c in cast / cast.mean()],
        "gradient": [int(rng.integers(2)), round(float(config.color_cast * rng.uniform(0, 0.8)), 4)],
        "horizon": round(float(rng.uniform(0.45, 0.72)), 4),
        "view_probs": [round(float(p), 4) for p in views / views.sum()],
    }
    if config.camera_views == "fixed":  # cameras take the views in turn, from a per-seed start: f, b, l, r, f, b
        start = int(np.random.default_rng([seed, _S_CAMERA, 1 << 20]).integers(len(VIEWS)))
        camera["view_probs"] = [float(i == (cam + start) % len(VIEWS)) for i in range(len(VIEWS))]
    if config.color_shift > 0:  # a hue rotation about the grey axis and a saturation change, per camera
        shift = np.random.default_rng([seed, _S_CAMERA, cam, 3])
        camera["hue_rotation"] = round(float(config.color_shift * shift.uniform(-np.pi, np.pi)), 4)
        camera["saturation"] = round(float(1.0 + config.color_shift * shift.uniform(-0.6, 0.4)), 4)
    return camera


def colour_transform(camera: dict[str, Any]) -> np.ndarray | None:
    """The 3 x 3 RGB matrix of a camera's colour shift (None without one): Rodrigues' rotation by the camera's
    hue angle about the grey axis, then a saturation scaling about grey; luminance is kept up to clipping."""
    if "hue_rotation" not in camera:
        return None
    angle, axis = camera["hue_rotation"], np.ones(3) / np.sqrt(3.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    grey = np.full((3, 3), 1 / 3)
    return (grey + camera["saturation"] * (np.eye(3) - grey)) @ rotation


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



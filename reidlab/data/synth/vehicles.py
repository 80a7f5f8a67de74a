"""Vehicles: rigid objects whose appearance depends on the face a camera sees (the vehicle-like regime).

A vehicle has a model (body type and colour, grille, headlights, tail lights, window layout) and a few small
marks of its own (a rear sticker, a side decal, a roof box, a windscreen tag). Each face shows different parts:
the front its grille and headlights, the rear its tail lights, plate and sticker, a side its windows, wheels and
decal. The front and the rear of one car share only colour and rough outline, which is what makes many of a
vehicle's positive pairs "share few visual similarities". Same-model families share the model and differ only in
the small marks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

FACES = ("front", "rear", "side")
BODY_TYPES = ("sedan", "hatchback", "suv", "van", "pickup")
# Body colours of real traffic: mostly white, black, grey and silver, some colour.
BODY_COLORS = {"white": (230, 230, 228), "black": (28, 28, 32), "grey": (120, 122, 126), "silver": (185, 188, 192),
               "blue": (40, 70, 150), "red": (170, 30, 35), "green": (40, 95, 60), "beige": (200, 185, 150),
               "yellow": (225, 190, 40), "brown": (100, 65, 40)}
BODY_WEIGHTS = np.array([4, 3, 2.5, 2.5, 1, 1, 0.6, 0.6, 0.4, 0.4])
MARK_COLORS = ((220, 40, 40), (40, 120, 220), (250, 210, 40), (30, 160, 80), (240, 240, 240), (20, 20, 20))
# Height / width of the body in each face, per body type (front and rear: width = vehicle width).
PROPORTIONS = {"sedan": (0.55, 0.32), "hatchback": (0.62, 0.36), "suv": (0.78, 0.42), "van": (0.95, 0.5),
               "pickup": (0.72, 0.42)}
MODEL_KEYS = ("body", "color", "grille", "headlights", "taillights", "windows", "plate")
MARK_KEYS = ("sticker", "decal", "roof", "tag")


def _pick(rng: np.random.Generator, options: tuple, weights: np.ndarray | None = None) -> Any:
    p = None if weights is None else weights / weights.sum()
    return options[int(rng.choice(len(options), p=p))]


def _draw_marks(rng: np.random.Generator, attrs: dict[str, Any]) -> None:
    attrs["sticker"] = [int(rng.integers(3)), int(rng.integers(len(MARK_COLORS)))]  # position, colour
    attrs["decal"] = ["none", "stripe", "flame", "dots"][int(rng.integers(4))]
    attrs["decal_color"] = int(rng.integers(len(MARK_COLORS)))
    attrs["roof"] = ["none", "none", "box", "rack"][int(rng.integers(4))]
    attrs["tag"] = int(rng.integers(3))  # windscreen tag: none, left, right


def random_vehicle(rng: np.random.Generator) -> dict[str, Any]:
    """A full vehicle: the model (shared by a family) and its own small marks."""
    attrs: dict[str, Any] = {
        "body": _pick(rng, BODY_TYPES, np.array([3, 2, 2.5, 1.2, 1])),
        "color": _pick(rng, tuple(BODY_COLORS), BODY_WEIGHTS),
        "grille": ["bars", "mesh", "slot", "wide"][int(rng.integers(4))],
        "headlights": ["round", "rect", "slim", "angled"][int(rng.integers(4))],
        "taillights": ["round", "rect", "bar", "vertical"][int(rng.integers(4))],
        "windows": int(rng.integers(2, 4)),
        "plate": ["center", "low"][int(rng.integers(2))],
    }
    _draw_marks(rng, attrs)
    return attrs


def vehicle_key(attrs: dict[str, Any]) -> tuple:
    """What must differ between two vehicles: every attribute shows on some face, but a decal's colour only with
    a decal."""
    shown = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
    if shown["decal"] == "none":
        del shown["decal_color"]
    return tuple(sorted(shown.items()))


def mutate_vehicle(rng: np.random.Generator, base: dict[str, Any], num_mutations: int) -> tuple[dict[str, Any], list[str]]:
    """A same-model sibling: the model kept, ``num_mutations`` of the small marks redrawn until they differ."""
    attrs = dict(base)
    marks = [str(m) for m in rng.choice(MARK_KEYS, size=min(num_mutations, len(MARK_KEYS)), replace=False)]
    for mark in marks:
        while attrs[mark] == base[mark]:
            fresh = dict(attrs)
            _draw_marks(rng, fresh)
            attrs[mark] = fresh[mark]
            if mark == "decal":
                attrs["decal_color"] = fresh["decal_color"]
    return attrs, marks


def draw_vehicle(img: Image.Image, attrs: dict[str, Any], face: str, side: int, cx: float, ground: float,
                 box_w: float, shade: float = 1.0) -> None:
    """Draw one vehicle seen from ``face`` (``side``: +1 facing right, -1 left), bottom at ``ground``, about
    ``box_w`` wide, onto ``img``."""
    draw = ImageDraw.Draw(img)
    body_rgb = tuple(int(min(255, c * shade)) for c in BODY_COLORS[attrs["color"]])
    dark, glass = (25, 25, 30), (70, 90, 110)
    height_ratio, cabin_ratio = PROPORTIONS[attrs["body"]]
    if face == "side":
        width = box_w * 0.98
        height = width * height_ratio * 0.55
    else:
        width = box_w * 0.8
        height = width * height_ratio * 1.05
    x0, x1, y1 = cx - width / 2, cx + width / 2, ground - 0.06 * width
    y0 = y1 - height
    cabin_top = y0
    lower_top = y0 + height * (0.45 if attrs["body"] != "van" else 0.35)
    wheel = 0.09 * width if face == "side" else 0.07 * width
    # wheels first (below the body)
    if face == "side":
        for fx in (0.2, 0.8):
            wx = x0 + fx * width
            draw.ellipse([wx - wheel, y1 - wheel, wx + wheel, y1 + wheel], fill=dark)
            draw.ellipse([wx - wheel * 0.45, y1 - wheel * 0.45, wx + wheel * 0.45, y1 + wheel * 0.45], fill=(150, 150, 155))
    else:
        for fx in (0.12, 0.88):
            wx = x0 + fx * width
            draw.rectangle([wx - wheel * 0.6, y1 - wheel * 0.4, wx + wheel * 0.6, y1 + wheel], fill=dark)
    # lower body and cabin
    draw.rectangle([x0, lower_top, x1, y1], fill=body_rgb)
    inset = width * (0.12 if face != "side" else 0.18)
    if attrs["body"] == "pickup" and face == "side":
        cab_x0, cab_x1 = (x0 + inset * 0.3, x0 + width * 0.5) if side > 0 else (x1 - width * 0.5, x1 - inset * 0.3)
        draw.polygon([(cab_x0, lower_top), (cab_x0 + inset * 0.4, cabin_top), (cab_x1, cabin_top), (cab_x1, lower_top)], fill=body_rgb)
    else:
        draw.polygon([(x0 + inset * 0.3, lower_top), (x0 + inset, cabin_top), (x1 - inset, cabin_top),
                      (x1 - inset * 0.3, lower_top)], fill=body_rgb)
    # roof items show on every face
    if attrs["roof"] == "box":
        draw.rounded_rectangle([cx - width * 0.25, cabin_top - height * 0.12, cx + width * 0.25, cabin_top], radius=2, fill=(40, 40, 45))
    elif attrs["roof"] == "rack":
        for fx in (0.3, 0.7):
            draw.line([(x0 + fx * width, cabin_top - height * 0.06), (x0 + fx * width, cabin_top)], fill=dark, width=2)
        draw.line([(x0 + inset, cabin_top - height * 0.06), (x1 - inset, cabin_top - height * 0.06)], fill=dark, width=2)
    mark = MARK_COLORS[attrs["decal_color"]]
    if face == "side":
        # windows along the cabin, door lines, the decal
        n = attrs["windows"]
        wy0, wy1 = cabin_top + height * 0.08, lower_top - height * 0.04
        span0, span1 = x0 + inset * 1.1, x1 - inset * 1.1
        if attrs["body"] == "pickup":
            span0, span1 = (x0 + inset * 0.8, x0 + width * 0.46) if side > 0 else (x1 - width * 0.46, x1 - inset * 0.8)
        step = (span1 - span0) / n
        for i in range(n):
            draw.rectangle([span0 + i * step + 1, wy0, span0 + (i + 1) * step - 1, wy1], fill=glass)
        for fx in (0.4, 0.62):
            draw.line([(x0 + fx * width, lower_top), (x0 + fx * width, y1 - wheel * 0.8)], fill=tuple(int(c * 0.7) for c in body_rgb), width=1)
        band = lower_top + (y1 - lower_top) * 0.35
        if attrs["decal"] == "stripe":
            draw.rectangle([x0 + width * 0.05, band, x1 - width * 0.05, band + height * 0.07], fill=mark)
        elif attrs["decal"] == "flame":
            tip = x0 + width * (0.55 if side > 0 else 0.45)
            base = x0 + width * 0.08 if side > 0 else x1 - width * 0.08
            draw.polygon([(base, band - height * 0.05), (tip, band + height * 0.04), (base, band + height * 0.14)], fill=mark)
        elif attrs["decal"] == "dots":
            for fx in (0.3, 0.45, 0.6):
                r = height * 0.05
                draw.ellipse([x0 + fx * width - r, band - r, x0 + fx * width + r, band + r], fill=mark)
        lamp_x = x1 - width * 0.03 if side > 0 else x0 + width * 0.03
        draw.rectangle([lamp_x - width * 0.02, lower_top + 2, lamp_x + width * 0.02, lower_top + height * 0.12], fill=(240, 235, 200))
        return
    # front or rear: the windscreen / rear window across the cabin
    draw.polygon([(x0 + inset * 0.55, lower_top - 1), (x0 + inset * 1.1, cabin_top + height * 0.07),
                  (x1 - inset * 1.1, cabin_top + height * 0.07), (x1 - inset * 0.55, lower_top - 1)], fill=glass)
    lamp_y0, lamp_y1 = lower_top + (y1 - lower_top) * 0.15, lower_top + (y1 - lower_top) * 0.45
    plate_y = lower_top + (y1 - lower_top) * (0.5 if attrs["plate"] == "center" else 0.7)
    if face == "front":
        grille = {"bars": (0.5, 0.35), "mesh": (0.4, 0.45), "slot": (0.6, 0.15), "wide": (0.75, 0.3)}[attrs["grille"]]
        gx0, gx1 = cx - width * grille[0] / 2, cx + width * grille[0] / 2
        gy0 = lamp_y0
        draw.rectangle([gx0, gy0, gx1, gy0 + (y1 - lower_top) * grille[1]], fill=(45, 45, 50))
        if attrs["grille"] in ("bars", "wide"):
            for i in range(1, 4):
                y = gy0 + (y1 - lower_top) * grille[1] * i / 4
                draw.line([(gx0, y), (gx1, y)], fill=(170, 170, 175), width=1)
        elif attrs["grille"] == "mesh":
            for i in range(1, 5):
                x = gx0 + (gx1 - gx0) * i / 5
                draw.line([(x, gy0), (x, gy0 + (y1 - lower_top) * grille[1])], fill=(150, 150, 155), width=1)
        light = (245, 240, 210)
        for s in (-1, 1):
            lx = cx + s * width * 0.38
            if attrs["headlights"] == "round":
                r = width * 0.055
                draw.ellipse([lx - r, lamp_y0, lx + r, lamp_y0 + 2 * r], fill=light)
            elif attrs["headlights"] == "rect":
                draw.rectangle([lx - width * 0.07, lamp_y0, lx + width * 0.07, lamp_y1], fill=light)
            elif attrs["headlights"] == "slim":
                draw.rectangle([lx - width * 0.09, lamp_y0, lx + width * 0.09, lamp_y0 + (lamp_y1 - lamp_y0) * 0.4], fill=light)
            else:
                draw.polygon([(lx - s * width * 0.09, lamp_y0), (lx + s * width * 0.08, lamp_y0),
                              (lx + s * width * 0.08, lamp_y1)], fill=light)
        if attrs["tag"]:
            tx = cx + (-1 if attrs["tag"] == 1 else 1) * width * 0.22
            draw.rectangle([tx - width * 0.04, lower_top - height * 0.14, tx + width * 0.04, lower_top - height * 0.06],
                           fill=MARK_COLORS[attrs["sticker"][1]])
    else:  # rear
        red = (200, 25, 30)
        for s in (-1, 1):
            lx = cx + s * width * 0.38
            if attrs["taillights"] == "round":
                r = width * 0.05
                draw.ellipse([lx - r, lamp_y0, lx + r, lamp_y0 + 2 * r], fill=red)
            elif attrs["taillights"] == "rect":
                draw.rectangle([lx - width * 0.08, lamp_y0, lx + width * 0.08, lamp_y1], fill=red)
            elif attrs["taillights"] == "vertical":
                draw.rectangle([lx - width * 0.03, lower_top - height * 0.15, lx + width * 0.03, lamp_y1], fill=red)
        if attrs["taillights"] == "bar":
            draw.rectangle([x0 + width * 0.06, lamp_y0, x1 - width * 0.06, lamp_y0 + (lamp_y1 - lamp_y0) * 0.45], fill=red)
        position, colour = attrs["sticker"]
        sx = x0 + width * (0.2, 0.5, 0.8)[position]
        sy = lamp_y1 + (y1 - lamp_y1) * 0.15
        draw.rectangle([sx - width * 0.06, sy, sx + width * 0.06, sy + height * 0.1], fill=MARK_COLORS[colour])
    draw.rectangle([cx - width * 0.12, plate_y, cx + width * 0.12, plate_y + height * 0.1], fill=(235, 235, 235))

"""Pedestrians: identity attributes (families, visible differences) and drawing one person."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .config import VIEWS

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


def with_texture(rng: np.random.Generator, attrs: dict[str, Any], texture: float) -> dict[str, Any]:
    """``attrs`` with, at probability ``texture``, a patterned upper garment and a logo in a contrasting colour:
    identity carried by shape and texture, not colour alone. ``texture`` 0 draws nothing (the usual attributes)."""
    if texture <= 0:
        return attrs
    attrs = dict(attrs)
    u = rng.random(4)
    if u[0] < texture and attrs["upper_pattern"] == "solid":
        attrs["upper_pattern"] = ("hstripes", "vstripes", "checks", "twotone")[int(u[1] * 4)]
    if u[2] < texture and attrs["logo"] == "none":
        attrs["logo"] = ("circle", "square")[int(u[3] * 2)]
        while attrs["logo_color"] == attrs["upper_color"]:
            attrs["logo_color"] = _choice(rng, "logo_color")
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


"""Measured manipulation checks: does this benchmark contain the mechanism a claim is about?

A claim such as "AdaSP helps where positive pairs share few visual similarities" can only be tested on a
benchmark that has such positive pairs. If it has none, a null result says nothing about the claim, and a win
says nothing about the mechanism. So a verdict counts only where the benchmark demonstrably contains the
mechanism: each *manipulation check* is a measured quantity (a share, an AUC, a probe accuracy) compared with a
threshold fixed before any arm is compared, recorded as a :class:`Control`. Which check serves which claim, and
the thresholds, live in ``reidlab.study.mechanisms``; this module only measures.

Everything here is a pure function of arrays (``load_images`` aside). Pairwise quantities are computed in row
blocks in float32, so memory stays O(n^2) in the worst case for a few thousand items.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Control",
    "colour_histograms",
    "gallery_matches",
    "gradient_histograms",
    "hard_positive_share",
    "hardest_negative_similarity",
    "load_images",
    "pair_auc",
    "scene_probe",
]

_DIRECTIONS = (">=", "<=")
_BLOCK_ELEMENTS = 1 << 22  # similarities per row block (16 MiB of float32)


@dataclass(frozen=True)
class Control:
    """One measured check: ``value`` must be ``direction`` (``>=`` or ``<=``) ``threshold`` to pass."""

    name: str
    value: float
    threshold: float
    passed: bool
    direction: str
    description: str

    @classmethod
    def check(cls, name: str, value: float, threshold: float, direction: str, description: str) -> Control:
        """The check with ``passed`` computed; a value that could not be measured (nan) never passes."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        value, threshold = float(value), float(threshold)
        passed = not math.isnan(value) and (value >= threshold if direction == ">=" else value <= threshold)
        return cls(name, value, threshold, bool(passed), direction, description)

    def to_json(self) -> dict:
        """A JSON-safe dict: floats rounded to 4 decimals, non-finite ones (nan: not measured) as None."""
        return {"name": self.name, "value": _json_float(self.value), "threshold": _json_float(self.threshold),
                "passed": self.passed, "direction": self.direction, "description": self.description}


def _json_float(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------------------------
# Pairs


def _l2_normalised(features: np.ndarray) -> np.ndarray:
    x = np.array(features, dtype=np.float32, copy=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _l1_normalised(histograms: np.ndarray) -> np.ndarray:
    x = np.array(histograms, dtype=np.float32, copy=True)
    if (x < 0).any():
        raise ValueError("histogram intersection needs non-negative histograms")
    x /= np.maximum(x.sum(axis=1, keepdims=True), 1e-12)
    return x


def _labels(values, n: int, name: str) -> np.ndarray:
    labels = np.asarray(values).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries but there are {n} items")
    return labels


def _similarity_blocks(features: np.ndarray, similarity: str) -> Iterator[tuple[int, int, np.ndarray]]:
    """(a, b, S): similarities of rows a..b-1 to rows a+1..n-1, for the upper triangle in row blocks.

    ``intersection`` is sum(min(x, y)) = 1 - |x - y|_1 / 2 for L1-normalised x, y, computed as an L1 distance
    (torch's cdist, about 10x faster than materialising the minimum)."""
    if similarity == "cosine":
        x = _l2_normalised(features)
    elif similarity == "intersection":
        import torch

        x = _l1_normalised(features)
        t = torch.from_numpy(x)
    else:
        raise ValueError(f"similarity must be 'cosine' or 'intersection', got {similarity!r}")
    n = len(x)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for a in range(0, n - 1, rows):
        b = min(a + rows, n - 1)
        if similarity == "cosine":
            s = x[a:b] @ x[a + 1:].T
        else:
            s = 1.0 - 0.5 * torch.cdist(t[a:b], t[a + 1:], p=1).numpy()
        yield a, b, s


def _pair_similarities(features, pids, groups=None, same_group: bool | None = None,
                       similarity: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) similarities over pairs i < j, restricted by ``groups`` / ``same_group``."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    n = len(features)
    pids = _labels(pids, n, "pids")
    if (groups is None) != (same_group is None):
        raise ValueError("groups and same_group go together: pass both or neither")
    if groups is not None:
        groups = _labels(groups, n, "groups")
    positives, negatives = [], []
    for a, b, s in _similarity_blocks(features, similarity):
        i, j = np.arange(a, b)[:, None], np.arange(a + 1, n)[None, :]
        keep = j > i
        if groups is not None:
            keep &= (groups[i] == groups[j]) == same_group
        same = pids[i] == pids[j]
        positives.append(s[keep & same])
        negatives.append(s[keep & ~same])
    empty = np.zeros(0, np.float32)
    return (np.concatenate(positives) if positives else empty, np.concatenate(negatives) if negatives else empty)


def hard_positive_share(features, pids) -> float:
    """The share of positive pairs (same pid, i < j) whose cosine similarity is below the median negative pair.

    AdaSP's mechanism: positive pairs "that share few visual similarities" (a car's front and rear). nan without
    positive or negative pairs."""
    positives, negatives = _pair_similarities(features, pids)
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    return float(np.mean(positives < np.median(negatives)))


def pair_auc(features, pids, groups=None, same_group: bool | None = None, similarity: str = "cosine") -> float:
    """P(a positive pair is more similar than a negative pair), ties counting 1/2; 0.5 is chance.

    With ``groups`` (camera or scene per item) only pairs whose two items share a group (``same_group=True``) or
    do not (``False``) count, positives and negatives alike: within- vs across-camera colour cues, within- vs
    across-scene retrieval. ``similarity``: ``cosine`` or ``intersection`` (of L1-normalised histograms).
    Exact (Mann-Whitney U) by counting, for each positive, the negatives below and tied with it in the sorted
    negatives. nan when either kind of pair is missing."""
    positives, negatives = _pair_similarities(features, pids, groups, same_group, similarity)
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    negatives = np.sort(negatives)
    below = np.searchsorted(negatives, positives, side="left")
    not_above = np.searchsorted(negatives, positives, side="right")
    u = below.sum(dtype=np.float64) + 0.5 * (not_above - below).sum(dtype=np.float64)
    return float(u / (len(positives) * len(negatives)))


# --------------------------------------------------------------------------------------------------------------
# Image descriptors


def load_images(paths: Sequence[str | os.PathLike], size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 RGB images [N, H, W, 3]; ``size`` = (height, width) resizes, otherwise all must share one size."""
    from PIL import Image

    out = None
    for k, path in enumerate(paths):
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None:
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image)
        if out is None:
            out = np.empty((len(paths), *array.shape), np.uint8)
        elif array.shape != out.shape[1:]:
            raise ValueError(f"{path} is {array.shape[:2]}, not {out.shape[1:3]} like the first image: pass size")
        out[k] = array
    return out if out is not None else np.zeros((0, *(size or (0, 0)), 3), np.uint8)


def _image_batch(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    return images


def _chunks(n: int, per_image: int) -> Iterator[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(per_image, 1))
    for a in range(0, n, step):
        yield slice(a, min(a + step, n))


def colour_histograms(images, bins: int = 8) -> np.ndarray:
    """Joint RGB histograms [N, bins^3], L1-normalised, float32: the colour cue alone, no layout."""
    images = _image_batch(images)
    n, h, w, _ = images.shape
    dim = bins ** 3
    out = np.zeros((n, dim), np.float32)
    for rows in _chunks(n, h * w):
        q = images[rows].astype(np.int32) * bins // 256
        index = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        index += (np.arange(rows.stop - rows.start) * dim)[:, None, None]
        out[rows] = np.bincount(index.ravel(), minlength=index.shape[0] * dim).reshape(-1, dim)
    return out / max(h * w, 1)


def gradient_histograms(images, cells: tuple[int, int] = (4, 2), orientations: int = 9) -> np.ndarray:
    """A small HOG: unsigned gradient-orientation histograms weighted by magnitude in ``cells`` = (rows,
    columns) of the image, each cell L2-normalised, concatenated: [N, rows * columns * orientations], float32.

    Shape and texture without colour. The grayscale is the plain channel sum (equal weights), not luminance: a
    red and a blue shirt of the same brightness look alike, and the descriptor is exactly invariant to permuting
    the colour channels. Orientations are linearly interpolated between the two nearest bins (HOG's voting), so
    a small rotation moves weight smoothly instead of jumping bins."""
    images = _image_batch(images)
    n, h, w, _ = images.shape
    cell_rows, cell_cols = cells
    cell = ((np.arange(h) * cell_rows // h)[:, None] * cell_cols + (np.arange(w) * cell_cols // w)[None, :])
    num_cells = cell_rows * cell_cols
    dim = num_cells * orientations
    out = np.zeros((n, num_cells, orientations), np.float32)
    for rows in _chunks(n, h * w):
        gray = images[rows].sum(axis=-1, dtype=np.float32)  # integer sums: exact, so channel order cannot matter
        gy, gx = np.gradient(gray, axis=(1, 2))
        magnitude = np.hypot(gx, gy)
        position = (np.arctan2(gy, gx) % np.pi) * (orientations / np.pi) - 0.5  # bin centres at (b + 1/2) pi / o
        low = np.floor(position)
        upper = (position - low).astype(np.float32)
        low = low.astype(np.int64) % orientations
        base = (np.arange(rows.stop - rows.start)[:, None, None] * num_cells + cell) * orientations
        size = (rows.stop - rows.start) * dim
        votes = (np.bincount((base + low).ravel(), (magnitude * (1 - upper)).ravel(), minlength=size)
                 + np.bincount((base + (low + 1) % orientations).ravel(), (magnitude * upper).ravel(), minlength=size))
        out[rows] = votes.reshape(-1, num_cells, orientations)
    out /= np.maximum(np.linalg.norm(out, axis=2, keepdims=True), 1e-12)
    return out.reshape(n, dim)


# --------------------------------------------------------------------------------------------------------------
# Probes and batch / gallery statistics


def scene_probe(features, scenes, pids, folds: int = 5, seed: int = 0) -> dict:
    """Held-out-identity accuracy of the linear scene probe (``reidlab.evaluation.linear_probe_accuracy``) and
    its chance level (the majority scene's share): an identity is never both trained on and tested, so the probe
    cannot read the scene off a memorised identity. Returns ``{"accuracy", "chance"}``."""
    from reidlab.evaluation import linear_probe_accuracy

    x = np.asarray(features, dtype=np.float64)
    scenes = _labels(scenes, len(x), "scenes")
    if len(np.unique(scenes)) < 2:  # one scene: nothing to decode
        return {"accuracy": 1.0, "chance": 1.0}
    accuracy = linear_probe_accuracy(x, scenes, seed=seed, folds=folds, groups=_labels(pids, len(x), "pids"))
    return {"accuracy": accuracy, "chance": float(np.bincount(np.unique(scenes, return_inverse=True)[1]).max() / len(x))}


def hardest_negative_similarity(features, pids, batches: Sequence[Sequence[int]]) -> float:
    """Mean over anchors of all ``batches`` (index lists, P x K each) of the anchor's highest cosine similarity
    to an item of another pid in its batch: how hard the negatives a batch offers are. Anchors without a
    negative in their batch are skipped; nan when none has one."""
    x = _l2_normalised(features)
    pids = _labels(pids, len(x), "pids")
    hardest = []
    for batch in batches:
        batch = np.asarray(batch, dtype=np.int64)
        s = x[batch] @ x[batch].T
        negative = pids[batch][:, None] != pids[batch][None, :]
        s[~negative] = -np.inf
        hardest.append(s.max(axis=1)[negative.any(axis=1)])
    values = np.concatenate(hardest) if hardest else np.zeros(0, np.float32)
    return float(values.mean(dtype=np.float64)) if len(values) else float("nan")


def gallery_matches(q_pids, q_camids, g_pids, g_camids) -> float:
    """Mean number of valid true matches per query under the Market protocol: gallery items of the query's pid
    seen by another camera. Junk (pid < 0) never matches, nor do distractors (pid 0, not an identity). nan
    without queries. k-reciprocal re-ranking needs several such matches per query."""
    q_pids, g_pids = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    q_camids = _labels(q_camids, len(q_pids), "q_camids")
    g_camids = _labels(g_camids, len(g_pids), "g_camids")
    if len(q_pids) == 0:
        return float("nan")
    identity = g_pids > 0
    per_pid = Counter(g_pids[identity].tolist())
    per_pid_camera = Counter(zip(g_pids[identity].tolist(), g_camids[identity].tolist(), strict=True))
    matches = [per_pid[p] - per_pid_camera[(p, c)]
               for p, c in zip(q_pids.tolist(), q_camids.tolist(), strict=True)]
    return float(np.mean(matches))

"""reidlab.study.controls: the manipulation checks' measurements against brute-force loops written here, on
small random data (with ties where ties matter), and the image descriptors' invariances."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from reidlab.study.controls import (
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


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def intersection(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


def brute_auc(features, pids, similarity, groups=None, same_group=None) -> float:
    """Every (positive, negative) pair of pairs compared explicitly."""
    positives, negatives = [], []
    for i, j in itertools.combinations(range(len(pids)), 2):
        if groups is not None and (groups[i] == groups[j]) != same_group:
            continue
        (positives if pids[i] == pids[j] else negatives).append(similarity(features[i], features[j]))
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def tied_data(seed: int, n: int = 40):
    """One-hot features (cosine exactly 0 or 1) and counts out of 8 (intersections in eighths): many exact ties."""
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, 6, n)
    one_hot = np.eye(4, dtype=np.float32)[(pids + (rng.random(n) < 0.4) * rng.integers(1, 4, n)) % 4]
    counts = np.stack([np.bincount(rng.integers(0, 3, 8) + p % 2, minlength=5) for p in pids]).astype(np.float32)
    return one_hot, counts, pids, rng.integers(0, 3, n)


# ---------------------------------------------------------------------------------------------------------------
# Control


def test_control_check_directions_and_nan():
    assert Control.check("a", 0.3, 0.2, ">=", "d").passed
    assert Control.check("a", 0.2, 0.2, ">=", "d").passed  # the threshold itself passes
    assert not Control.check("a", 0.1, 0.2, ">=", "d").passed
    assert Control.check("a", 0.01, 0.02, "<=", "d").passed
    assert not Control.check("a", 0.03, 0.02, "<=", "d").passed
    for direction in (">=", "<="):
        assert not Control.check("a", math.nan, 0.2, direction, "d").passed
    with pytest.raises(ValueError, match="direction"):
        Control.check("a", 0.3, 0.2, ">", "d")


def test_control_to_json():
    record = Control.check("hard-positives", 0.123456, 0.02, ">=", "share").to_json()
    assert record == {"name": "hard-positives", "value": 0.1235, "threshold": 0.02, "passed": True,
                      "direction": ">=", "description": "share"}
    missing = Control.check("x", math.nan, 1.0, "<=", "not measured").to_json()
    assert missing["value"] is None and missing["passed"] is False
    json.dumps(missing, allow_nan=False)  # plain JSON


# ---------------------------------------------------------------------------------------------------------------
# Pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_pair_auc_matches_brute_force_with_ties(seed):
    one_hot, counts, pids, groups = tied_data(seed)
    assert pair_auc(one_hot, pids) == pytest.approx(brute_auc(one_hot, pids, cosine), abs=1e-12)
    assert pair_auc(counts, pids, similarity="intersection") == pytest.approx(
        brute_auc(counts, pids, intersection), abs=1e-12)
    for same in (True, False):
        assert pair_auc(one_hot, pids, groups, same_group=same) == pytest.approx(
            brute_auc(one_hot, pids, cosine, groups, same), abs=1e-12)
        assert pair_auc(counts, pids, groups, same_group=same, similarity="intersection") == pytest.approx(
            brute_auc(counts, pids, intersection, groups, same), abs=1e-12)


def test_pair_auc_continuous_features_and_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    pids = rng.integers(0, 8, 50)
    features = rng.normal(size=(50, 6)) + 0.8 * rng.normal(size=(8, 6))[pids]
    groups = rng.integers(0, 2, 50)
    expected = brute_auc(features, pids, cosine, groups, False)
    assert 0.6 < expected < 1.0
    assert pair_auc(features, pids, groups, same_group=False) == pytest.approx(expected, abs=1e-4)  # float32
    monkeypatch.setattr("reidlab.study.controls._BLOCK_ELEMENTS", 7)  # one row per block, same pairs
    assert pair_auc(features, pids, groups, same_group=False) == pytest.approx(expected, abs=1e-4)


def test_pair_auc_edges():
    assert math.isnan(pair_auc(np.eye(3), [0, 1, 2]))  # no positive pair
    assert math.isnan(pair_auc(np.eye(3), [0, 0, 0]))  # no negative pair
    assert pair_auc(np.array([[1, 0], [1, 0], [0, 1], [0, 1]]), [0, 0, 1, 1]) == 1.0
    with pytest.raises(ValueError, match="together"):
        pair_auc(np.eye(3), [0, 0, 1], groups=[0, 1, 1])
    with pytest.raises(ValueError, match="similarity"):
        pair_auc(np.eye(3), [0, 0, 1], similarity="euclidean")


@pytest.mark.parametrize("seed", [0, 3])
def test_hard_positive_share_matches_loop(seed):
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, 7, 45)
    features = rng.normal(size=(45, 5)) + 0.7 * rng.normal(size=(7, 5))[pids]
    positives, negatives = [], []
    for i, j in itertools.combinations(range(45), 2):
        (positives if pids[i] == pids[j] else negatives).append(cosine(features[i], features[j]))
    median = np.median(negatives)
    expected = sum(p < median for p in positives) / len(positives)
    assert 0 < expected < 0.5
    assert hard_positive_share(features, pids) == pytest.approx(expected)
    assert math.isnan(hard_positive_share(features, np.arange(45)))  # no positive pair


# ---------------------------------------------------------------------------------------------------------------
# Image descriptors


def test_colour_histograms_sum_to_one_and_ignore_layout():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 8, 3), dtype=np.uint8)
    hist = colour_histograms(images, bins=4)
    assert hist.shape == (3, 64) and hist.dtype == np.float32
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, rtol=1e-6)
    shuffled = images.reshape(3, -1, 3)[:, rng.permutation(16 * 8)].reshape(images.shape)
    np.testing.assert_array_equal(colour_histograms(shuffled, bins=4), hist)
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert colour_histograms(red, bins=2)[0, 4] == 1.0  # bin (r=1, g=0, b=0) = 1 * 2 * 2


def stripes(period: int = 4) -> np.ndarray:
    image = np.zeros((32, 16, 3), np.uint8)
    image[(np.arange(32) // period) % 2 == 1] = (200, 40, 90)
    return image


def test_gradient_histograms_colour_free_but_see_texture():
    rng = np.random.default_rng(1)
    images = np.stack([rng.integers(0, 256, (32, 16, 3), dtype=np.uint8), stripes()])
    hog = gradient_histograms(images, cells=(4, 2), orientations=9)
    assert hog.shape == (2, 72) and hog.dtype == np.float32
    norms = np.linalg.norm(hog.reshape(2, 8, 9), axis=2)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # every cell L2-normalised
    # a per-image channel permutation keeps the equal-weight grayscale, so the descriptor exactly
    permuted = np.stack([images[0][..., [2, 0, 1]], images[1][..., [1, 2, 0]]])
    np.testing.assert_array_equal(gradient_histograms(permuted), hog)
    plain = np.full((1, 32, 16, 3), 120, np.uint8)
    assert not gradient_histograms(plain).any()  # no gradient, no votes
    horizontal = gradient_histograms(stripes()[None])[0].reshape(8, 9)
    vertical = gradient_histograms(stripes().transpose(1, 0, 2)[None], cells=(2, 4))[0].reshape(8, 9)
    # horizontal stripes: vertical gradients (orientation pi/2, bin 4); vertical stripes: horizontal (bins 0, 8)
    assert horizontal[:, 4].min() > 0.99 and vertical[:, [0, 8]].sum(axis=1).min() > 0.99


def test_load_images(tmp_path):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(np.full((12, 6, 3), 40 * k, np.uint8)).save(paths[-1])
    images = load_images(paths)
    assert images.shape == (3, 12, 6, 3) and images.dtype == np.uint8 and images[2].max() == 80
    assert load_images(paths, size=(8, 4)).shape == (3, 8, 4, 3)
    Image.fromarray(np.zeros((10, 6, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match="pass size"):
        load_images([*paths, tmp_path / "odd.png"])


# ---------------------------------------------------------------------------------------------------------------
# Probes, batches, galleries


def test_scene_probe_decodes_scene_not_noise():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(60), 6)
    scenes = rng.integers(0, 3, len(pids))
    encoded = 2.0 * np.eye(3)[scenes] @ rng.normal(size=(3, 16)) + rng.normal(size=(len(pids), 16))
    probe = scene_probe(encoded, scenes, pids)
    assert probe["accuracy"] > 0.95
    assert probe["chance"] == np.bincount(scenes).max() / len(scenes)
    noise = scene_probe(rng.normal(size=(len(pids), 16)), scenes, pids)
    assert abs(noise["accuracy"] - noise["chance"]) < 0.1
    assert scene_probe(encoded, scenes, pids, seed=4) == scene_probe(encoded, scenes, pids, seed=4)


def test_scene_probe_holds_out_identities():
    """Each identity in one scene, features = the identity's own random vector: a probe tested on identities it
    trained on would read the scene off the memorised identity (90 vectors in 128 dimensions); on held-out
    identities it is at chance."""
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(90), 3)
    scenes = pids % 3
    features = rng.normal(size=(90, 128))[pids] + 0.05 * rng.normal(size=(270, 128))
    probe = scene_probe(features, scenes, pids)
    assert probe["accuracy"] < probe["chance"] + 0.15
    by_item = scene_probe(features, scenes, np.arange(len(pids)))  # every item its own "identity"
    assert by_item["accuracy"] > 0.9  # the leak the identity folds close


def test_hardest_negative_similarity_matches_loop():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(10), 4)
    features = rng.normal(size=(40, 6))
    batches = [list(rng.permutation(40)[:12]) for _ in range(4)] + [[0, 1, 2, 3]]  # the last: one pid only
    hardest = [max(cosine(features[a], features[b]) for b in batch if pids[b] != pids[a])
               for batch in batches for a in batch if any(pids[b] != pids[a] for b in batch)]
    assert len(hardest) == 48
    assert hardest_negative_similarity(features, pids, batches) == pytest.approx(np.mean(hardest), abs=1e-6)
    assert math.isnan(hardest_negative_similarity(features, pids, [[0, 1, 2, 3]]))


def test_gallery_matches_matches_loop():
    rng = np.random.default_rng(0)
    q_pids, q_camids = rng.integers(1, 8, 30), rng.integers(0, 4, 30)
    g_pids, g_camids = rng.integers(-1, 8, 200), rng.integers(0, 4, 200)  # -1 junk, 0 distractors
    expected = np.mean([sum(gp == qp and gc != qc and gp > 0 for gp, gc in zip(g_pids, g_camids))
                        for qp, qc in zip(q_pids, q_camids)])
    assert gallery_matches(q_pids, q_camids, g_pids, g_camids) == pytest.approx(expected)
    assert gallery_matches([3], [0], [3, 3, 3, -1, 0], [0, 1, 2, 1, 1]) == 2.0
    assert gallery_matches([0], [0], [0, 0], [1, 2]) == 0.0  # distractors are nobody's match

"""SynthReID regimes and the study's manipulation checks: each check passes on the regime that carries its
mechanism and fails on one built without it; the vehicle regime's fixed views and same-model families."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from reidlab.data import build_dataset, synth
from reidlab.study import mechanisms
from reidlab.study.controls import load_images

TINY = dict(num_train_ids=30, num_test_ids=6, num_distractors=0, num_junk=0)


def tiny_copy(tmp_path, *regimes, **knobs):
    root = tmp_path / "-".join(regimes or ("plain",))
    synth.generate(root, seed=0, workers=1, **synth.regime_knobs(*regimes, **{**TINY, **knobs}))
    return build_dataset("synthreid", root)


def labels(records, key):
    return np.array([getattr(r, key) for r in records])


def test_regime_knobs_merge_in_order_and_name_errors():
    merged = synth.regime_knobs("gs", "hm", "sr", noise=(0.0, 1.0))
    assert merged["color_shift"] == synth.REGIMES["gs"]["color_shift"] and merged["num_train_ids"] == 800
    assert merged["noise"] == (0.0, 1.0)  # overrides come last
    assert synth.regime_knobs("person", "vehicle")["subject"] == "vehicle"
    assert set(synth.REGIME_NOTES) == set(synth.REGIMES)
    with pytest.raises(ValueError, match=r"unknown SynthReID regime\(s\) \['cars'\]; valid regimes: person"):
        synth.regime_knobs("cars")
    with pytest.raises(ValueError, match="unknown SynthReID knob"):
        synth.regime_knobs("gs", colour=1)
    for name in synth.REGIMES:
        synth.SynthConfig(**synth.regime_knobs(name))  # every regime is a valid knob set


def test_vehicle_regime_fixed_faces_and_same_model_families(tmp_path):
    data = tiny_copy(tmp_path, "vehicle", family_size=(3, 3))
    meta = data.meta
    views = {cam: info["view_probs"] for cam, info in meta["cameras"].items()}
    assert all(sorted(p) == [0.0, 0.0, 0.0, 1.0] for p in views.values())  # one fixed view per camera
    faces = {cam: synth.VIEWS[int(np.argmax(p))] for cam, p in views.items()}
    surface = {"front": "front", "back": "rear", "left": "side", "right": "side"}
    pairs = [(a, b) for ident in meta["identities"].values() for a, b in itertools.combinations(ident["cameras"], 2)]
    disjoint = np.mean([surface[faces[a]] != surface[faces[b]] for a, b in pairs])
    assert disjoint > 0.5  # most cross-camera positive pairs of a vehicle show different faces
    assert {ident["subject"] for ident in meta["identities"].values()} == {"vehicle"}
    for members in meta["families"].values():
        models = {tuple(meta["identities"][pid]["attributes"][k] for k in ("body", "color", "grille", "headlights",
                                                                            "taillights")) for pid in members}
        assert len(models) == 1  # a family is one model; its members differ in small marks
    # Deterministic whatever the worker count, with the colour shift on.
    a = synth.generate(tmp_path / "a", seed=2, workers=1, **synth.regime_knobs("vehicle", "gs", **TINY))
    b = synth.generate(tmp_path / "b", seed=2, workers=2, **synth.regime_knobs("vehicle", "gs", **TINY))
    assert [p.read_bytes() for p in sorted(a.rglob("*.jpg"))] == [p.read_bytes() for p in sorted(b.rglob("*.jpg"))]


def test_gs_checks_pass_on_the_gs_regime_and_fail_without_it(tmp_path):
    def checks(data):
        images = load_images([r.path for r in data.train])
        return {c.name: c for c in mechanisms.gs_controls(images, labels(data.train, "pid"), labels(data.train, "camid"))}

    with_shift = checks(tiny_copy(tmp_path, "gs", image_size=(64, 32)))
    # the same regime with its two mechanisms off (a regime's other knobs, e.g. the person copy's accessory
    # variation, make colour less reliable across cameras too)
    without = checks(tiny_copy(tmp_path / "off", "gs", image_size=(64, 32), color_shift=0.0, texture=0.0))
    assert with_shift["colour-unreliable-across-cameras"].passed and not without["colour-unreliable-across-cameras"].passed
    assert with_shift["texture-beats-colour-across-cameras"].passed
    assert not without["texture-beats-colour-across-cameras"].passed


def test_hm_checks_need_a_realistic_batch_to_class_ratio_and_harder_mined_negatives():
    rng = np.random.default_rng(0)
    # 40 families of 5 near-duplicate classes, 4 images each: features around family and class centres.
    families = rng.normal(size=(40, 32))
    classes = np.repeat(families, 5, axis=0) + 0.3 * rng.normal(size=(200, 32))
    pids = np.repeat(np.arange(200), 4)
    features = classes[pids] + 0.2 * rng.normal(size=(800, 32))
    checks = {c.name: c for c in mechanisms.hm_controls(features, pids, classes, p=4, k=4)}
    assert checks["batch-class-ratio"].passed and checks["hm-harder-negatives"].passed
    assert not {c.name: c for c in mechanisms.hm_controls(features, pids, classes, p=16, k=4)}["batch-class-ratio"].passed
    # The regime's own numbers: 16 classes of the HM regime's identities vs of the person copies'.
    assert 16 / synth.REGIMES["hm"]["num_train_ids"] <= mechanisms.THRESHOLDS["batch-class-ratio"][0]
    assert 16 / 100 > mechanisms.THRESHOLDS["batch-class-ratio"][0]


def test_hm_regime_families_give_mined_batches_harder_negatives_and_none_without_families(tmp_path):
    """The structure HBReID's mining needs, in the identities' own attribute space (the features a perfect model
    would learn): the HM regime's large near-duplicate families put alike classes into mined batches; the same
    regime without families does not. (Whether a trained model's classifier rows see it is the study's check.)"""
    def check(data):
        identities = synth.train_identities(data)
        rows = np.stack([synth.attribute_vector(identities[c]["attributes"]) for c in range(len(identities))])
        rows -= rows.mean(axis=0)
        pids = labels(data.train, "pid")
        return {c.name: c for c in mechanisms.hm_controls(rows[pids], pids, rows, p=4, k=4)}

    families = check(tiny_copy(tmp_path, "hm", num_train_ids=200))
    alone = check(tiny_copy(tmp_path / "alone", "hm", num_train_ids=200, family_size=(1, 1)))
    assert families["batch-class-ratio"].passed and families["hm-harder-negatives"].passed
    assert not alone["hm-harder-negatives"].passed


def test_sr_checks_pass_with_scenes_and_fail_with_one(tmp_path):
    from reidlab.study.controls import colour_histograms, gradient_histograms

    def checks(data):
        images = load_images([r.path for r in data.train])
        features = np.concatenate([colour_histograms(images), gradient_histograms(images)], axis=1)
        return {c.name: c for c in mechanisms.sr_controls(features, labels(data.train, "pid"), labels(data.train, "sceneid"))}

    scenes = checks(tiny_copy(tmp_path, "sr", image_size=(64, 32)))
    one_scene = checks(tiny_copy(tmp_path, "person", image_size=(64, 32), num_scenes=1))
    assert scenes["scene-decodable"].passed and scenes["scene-hurts-retrieval"].passed
    assert not one_scene["scene-decodable"].passed and not one_scene["scene-hurts-retrieval"].passed


def test_adasp_check_needs_the_hard_positives_to_rise():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(30), 4)
    person = rng.normal(size=(30, 16))[pids] + 0.3 * rng.normal(size=(120, 16))  # one appearance per identity
    faces = rng.normal(size=(30, 2, 16))  # two unrelated faces per vehicle, each image shows one
    vehicle = faces[pids, np.arange(120) % 2] + 0.3 * rng.normal(size=(120, 16))
    rise, at_person = mechanisms.adasp_controls((person, pids), (vehicle, pids))
    assert rise.passed and rise.value > 0.2 and not at_person.passed
    assert not mechanisms.adasp_controls((person, pids), (person, pids))[0].passed


def test_rerank_check_counts_true_matches(tmp_path):
    data = tiny_copy(tmp_path, "person", image_size=(64, 32))
    (check,) = mechanisms.rerank_controls(data.query, data.gallery)
    assert check.name == "gallery-true-matches" and check.passed and check.value >= 2


def test_cli_synth_regime(tmp_path):
    root = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "reidlab", "synth", "--regime", "vehicle", str(root),
                           "num_train_ids=4", "num_test_ids=2", "num_distractors=0", "num_junk=0"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert synth.load_meta(root)["knobs"]["camera_views"] == "fixed"
    bad = subprocess.run([sys.executable, "-m", "reidlab", "synth", "--regime", "cars", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown SynthReID regime(s) ['cars']" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

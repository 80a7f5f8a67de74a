"""SynthReID generator: determinism, Market layout, meta.json, query/gallery protocol, hardness, families, knobs."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.data import synth
from reidlab.evaluation import evaluate_rank

NAME = re.compile(r"^(\d{4}|-1)_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
TINY = dict(num_train_ids=3, num_test_ids=3, cameras_per_id=(2, 3), images_per_camera=(1, 2),
            num_distractors=3, num_junk=2, image_size=(64, 32))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(root: Path, folder: str) -> list[tuple[int, int, str]]:
    """(pid, camera number, file name) parsed from one folder."""
    out = []
    for path in sorted((root / folder).iterdir()):
        match = NAME.match(path.name)
        assert match, f"bad file name {path.name}"
        out.append((int(match.group(1)), int(match.group(2)), path.name))
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    one = _files(synth.generate(tmp_path / "a", seed=3, workers=1, **TINY))
    two = _files(synth.generate(tmp_path / "b", seed=3, workers=2, **TINY))
    other = _files(synth.generate(tmp_path / "c", seed=4, workers=1, **TINY))
    assert one == two  # byte-identical, whatever the worker count
    assert len(one) > 10 and "meta.json" in one
    assert one["meta.json"] != other["meta.json"]
    assert not set(one.values()) & set(other.values())


def test_layout_names_and_sizes(synth_root):
    meta = synth.load_meta(synth_root)
    assert sorted(p.name for p in synth_root.iterdir()) == ["bounding_box_test", "bounding_box_train", "meta.json", "query"]
    for folder in synth.SPLIT_DIRS:
        records = _records(synth_root, folder)
        assert len(records) == meta["counts"][folder] > 0
        for pid, cam, _ in records:
            assert 1 <= cam <= meta["knobs"]["num_cameras"]
            if folder != "bounding_box_test":
                assert pid > 0  # distractors and junk only in the gallery
    with Image.open(next((synth_root / "query").iterdir())) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert [image.height, image.width] == meta["image_size"] == [128, 64]


def test_meta_schema(synth_root):
    meta = synth.load_meta(synth_root)
    assert meta["format"] == "synthreid-v3" and meta["seed"] == 0
    assert meta["knobs"] == synth.SynthConfig(**json.loads(json.dumps(meta["knobs"]))).to_json()
    assert sorted(meta["cameras"], key=int) == [str(c) for c in range(1, 7)]
    assert sorted(meta["scenes"]) == ["0", "1", "2"]
    assert {cam["scene"] for cam in meta["cameras"].values()} == {0, 1, 2}
    assert all(isinstance(scene["name"], str) for scene in meta["scenes"].values())
    idents = meta["identities"]
    assert sum(i["split"] == "train" for i in idents.values()) == 24
    assert sum(i["split"] == "test" for i in idents.values()) == 24
    family_split = defaultdict(set)
    for pid, ident in idents.items():
        assert re.fullmatch(r"\d{4}", pid)
        assert 0.0 <= ident["variation"] <= 1.0
        assert set(synth.CATEGORIES) <= set(ident["attributes"])
        family_split[ident["family"]].add(ident["split"])
    assert all(len(splits) == 1 for splits in family_split.values())  # families never cross splits
    assert any(len(members) > 1 for members in meta["families"].values())
    train_files = {pid for pid, _, _ in _records(synth_root, "bounding_box_train")}
    test_files = {pid for pid, _, _ in _records(synth_root, "query") + _records(synth_root, "bounding_box_test")} - {0, -1}
    assert train_files == {int(p) for p, i in idents.items() if i["split"] == "train"}
    assert test_files == {int(p) for p, i in idents.items() if i["split"] == "test"}
    assert not train_files & test_files


def test_query_gallery_protocol_and_distractors(synth_root):
    meta = synth.load_meta(synth_root)
    query, gallery = _records(synth_root, "query"), _records(synth_root, "bounding_box_test")
    query_cams = defaultdict(list)
    for pid, cam, _ in query:
        query_cams[pid].append(cam)
    gallery_cams = defaultdict(set)
    for pid, cam, _ in gallery:
        gallery_cams[pid].add(cam)
    for pid, cams in query_cams.items():
        assert len(cams) == len(set(cams)), f"pid {pid}: more than one query in a camera"
        assert set(cams) == gallery_cams[pid] == {int(c) for c in meta["identities"][f"{pid:04d}"]["cameras"]}
        for cam in cams:
            assert gallery_cams[pid] - {cam}, f"query {pid} c{cam} has no cross-camera gallery match"
    assert sum(pid == 0 for pid, _, _ in gallery) == meta["num_distractors"] == 12
    assert sum(pid == -1 for pid, _, _ in gallery) == meta["num_junk"] == 4


def _histogram_features(root: Path, folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV histograms (8x4x4 bins) on 4 horizontal stripes of the image's central half (where the person
    stands), square-rooted and L2-normalised."""
    feats, pids, cams = [], [], []
    for pid, cam, name in _records(root, folder):
        if pid == -1:
            continue
        hsv = np.asarray(Image.open(root / folder / name).convert("HSV")).astype(np.float64)
        hsv = hsv[:, hsv.shape[1] // 4: 3 * hsv.shape[1] // 4]
        stripes = np.array_split(hsv, 4, axis=0)
        hist = [np.histogramdd(s.reshape(-1, 3), bins=(8, 4, 4), range=[(0, 256)] * 3)[0].ravel() for s in stripes]
        feat = np.sqrt(np.concatenate([h / h.sum() for h in hist]))
        feats.append(feat / np.linalg.norm(feat))
        pids.append(pid)
        cams.append(cam - 1)
    return np.asarray(feats), np.asarray(pids), np.asarray(cams)


def _histogram_map(root: Path) -> float:
    qf, qp, qc = _histogram_features(root, "query")
    gf, gp, gc = _histogram_features(root, "bounding_box_test")
    return evaluate_rank(1.0 - qf @ gf.T, qp, gp, qc, gc)["mAP"]


def test_colour_histogram_baseline_is_far_below_half(tmp_path):
    size = dict(num_train_ids=1, num_test_ids=50, num_distractors=40, num_junk=0)
    hard = _histogram_map(synth.generate(tmp_path / "default", seed=0, **size))
    # The same people without intra-class variation, colour casts, occlusion, misalignment, noise and blur:
    # the baseline then works much better, so the hardness comes from the knobs, not from a broken protocol.
    easy = _histogram_map(synth.generate(
        tmp_path / "easy", seed=0, variation=0.0, variation_spread=0.0, color_cast=0.0, occlusion_prob=0.0,
        misalignment=0.0, noise=(0, 0), blur=(0, 0), family_size=(1, 1), **size))
    assert hard < 0.2, hard
    assert easy > 2 * hard, (easy, hard)


def test_family_members_are_closest_in_attribute_space():
    plan = synth.build_plan(0, synth.SynthConfig())
    idents = plan["identities"]
    pids = sorted(idents)
    vectors = np.stack([synth.attribute_vector(idents[p]["attributes"]) for p in pids])
    family = np.array([idents[p]["family"] for p in pids])
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    same = (family[:, None] == family[None]) & ~np.eye(len(pids), dtype=bool)
    other = family[:, None] != family[None]
    members = same.any(axis=1)
    assert members.sum() > len(pids) / 2
    assert dist[same].mean() < 0.5 * dist[other].mean()
    farthest_member = np.where(same, dist, -np.inf).max(axis=1)[members]
    nearest_stranger = np.where(other, dist, np.inf).min(axis=1)[members]
    assert (farthest_member < nearest_stranger).mean() > 0.95
    base = {idents[p]["family"]: idents[p]["attributes"] for p in pids if not idents[p]["mutated"]}
    assert len(base) == len(set(family))  # one unmutated base per family
    for pid in pids:  # members differ from their family base in exactly their mutated groups
        attrs, changed = idents[pid]["attributes"], idents[pid]["mutated"]
        assert len(changed) <= 2
        for group, keys in synth.GROUPS.items():
            differs = any(attrs[k] != base[idents[pid]["family"]][k] for k in keys)
            assert differs == (group in changed), (pid, group)


def test_no_two_identities_look_alike():
    """Without intra-class variation every pid must still look different: a family member whose mutation is
    hidden (logo colour without a logo, sleeves under a jacket, ...) or siblings mutated alike would be twins."""
    plan = synth.build_plan(0, synth.SynthConfig(variation=0.0, variation_spread=0.0))
    idents = plan["identities"]
    renders: dict[bytes, int] = {}
    twins = []
    for pid, ident in idents.items():
        visit = next(iter(ident["visits"].values()))
        views = []
        for view in synth.VIEWS:
            image = Image.new("RGB", (128, 192), (128, 128, 128))
            synth.draw_person(image, ident["attributes"], visit, view, {"scale": 1.0, "stride": 10.0, "stance": 1.0, "swing": 2.5},
                              64, 185, 128)
            views.append(image.tobytes())
        key = b"".join(views)
        if key in renders:
            twins.append((renders[key], pid))
        renders[key] = pid
    assert not twins, f"pixel-identical identities: {twins}"
    visible = {json.dumps(synth.visible_attributes(i["attributes"]), sort_keys=True) for i in idents.values()}
    assert len(visible) == len(idents)


def test_variation_knob_controls_changes_between_cameras():
    def visits(variation: float) -> list[list[dict]]:
        plan = synth.build_plan(1, synth.SynthConfig(num_train_ids=60, num_test_ids=1, variation=variation, variation_spread=0.0))
        return [list(i["visits"].values()) for i in plan["identities"].values()]

    def changes(per_identity: list[list[dict]]) -> int:
        return sum(len({json.dumps(v, sort_keys=True) for v in visits_}) > 1 for visits_ in per_identity)

    assert changes(visits(0.0)) == 0
    assert changes(visits(1.0)) > 30


def test_parse_knobs_and_bad_knobs(tmp_path):
    parsed = synth.parse_knobs({"num_train_ids": "10", "variation": "0.25", "image_size": "64x32", "noise": "1,3"})
    assert parsed == {"num_train_ids": 10, "variation": 0.25, "image_size": (64, 32), "noise": (1.0, 3.0)}
    with pytest.raises(ValueError, match="unknown SynthReID knob.*valid knobs: num_train_ids"):
        synth.parse_knobs({"num_ids": "10"})
    with pytest.raises(ValueError, match="unknown SynthReID knob"):
        synth.generate(tmp_path / "x", num_ids=10)
    with pytest.raises(ValueError, match="num_train_ids='ten': expected int"):
        synth.parse_knobs({"num_train_ids": "ten"})
    with pytest.raises(ValueError, match="cameras_per_id='2': expected lo,hi"):
        synth.parse_knobs({"cameras_per_id": "2"})
    for bad, message in [({"num_cameras": 10}, "num_cameras"), ({"variation": 1.5}, "variation"),
                         ({"images_per_camera": (3, 1)}, "lo must be <= hi"), ({"cameras_per_id": (1, 3)}, "cross-camera"),
                         ({"num_scenes": 7}, "num_scenes"), ({"family_mutations": (0, 1)}, "identical twins")]:
        with pytest.raises(ValueError, match=message):
            synth.SynthConfig(**bad)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        synth.generate(occupied, **TINY)
    with pytest.raises(FileNotFoundError, match="reidlab synth"):
        synth.load_meta(tmp_path / "missing")


def test_regenerate_reuses_identical_and_replaces_different_only_on_request(tmp_path):
    root = synth.generate(tmp_path / "s", seed=0, workers=1, **TINY)
    marker = root / "query" / sorted(p.name for p in (root / "query").iterdir())[0]
    mtime = marker.stat().st_mtime_ns
    assert synth.generate(root, seed=0, workers=1, **TINY) == root
    assert marker.stat().st_mtime_ns == mtime  # same seed and knobs: nothing rewritten
    with pytest.raises(FileExistsError, match="seed 0 -> 1.*overwrite=True"):
        synth.generate(root, seed=1, workers=1, **TINY)
    assert synth.load_meta(root)["seed"] == 0
    synth.generate(root, seed=1, workers=1, overwrite=True, **TINY)
    assert synth.load_meta(root)["seed"] == 1
    assert not (tmp_path / "s.partial").exists()


def test_cli_reports_bad_knobs_in_one_line(tmp_path, capsys):
    from reidlab.cli import main

    for argv, expected in (
        (["synth", str(tmp_path / "a"), "variation"], "knob 'variation' is not of the form key=value"),
        (["synth", str(tmp_path / "a"), "bogus=1"], "unknown SynthReID knob"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err

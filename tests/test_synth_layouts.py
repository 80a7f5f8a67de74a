"""SynthReID written in the real benchmarks' layouts: each real loader reads back its identities, cameras and splits."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from reidlab.data import build_dataset, datasets, synth
from reidlab.data.synth import layouts

LAYOUTS = ["market1501", "dukemtmc", "msmt17", "veri776", "vehicleid"]
IMAGE_SIZE = (32, 16)  # height, width


def digest(path: str | os.PathLike) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> tuple[Path, dict[str, tuple[str, int, int]]]:
    """A tiny SynthReID and, by file content, the (split, pid, 0-based camera) of each of its images."""
    root = synth.generate(tmp_path_factory.mktemp("synth") / "synthreid", seed=0, workers=1, num_train_ids=6,
                          num_test_ids=6, num_cameras=3, image_size=IMAGE_SIZE, num_distractors=2, num_junk=1)
    truth = {}
    for folder, split in (("bounding_box_train", "train"), ("query", "query"), ("bounding_box_test", "gallery")):
        for path in (root / folder).glob("*.jpg"):
            pid, camera = (int(group) for group in re.match(r"(-?\d+)_c(\d)", path.name).groups())
            truth[digest(path)] = (split, pid, camera - 1)
    assert len(truth) == sum(1 for _ in root.glob("*/*.jpg"))  # contents are unique: they identify the files
    return root, truth


@pytest.mark.parametrize("name", LAYOUTS)
def test_real_loader_reads_synthreid_identities_cameras_and_splits(tiny_synth, tmp_path, name):
    root, truth = tiny_synth
    out = synth.write_layout(name, root, tmp_path / name)
    assert out == tmp_path / name
    dataset = build_dataset(name, out)

    def split_group(split: str) -> str:  # VehicleID draws its own query/gallery from the test vehicles
        return "test" if name == "vehicleid" and split != "train" else split

    has_cameras = name != "vehicleid"
    # Market-1501's loader keeps distractors (0) and drops junk (-1); the other layouts get neither.
    expected = sorted((key, split_group(split), pid, camera if has_cameras else 0)
                      for key, (split, pid, camera) in truth.items() if pid > 0 or (name == "market1501" and pid == 0))
    loaded, pid_pairs = [], {"train": set(), "test": set()}
    for split, records in (("train", dataset.train), ("query", dataset.query), ("gallery", dataset.gallery)):
        for record in records:
            key = digest(record.path)
            _, synth_pid, _ = truth[key]
            loaded.append((key, split_group(split), synth_pid, record.camid))
            pid_pairs["train" if split == "train" else "test"].add((record.pid, synth_pid))
            with Image.open(record.path) as image:
                assert image.convert("RGB").size == IMAGE_SIZE[::-1]
    assert sorted(loaded) == expected  # every image once, in its split, with its camera
    for pairs in pid_pairs.values():  # one loaded id per SynthReID id and back
        assert len(pairs) == len({loaded_pid for loaded_pid, _ in pairs}) == len({pid for _, pid in pairs})

    train_pids = {pid for split, pid, _ in truth.values() if split == "train"}
    assert dataset.num_train_pids == len(train_pids)
    assert len(dataset.train) == sum(split == "train" for split, _, _ in truth.values())
    test_pids = {pid for split, pid, _ in truth.values() if split == "query"}
    assert {synth_pid for _, synth_pid in pid_pairs["test"]} == test_pids | ({0} if name == "market1501" else set())
    if has_cameras:
        assert dataset.num_cameras == 3
    else:
        assert dataset.num_cameras == 1 and len(dataset.gallery) == len(test_pids)


def test_vehicleid_every_test_size_holds_every_test_vehicle(tiny_synth, tmp_path):
    root, truth = tiny_synth
    out = synth.write_layout("vehicleid", root, tmp_path)
    test_pids = {pid for split, pid, _ in truth.values() if split == "query"}
    for test_size in (800, 1600, 2400):  # adasp_vehicleid.yaml asks for 800; fewer vehicles than that here
        dataset = build_dataset("vehicleid", out, test_size=test_size, draw=3)
        assert {r.pid for r in dataset.gallery} == {r.pid for r in dataset.query} == test_pids


def test_msmt17_time_of_day_is_the_synthreid_scene(tiny_synth, tmp_path):
    root, _ = tiny_synth
    scene_of_camid = {int(camera) - 1: info["scene"] for camera, info in synth.load_meta(root)["cameras"].items()}
    dataset = build_dataset("msmt17", synth.write_layout("msmt17", root, tmp_path), sceneid="time")
    assert all(r.sceneid == scene_of_camid[r.camid] for r in dataset.train + dataset.query + dataset.gallery)
    assert (tmp_path / "list_val.txt").read_text() == ""
    assert all(path.parent.name == path.name[:4] for path in (tmp_path / "test").glob("*/*.jpg"))


def test_veri776_name_lists_match_the_folders(tiny_synth, tmp_path):
    root, _ = tiny_synth
    out = synth.write_layout("veri776", root, tmp_path)
    for split in ("train", "query", "test"):
        listed = (out / f"name_{split}.txt").read_text().split()
        assert listed == sorted(p.name for p in (out / f"image_{split}").iterdir())


def test_restated_loader_facts_agree_with_the_loaders():
    assert tuple(datasets.MSMT17_TIMES) == layouts.MSMT17_TIMES
    assert tuple(datasets.MSMT17_TIMES.values()) == (0, 1, 2)
    assert datasets.VehicleID.test_sizes == layouts.VEHICLEID_TEST_SIZES
    assert set(layouts.WRITERS) <= set(datasets.list_datasets())


def test_refuses_to_overwrite_a_non_empty_folder(tiny_synth, tmp_path):
    root, _ = tiny_synth
    out = synth.write_layout("dukemtmc", root, tmp_path / "duke")
    with pytest.raises(FileExistsError, match=f"{out} exists and is not empty; pass overwrite=True"):
        synth.write_layout("veri776", root, out)
    assert synth.write_layout("veri776", root, out, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir()) == [
        "image_query", "image_test", "image_train", "name_query.txt", "name_test.txt", "name_train.txt"]
    with pytest.raises(ValueError, match="overlaps the SynthReID folder"):
        synth.write_layout("market1501", root, root.parent, overwrite=True)
    assert (root / "meta.json").is_file()


def test_unknown_layout_and_non_synthreid_source_are_named(tiny_synth, tmp_path):
    root, _ = tiny_synth
    with pytest.raises(ValueError, match="'market'; choose one of market1501, dukemtmc, msmt17, veri776, vehicleid"):
        synth.write_layout("market", root, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a SynthReID folder"):
        synth.write_layout("market1501", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()

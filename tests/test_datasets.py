"""Dataset loaders: published counts from real file names (empty placeholder files), list formats, bad input."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data import ReIDImageDataset, Record, build_dataset, check_data, list_datasets, register_dataset
from reidlab.data import datasets as datasets_module

NAME_LISTS = Path(__file__).resolve().parent / "data" / "name_lists"  # gzipped copies, MIT (see its README)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def placeholders_from_name_lists(folder: Path, prefix: str) -> None:
    """Empty files under every real file name (loaders must never open images)."""
    names = [
        line.split(",", 1)[1]
        for split in ("train", "query", "test")
        for line in gzip.decompress((NAME_LISTS / f"{prefix}_{split}.csv.gz").read_bytes()).decode().splitlines()
    ]
    for directory in {os.path.dirname(name) for name in names}:
        (folder / directory).mkdir(parents=True)
    for name in names:
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))


@pytest.fixture(scope="module")
def real_layouts(tmp_path_factory):
    """Market-1501 and DukeMTMC-reID placeholders (72k empty files), on a RAM disk where there is one."""
    ram_disk = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(dir=ram_disk)) if ram_disk.is_dir() else tmp_path_factory.mktemp("real")
    placeholders_from_name_lists(root / "Market-1501-v15.09.15", "market1501")
    (root / "Market-1501-v15.09.15" / "bounding_box_test" / "Thumbs.db").touch()  # real Market ships these
    placeholders_from_name_lists(root / "DukeMTMC-reID", "dukeMTMC")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def split_counts(dataset) -> tuple:
    return (
        len({r.pid for r in dataset.train}),
        len(dataset.train),
        len(dataset.query),
        len(dataset.gallery),
    )


def test_market1501_published_counts(real_layouts):
    dataset = build_dataset("market1501", real_layouts)  # parent folder: conventional name is found
    assert split_counts(dataset) == (751, 12936, 3368, 15913)
    assert dataset.num_train_pids == 751 and dataset.num_cameras == 6 and dataset.num_scenes == 6
    assert sorted({r.pid for r in dataset.train}) == list(range(751))
    gallery_pids = {r.pid for r in dataset.gallery}
    assert 0 in gallery_pids and -1 not in gallery_pids  # distractors kept, junk dropped
    assert {r.camid for r in dataset.query} == set(range(6))
    assert all(r.sceneid == r.camid for r in dataset.gallery)
    first = dataset.train[0]
    expected_path = real_layouts / "Market-1501-v15.09.15/bounding_box_train/0002_c1s1_000451_03.jpg"
    assert first == Record(str(expected_path), 0, 0, 0)
    text = dataset.summary(print_fn=None)
    assert "12936" in text and "15913" in text and "note" not in text
    # the dataset folder itself is accepted too
    assert split_counts(build_dataset("market1501", real_layouts / "Market-1501-v15.09.15"))[3] == 15913


def test_dukemtmc_published_counts(real_layouts):
    dataset = build_dataset("dukemtmc", real_layouts / "DukeMTMC-reID")
    assert split_counts(dataset) == (702, 16522, 2228, 17661)
    assert dataset.num_cameras == 8
    printed = []
    dataset.summary(print_fn=printed.append)
    assert len(printed) == 1 and "16522" in printed[0]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_msmt17(root: Path, train_dir: str, test_dir: str) -> None:
    (root / train_dir).mkdir(parents=True)
    (root / test_dir).mkdir(parents=True)
    write_lines(root / "list_train.txt", [
        "0000/0000_000_01_0303morning_0015_0.jpg 0",
        "0000/0000_001_05_0303noon_0028_1.jpg 0",
        "0001/0001_000_15_0303afternoon_0100_0.jpg 1",
    ])
    write_lines(root / "list_val.txt", ["0002/0002_000_02_0303morning_0040_0.jpg 2"])
    write_lines(root / "list_query.txt", [
        "0000/0000_000_03_0113morning_0011_0.jpg 0",
        "0001/0001_001_07_0113afternoon_0015_0.jpg 1",
    ])
    write_lines(root / "list_gallery.txt", [
        "0000/0000_002_04_0113noon_0012_0.jpg 0",
        "0001/0001_003_07_0113noon_0019_1.jpg 1",
    ])


@pytest.mark.parametrize("folder, train_dir, test_dir", [
    ("MSMT17_V1", "train", "test"),
    ("MSMT17_V2", "mask_train_v2", "mask_test_v2"),
])
def test_msmt17_list_format(tmp_path, folder, train_dir, test_dir):
    make_msmt17(tmp_path / folder, train_dir, test_dir)
    dataset = build_dataset("msmt17", tmp_path)
    base = tmp_path / folder
    assert [(r.pid, r.camid, r.sceneid) for r in dataset.train] == [(0, 0, 0), (0, 4, 4), (1, 14, 14), (2, 1, 1)]
    assert dataset.train[0].path == str(base / train_dir / "0000/0000_000_01_0303morning_0015_0.jpg")
    assert [(r.pid, r.camid) for r in dataset.query] == [(3, 2), (4, 6)]  # test labels offset past train's 0..2
    assert dataset.gallery[1].path == str(base / test_dir / "0001/0001_003_07_0113noon_0019_1.jpg")
    assert dataset.num_cameras == 15
    assert "1 query image(s) of 1 id(s) have no gallery image" in dataset.summary(print_fn=None)  # pid 4 only in cam 6

    by_time = build_dataset("msmt17", base, sceneid="time", merge_val=False)
    assert [r.sceneid for r in by_time.train] == [0, 1, 2]  # morning, noon, afternoon
    assert [r.sceneid for r in by_time.query + by_time.gallery] == [0, 2, 1, 1]
    assert by_time.num_scenes == 3 and by_time.num_train_pids == 2
    assert [r.pid for r in by_time.query] == [2, 3]


def test_msmt17_bad_lines_are_listed(tmp_path):
    make_msmt17(tmp_path, "train", "test")
    write_lines(tmp_path / "list_gallery.txt", ["0000/0000_002_04_0113noon_0012_0.jpg 0", "0001/bad_name.jpg 1"])
    with pytest.raises(ValueError, match=r"list_gallery.txt.*line 2: '0001/bad_name.jpg 1'"):
        build_dataset("msmt17", tmp_path)
    with pytest.raises(ValueError, match="sceneid"):
        build_dataset("msmt17", tmp_path, sceneid="weather")


def test_veri776_layout(tmp_path):
    base = tmp_path / "VeRi"
    for name in ["image_train/0001_c001_00016450_0.jpg", "image_train/0001_c002_00016460_0.jpg",
                 "image_train/0005_c019_00011111_0.jpg", "image_query/0002_c003_00084280_0.jpg",
                 "image_test/0002_c020_00084300_0.jpg", "image_test/0002_c003_00084290_0.jpg"]:
        touch(base / name)
    dataset = build_dataset("veri776", tmp_path)
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 0), (0, 1), (1, 18)]
    assert [(r.pid, r.camid) for r in dataset.gallery] == [(2, 2), (2, 19)]
    assert dataset.num_cameras == 20 and dataset.num_train_pids == 2
    touch(base / "image_test" / "car_0002.jpg")
    with pytest.raises(ValueError, match=r"1 image name\(s\) in .*image_test.*car_0002.jpg"):
        build_dataset("veri776", base)


def make_vehicleid(root: Path, num_test_vehicles: int = 30) -> dict[int, list[str]]:
    (root / "image").mkdir(parents=True)
    write_lines(root / "train_test_split/train_list.txt", ["0001 7", "0002 7", "0003 9"])
    lines, images_of = [], {}
    for vid in range(num_test_vehicles):
        ids = [f"{1000 + 10 * vid + i:07d}" for i in range(1 + vid % 5)]
        images_of[100 + vid] = ids
        lines += [f"{image_id} {100 + vid}" for image_id in ids]
    write_lines(root / "train_test_split/test_list_800.txt", lines)
    return images_of


def test_vehicleid_gallery_draw(tmp_path):
    images_of = make_vehicleid(tmp_path / "VehicleID_V1.0")
    dataset = build_dataset("vehicleid", tmp_path, test_size=800, draw=0)
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 0), (0, 0), (1, 0)]
    assert dataset.train[0].path == str(tmp_path / "VehicleID_V1.0/image/0001.jpg")
    assert Counter(r.pid for r in dataset.gallery) == Counter({vid: 1 for vid in images_of})  # one per vehicle
    assert len(dataset.query) + len(dataset.gallery) == sum(len(v) for v in images_of.values())
    assert {r.path for r in dataset.query}.isdisjoint(r.path for r in dataset.gallery)
    # No cameras: one id that training reaches; the protocol, not the records, keeps same-camera matches.
    assert {(r.camid, r.sceneid) for r in dataset.train + dataset.query + dataset.gallery} == {(0, 0)}
    assert dataset.num_cameras == 1 and dataset.num_scenes == 1
    assert "no gallery image" not in dataset.summary(print_fn=None)
    again = build_dataset("vehicleid", tmp_path, draw=0)
    assert again.gallery == dataset.gallery and again.query == dataset.query
    other = build_dataset("vehicleid", tmp_path, draw=1)
    assert {r.pid for r in other.gallery} == set(images_of) and other.gallery != dataset.gallery
    with pytest.raises(ValueError, match="test_size"):
        build_dataset("vehicleid", tmp_path, test_size=1000)
    with pytest.raises(FileNotFoundError, match="test_list_1600.txt"):
        build_dataset("vehicleid", tmp_path, test_size=1600)


def test_cuhk03np_variants(tmp_path):
    base = tmp_path / "cuhk03-np"
    for variant, gallery_count in (("labeled", 2), ("detected", 3)):
        touch(base / variant / "bounding_box_train/0001_c1_1.png")
        touch(base / variant / "bounding_box_train/0001_c2_6.png")
        touch(base / variant / "query/0003_c1_1.png")
        for i in range(gallery_count):
            touch(base / variant / f"bounding_box_test/0003_c2_{i + 6}.png")
    labeled = build_dataset("cuhk03np", tmp_path)
    detected = build_dataset("cuhk03np", base, variant="detected")
    assert [(r.pid, r.camid) for r in labeled.train] == [(0, 0), (0, 1)]
    assert len(labeled.gallery) == 2 and len(detected.gallery) == 3
    assert "/detected/" in detected.query[0].path
    with pytest.raises(ValueError, match="variant"):
        build_dataset("cuhk03np", base, variant="both")


def test_folder_dataset_custom_pattern_and_empty_split(tmp_path):
    for name in ["train/id7_cam0_a.png", "train/id9_cam1_b.png", "train/notes.txt",
                 "gallery/id3_cam1_a.png", "gallery/id3_cam0_b.png"]:
        touch(tmp_path / name)
    (tmp_path / "probe").mkdir()
    dataset = build_dataset("folder", tmp_path, pattern=r"id(\d+)_cam(\d+)", train_dir="train",
                            query_dir="probe", gallery_dir="gallery", camera_base=0)
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 0), (1, 1)]  # notes.txt ignored
    assert [(r.pid, r.camid) for r in dataset.gallery] == [(3, 0), (3, 1)]
    assert dataset.query == [] and "the query split is empty" in dataset.summary(print_fn=None)
    with pytest.raises(ValueError, match="two groups"):
        build_dataset("folder", tmp_path, pattern=r"id\d+")


def test_list_dataset(tmp_path):
    write_lines(tmp_path / "train.txt", ["# path pid camid [sceneid]", "imgs/a.jpg 5 0 2", "imgs/b.jpg 8 1", ""])
    write_lines(tmp_path / "query.txt", ["imgs/c.jpg 11 0"])
    write_lines(tmp_path / "gallery.txt", ["imgs/d.jpg 11 0", "/abs/e.jpg 11 3 1"])
    dataset = build_dataset("list", tmp_path)
    assert dataset.train == [
        Record(str(tmp_path / "imgs/a.jpg"), 0, 0, 2),
        Record(str(tmp_path / "imgs/b.jpg"), 1, 1, 1),
    ]
    assert dataset.gallery[1] == Record("/abs/e.jpg", 11, 3, 1)
    assert dataset.num_cameras == 4 and dataset.num_scenes == 3
    write_lines(tmp_path / "query.txt", ["imgs/c.jpg 11", "imgs/c.jpg x 0", "imgs/c.jpg 1 -1", "imgs/f.jpg 1 0"])
    with pytest.raises(ValueError, match=r"3 line\(s\) in .*query.txt.*line 1: 'imgs/c.jpg 11', line 2"):
        build_dataset("list", tmp_path)
    training_only = build_dataset("list", tmp_path, query=None, gallery=None)
    assert len(training_only.train) == 2 and "the gallery split is empty" in training_only.summary(print_fn=None)


def test_missing_or_misnamed_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        build_dataset("market1501", tmp_path / "nowhere")
    message = str(info.value)
    assert "bounding_box_train/" in message and "0002_c1s1_000451_03.jpg" in message
    assert str(tmp_path / "nowhere") in message and str(tmp_path / "nowhere" / "Market-1501-v15.09.15") in message
    for name in ("bounding_box_training", "query", "bounding_box_test"):  # misnamed train folder
        (tmp_path / "Market-1501" / name).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Market-1501"):
        build_dataset("market1501", tmp_path)
    with pytest.raises(FileNotFoundError, match="list_train.txt"):
        build_dataset("msmt17", tmp_path)
    with pytest.raises(KeyError, match="market1501"):
        build_dataset("market", tmp_path)


def test_unmatched_file_names_are_listed(tmp_path):
    base = tmp_path / "DukeMTMC-reID"
    for name in ["bounding_box_train/0001_c2_f0046182.jpg", "query/0005_c2_f0046985.jpg",
                 "bounding_box_test/0005_c3_f0046985.jpg", "bounding_box_test/Thumbs.db"]:
        touch(base / name)
    for i in range(7):
        touch(base / f"bounding_box_train/IMG_{i:04d}.jpg")
    touch(base / "bounding_box_train/0002_c0_f0000001.jpg")  # camera numbers start at 1
    touch(base / "bounding_box_train/1-2_c1_f0000001.jpg")  # not a pid
    with pytest.raises(ValueError) as info:
        build_dataset("dukemtmc", tmp_path)
    message = str(info.value)
    assert message.startswith("8 image name(s)") and ": 1-2_c1_f0000001.jpg, IMG_0000.jpg" in message
    assert "IMG_0003.jpg, ..." in message and "0001_c2_f0046182.jpg" in message  # first few + an example
    assert "0002_c0" not in message  # it matches the pattern; its camera number is the problem (next test)


def test_camera_number_below_camera_base_is_named_as_such(tmp_path):
    base = tmp_path / "Market-1501"
    for name in ["bounding_box_train/0001_c0s1_000001_01.jpg", "bounding_box_train/0001_c0s1_000026_01.jpg",
                 "bounding_box_train/0002_c1s1_000001_01.jpg", "query/0003_c0s1_000001_01.jpg",
                 "bounding_box_test/0003_c1s1_000001_01.jpg"]:
        touch(base / name)
    with pytest.raises(ValueError) as info:
        build_dataset("market1501", tmp_path)
    message = str(info.value)
    assert message.startswith("camera number 0 < camera_base 1 in 2 image name(s) in ")
    assert "bounding_box_train (first: 0001_c0s1_000001_01.jpg); pass camera_base=0" in message
    assert "do not match" not in message
    dataset = build_dataset("folder", base, camera_base=0)
    assert [(r.pid, r.camid) for r in dataset.train] == [(0, 0), (0, 0), (1, 1)]


def test_registry_adds_a_dataset_in_one_small_class(tmp_path):
    @register_dataset("tiny_test_dataset")
    class Tiny(datasets_module.ReIDDataset):
        def __init__(self, root, size=2):
            records = [Record(f"{root}/{i}.jpg", 10 + i, 0, 0) for i in range(size)]
            super().__init__(records, records[:1], records, root=root)

    try:
        assert "tiny_test_dataset" in list_datasets()
        tiny = build_dataset("tiny_test_dataset", tmp_path, size=3)
        assert tiny.num_train_pids == 3 and [r.pid for r in tiny.train] == [0, 1, 2]
        assert "1 query image(s)" in tiny.summary(print_fn=None)  # its only match is in the same camera
        # what the engine asks of a dataset, declared by its class: how it is scored, whether it can be written
        assert datasets_module.dataset_class("tiny_test_dataset") is Tiny
        assert (Tiny.protocol, Tiny.generate, tiny.identity_traits(), tiny.identity_families()) == ("market", None, None, None)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("tiny_test_dataset")(Tiny)
    finally:
        datasets_module._DATASETS.pop("tiny_test_dataset")


def test_datasets_declare_their_protocol_generator_and_families(synth_root):
    from reidlab.data import synth

    assert datasets_module.dataset_class("vehicleid").protocol == "draws"
    assert {datasets_module.dataset_class(name).protocol for name in ("market1501", "msmt17", "veri776")} == {"market"}
    assert datasets_module.dataset_class("synthreid").generate is synth.generate
    dataset = build_dataset("synthreid", synth_root)
    families, traits = dataset.identity_families(), dataset.identity_traits()
    entries = synth.train_identities(dataset)
    assert len(families) == dataset.num_train_pids and families == [entries[c]["family"] for c in range(len(families))]
    assert traits == [entries[c] for c in range(dataset.num_train_pids)] and "variation" in traits[0]
    with pytest.raises(KeyError, match="unknown dataset 'nope'; available: "):
        datasets_module.dataset_class("nope")


def write_folder_with_images(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for split, name in [
        ("bounding_box_train", "0001_c1s1_000001_00.jpg"),
        ("bounding_box_train", "0002_c2s1_000001_00.png"),
        ("query", "0001_c2s1_000002_00.jpg"),
        ("bounding_box_test", "0001_c1s1_000003_00.jpg"),
    ]:
        path = root / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_image_dataset_items_and_decode_errors(tmp_path):
    write_folder_with_images(tmp_path)
    dataset = build_dataset("folder", tmp_path)
    images = pickle.loads(pickle.dumps(ReIDImageDataset(dataset.train)))  # spawn-started workers pickle it
    item = images[1]
    assert set(item) == {"image", "pid", "camid", "sceneid", "index", "path"}
    assert item["image"].shape == (3, 40, 20) and item["image"].dtype == torch.float32
    assert (item["pid"], item["camid"], item["sceneid"], item["index"]) == (1, 1, 1, 1)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    decoded = [images[i]["image"] for i in range(len(images))]
    cached = ReIDImageDataset(dataset.train, cache_images=True)
    for record in dataset.train:
        os.remove(record.path)  # decoded up front: the files are no longer read
    assert all(torch.equal(cached[i]["image"], decoded[i]) for i in range(len(decoded)))
    write_folder_with_images(tmp_path)
    assert check_data("folder", tmp_path, num_workers=2) == []

    corrupt = tmp_path / "bounding_box_test" / "0001_c3s1_000004_00.jpg"
    corrupt.write_bytes(b"not a jpeg")
    (tmp_path / "query" / "0001_c2s1_000002_00.jpg").write_bytes(b"\xff\xd8\xff")  # truncated
    bad = check_data("folder", tmp_path, num_workers=2)
    assert [path for path, _ in bad] == [str(tmp_path / "query/0001_c2s1_000002_00.jpg"), str(corrupt)]
    assert all(error for _, error in bad)
    with pytest.raises(OSError, match=f"cannot decode image {corrupt}"):
        ReIDImageDataset(build_dataset("folder", tmp_path).gallery)[1]


def test_synthreid_scenes_from_meta(synth_root):
    root = synth_root
    dataset = build_dataset("synthreid", root)
    meta = json.loads((Path(root) / "meta.json").read_text())
    scene_of_camid = {int(cam) - 1: info["scene"] for cam, info in meta["cameras"].items()}
    assert dataset.num_scenes == len(meta["scenes"])
    assert dataset.num_train_pids == len({r.pid for r in dataset.train}) > 0
    assert sorted({r.pid for r in dataset.train}) == list(range(dataset.num_train_pids))
    for record in dataset.train + dataset.query + dataset.gallery:
        assert record.sceneid == scene_of_camid[record.camid]
    train_raw = {pid for pid, info in meta["identities"].items() if info["split"] == "train"}
    assert dataset.num_train_pids == len(train_raw)
    test_raw = {int(pid) for pid, info in meta["identities"].items() if info["split"] == "test"}
    assert {r.pid for r in dataset.query} <= test_raw
    by_camera = build_dataset("synthreid", root, sceneid="camera")
    assert all(r.sceneid == r.camid for r in by_camera.gallery)
    assert dataset.meta["format"] == "synthreid-v3"

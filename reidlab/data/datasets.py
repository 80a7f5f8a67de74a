"""ReID datasets: a plain dict registry of small classes that turn a folder layout into three lists of Records.

Loaders only read directory listings and list files; they never open an image (``check_data`` does that).
Conventions shared by every dataset:

- camera ids are 0-based; ``sceneid`` defaults to the camera id;
- train pids are relabelled 0..N-1 (sorted raw pid order), query/gallery pids stay raw;
- ``root`` may be the dataset folder itself or a parent that contains it under a conventional name;
- only files with an image extension are considered, so stray files such as ``Thumbs.db`` are ignored;
  an image whose name does not match the dataset's pattern is an error (ValueError lists the first few),
  and so is a camera number below the dataset's first one (reported as such).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import synth

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
MARKET_PATTERN = r"(-?\d+)_c(\d+)"
MAX_LISTED = 5  # how many offending names or lines an error message shows


@dataclass(frozen=True, slots=True)
class Record:
    """One image: absolute path, person/vehicle id, 0-based camera id, scene label (default: the camera)."""

    path: str
    pid: int
    camid: int
    sceneid: int


_DATASETS: dict[str, type[ReIDDataset]] = {}


def register_dataset(name: str) -> Callable[[type[ReIDDataset]], type[ReIDDataset]]:
    """Class decorator: make a dataset class buildable as ``build_dataset(name, root, **kwargs)``."""

    def decorator(cls: type[ReIDDataset]) -> type[ReIDDataset]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered ({_DATASETS[name].__name__})")
        _DATASETS[name] = cls
        cls.name = name
        return cls

    return decorator


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_class(name: str) -> type[ReIDDataset]:
    """The registered class of ``name``: what a dataset declares (``protocol``, ``generate``) before it is read."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}") from None


def build_dataset(name: str, root: str | os.PathLike, **kwargs) -> ReIDDataset:
    """Build a registered dataset; keyword arguments go to its class (e.g. ``sceneid="time"`` for msmt17)."""
    return dataset_class(name)(root, **kwargs)


class ReIDDataset:
    """Three splits of Records plus the counts that models, losses and samplers need.

    Subclasses collect raw records and call ``super().__init__``; the train split is relabelled here.
    """

    name = "reid"
    # How the test split is scored. "market": the Market rule (a query's own camera is removed from its gallery;
    # the summary notes queries it leaves without a match). "draws": VehicleID's protocol (every test image, with
    # galleries of one image per identity drawn 10 times; reidlab.evaluation.evaluate_vehicleid).
    protocol = "market"
    # ``generate(root, seed=..., **knobs)`` where the kit writes the dataset itself (``data.generate=true``), else None.
    generate: Callable[..., Path] | None = None

    def identity_traits(self) -> list[dict[str, Any]] | None:
        """Per training class (relabelled pid), what the dataset knows of the identity beyond its images (SynthReID:
        its family, variation level and attributes); None where it knows nothing."""
        return None

    def identity_families(self) -> list[Any] | None:
        """Per training class, the family it belongs to where the dataset knows one (SynthReID's near-duplicate
        families); None elsewhere."""
        traits = self.identity_traits()
        return None if traits is None or not all("family" in t for t in traits) else [t["family"] for t in traits]

    def __init__(
        self,
        train: Iterable[Record],
        query: Iterable[Record],
        gallery: Iterable[Record],
        *,
        root: str | os.PathLike = "",
        num_scenes: int | None = None,
    ) -> None:
        self.root = str(root)
        self.train = relabel(train)
        self.query = list(query)
        self.gallery = list(gallery)
        everything = self.train + self.query + self.gallery
        self.num_train_pids = len({r.pid for r in self.train})
        self.num_cameras = 1 + max((r.camid for r in everything), default=-1)
        self.num_scenes = num_scenes if num_scenes is not None else 1 + max((r.sceneid for r in everything), default=-1)

    def summary(self, print_fn: Callable[[str], object] | None = print) -> str:
        """Table of ids/images/cameras/scenes per split, plus notes on empty splits and unmatched queries."""
        rows = [f"{self.name} ({self.root})", f"  {'split':<8}{'ids':>8}{'images':>10}{'cameras':>9}{'scenes':>8}"]
        notes = []
        for split, records in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            rows.append(
                f"  {split:<8}{len({r.pid for r in records}):>8}{len(records):>10}"
                f"{len({r.camid for r in records}):>9}{len({r.sceneid for r in records}):>8}"
            )
            if not records:
                notes.append(f"  note: the {split} split is empty")
        unmatched = queries_without_match(self.query, self.gallery) if self.protocol == "market" else []
        if unmatched and self.gallery:
            ids = len({self.query[i].pid for i in unmatched})
            notes.append(
                f"  note: {len(unmatched)} query image(s) of {ids} id(s) have no gallery image of the same id "
                "from another camera; the evaluation skips them"
            )
        text = "\n".join(rows + notes)
        if print_fn is not None:
            print_fn(text)
        return text


def relabel(records: Iterable[Record]) -> list[Record]:
    """Map pids to 0..N-1 in sorted order of the raw pids (what classification heads need)."""
    records = list(records)
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid, r.sceneid) for r in records]


def queries_without_match(query: Sequence[Record], gallery: Sequence[Record]) -> list[int]:
    """Indices of queries with no gallery image of the same pid in a different camera (Market protocol)."""
    cameras_of_pid: dict[int, set[int]] = defaultdict(set)
    for r in gallery:
        cameras_of_pid[r.pid].add(r.camid)
    return [i for i, r in enumerate(query) if not cameras_of_pid.get(r.pid, set()) - {r.camid}]


def find_dataset_dir(
    root: str | os.PathLike, folder_names: Sequence[str], layouts: Sequence[Sequence[str]], description: str
) -> tuple[Path, int]:
    """Return (dataset folder, index of the layout found) for ``root`` or ``root/<conventional name>``.

    A layout is a list of entries (folders or files) that must all exist. Raises FileNotFoundError naming
    the expected layout and every path tried.
    """
    root = Path(root).expanduser()
    candidates = [root] + [root / name for name in folder_names]
    for candidate in candidates:
        for index, layout in enumerate(layouts):
            if all((candidate / entry).exists() for entry in layout):
                return candidate, index
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"dataset folder not found: expected {description}; tried {tried}. "
        "Pass the dataset folder itself or its parent as root."
    )


def list_images(directory: str | os.PathLike) -> list[str]:
    """Sorted image file names in a folder (other files are ignored)."""
    return sorted(n for n in os.listdir(directory) if n.lower().endswith(IMAGE_EXTENSIONS))


def mismatch_error(what: str, where: str, expected: str, offenders: Sequence[str]) -> ValueError:
    shown = ", ".join(offenders[:MAX_LISTED]) + (", ..." if len(offenders) > MAX_LISTED else "")
    return ValueError(f"{len(offenders)} {what} in {where} do not match {expected}: {shown}. Rename or remove them.")


def parse_list_file(path: Path, parse_fields: Callable[[list[str]], T], expected: str) -> list[T]:
    """``parse_fields`` applied to the whitespace-split fields of every line (blank and ``#`` lines skipped).

    Lines on which it raises ValueError/IndexError/KeyError are collected and reported in one ValueError.
    """
    items, bad = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            items.append(parse_fields(fields))
        except (ValueError, IndexError, KeyError):
            bad.append(f"line {number}: {line.strip()!r}")
    if bad:
        raise mismatch_error("line(s)", str(path), expected, bad)
    return items


def parse_image_folder(
    directory: str | os.PathLike,
    pattern: str | re.Pattern,
    *,
    example: str,
    camera_base: int = 1,
    scene_of_camera: Callable[[int], int] | None = None,
) -> list[Record]:
    """Records of a Market-style folder: ``pattern`` is matched at the start of each image name and
    captures (pid, camera number); camera numbers start at ``camera_base``. pid -1 (junk) is dropped."""
    regex = re.compile(pattern)
    records, bad, below = [], [], []
    for name in list_images(directory):
        match = regex.match(name)
        try:
            pid, number = int(match.group(1)), int(match.group(2))
        except (AttributeError, ValueError):  # no match, or a user pattern that captured a non-number
            bad.append(name)
            continue
        if number < camera_base:  # matches the pattern: calling it a mismatch would hide the real cause
            below.append((number, name))
            continue
        if pid == -1:
            continue
        camid = number - camera_base
        sceneid = scene_of_camera(camid) if scene_of_camera else camid
        records.append(Record(os.path.join(directory, name), pid, camid, sceneid))
    if bad:
        raise mismatch_error(
            "image name(s)", str(directory), f"the pattern {regex.pattern!r} (e.g. {example})", bad
        )
    if below:
        lowest = min(number for number, _ in below)
        raise ValueError(
            f"camera number {lowest} < camera_base {camera_base} in {len(below)} image name(s) in {directory} "
            f"(first: {below[0][1]}); pass camera_base={lowest} (dataset 'folder') if these names count cameras "
            f"from {lowest}"
        )
    return records


class MarketLayoutDataset(ReIDDataset):
    """``bounding_box_train/ query/ bounding_box_test/`` with pid and camera encoded in each file name."""

    folder_names: tuple[str, ...] = ()
    split_dirs = ("bounding_box_train", "query", "bounding_box_test")
    pattern = MARKET_PATTERN
    example = "0002_c1s1_000451_03.jpg"
    camera_base = 1

    def __init__(self, root: str | os.PathLike) -> None:
        base = self.locate(root)
        super().__init__(*self.parse_splits(base), root=base)

    def locate(self, root: str | os.PathLike, extra: Sequence[str] = ()) -> Path:
        layout = [*self.split_dirs, *extra]
        description = f"{self.name} folders {', '.join(d + '/' for d in layout)} (files like {self.example})"
        return find_dataset_dir(root, self.folder_names, [layout], description)[0]

    def parse_splits(self, base: Path, scene_of_camera: Callable[[int], int] | None = None) -> list[list[Record]]:
        return [
            parse_image_folder(base / d, self.pattern, example=self.example, camera_base=self.camera_base,
                               scene_of_camera=scene_of_camera)
            for d in self.split_dirs
        ]


@register_dataset("market1501")
class Market1501(MarketLayoutDataset):
    """Market-1501 (Zheng et al. ICCV 2015): 751 train ids / 12,936 images; 3,368 query; 15,913 gallery."""

    folder_names = ("Market-1501-v15.09.15", "Market-1501", "market1501")


@register_dataset("dukemtmc")
class DukeMTMC(MarketLayoutDataset):
    """DukeMTMC-reID: 702 train ids / 16,522 images; 2,228 query; 17,661 gallery; 8 cameras."""

    folder_names = ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc")
    example = "0001_c2_f0046182.jpg"


@register_dataset("veri776")
class VeRi776(MarketLayoutDataset):
    """VeRi-776 vehicles: 576 train ids / 37,778 images; 1,678 query; 11,579 gallery; 20 cameras."""

    folder_names = ("VeRi", "VeRi-776", "veri776", "veri")
    split_dirs = ("image_train", "image_query", "image_test")
    pattern = r"(\d+)_c(\d\d\d)"
    example = "0001_c001_00016450_0.jpg"


@register_dataset("cuhk03np")
class CUHK03NP(MarketLayoutDataset):
    """CUHK03 in the new protocol (Zhong et al. 2017), ``variant="labeled"`` or ``"detected"``.
    labeled: 767 train ids / 7,368 images, 1,400 query, 5,328 gallery; detected: 7,365 / 1,400 / 5,332."""

    folder_names = ("cuhk03-np", "CUHK03-NP", "cuhk03_np", "cuhk03np")
    example = "0001_c1_1.png"

    def __init__(self, root: str | os.PathLike, variant: str = "labeled") -> None:
        if variant not in ("labeled", "detected"):
            raise ValueError(f"cuhk03np variant must be 'labeled' or 'detected', got {variant!r}")
        self.split_dirs = tuple(f"{variant}/{d}" for d in MarketLayoutDataset.split_dirs)
        super().__init__(root)


@register_dataset("synthreid")
class SynthReID(MarketLayoutDataset):
    """The generated benchmark (``reidlab.data.synth.generate``): Market layout plus ``meta.json``.

    ``sceneid="scene"`` (default) takes each camera's scene group from ``meta.json``; ``"camera"`` uses the camera.
    ``self.meta`` holds the parsed ``meta.json`` (identity families, attributes, knobs).
    """

    folder_names = ("synthreid", "SynthReID")
    generate = staticmethod(synth.generate)

    def __init__(self, root: str | os.PathLike, sceneid: str = "scene") -> None:
        if sceneid not in ("scene", "camera"):
            raise ValueError(f"synthreid sceneid must be 'scene' or 'camera', got {sceneid!r}")
        base = self.locate(root, extra=["meta.json"])
        self.meta = synth.load_meta(base)
        camera_scene = {int(cam) - 1: int(info["scene"]) for cam, info in self.meta["cameras"].items()}

        def scene_of_camera(camid: int) -> int:
            if camid not in camera_scene:
                raise ValueError(f"{base / 'meta.json'} has no entry for camera {camid + 1}")
            return camera_scene[camid]

        if sceneid == "scene":
            splits, num_scenes = self.parse_splits(base, scene_of_camera), len(self.meta["scenes"])
        else:
            splits, num_scenes = self.parse_splits(base), None
        ReIDDataset.__init__(self, *splits, root=base, num_scenes=num_scenes)

    def identity_traits(self) -> list[dict[str, Any]]:
        entries = synth.train_identities(self)
        return [entries[c] for c in range(self.num_train_pids)]


@register_dataset("folder")
class FolderDataset(MarketLayoutDataset):
    """Your own images in a Market-style layout.

    ``pattern`` is a regex matched at the start of each file name with two groups (pid, camera number);
    camera numbers start at ``camera_base``; pid -1 is treated as junk and dropped. Folder names are
    configurable; every folder must exist (an empty one is reported as an empty split).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        pattern: str = MARKET_PATTERN,
        train_dir: str = "bounding_box_train",
        query_dir: str = "query",
        gallery_dir: str = "bounding_box_test",
        camera_base: int = 1,
    ) -> None:
        if re.compile(pattern).groups < 2:
            raise ValueError(f"folder pattern {pattern!r} needs two groups: (pid) and (camera number)")
        self.pattern, self.camera_base = pattern, camera_base
        self.split_dirs = (train_dir, query_dir, gallery_dir)
        self.example = f"names matching {pattern!r}"
        super().__init__(root)


@register_dataset("list")
class ListDataset(ReIDDataset):
    """Your own images described by list files, one image per line: ``path pid camid [sceneid]``.

    Paths are relative to ``root`` (or absolute), camid is 0-based, sceneid defaults to camid.
    Blank lines and lines starting with ``#`` are skipped. Pass ``query=None``/``gallery=None`` for a
    training-only dataset (reported as empty splits).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: str | None = "train.txt",
        query: str | None = "query.txt",
        gallery: str | None = "gallery.txt",
    ) -> None:
        lists = [name for name in (train, query, gallery) if name is not None]
        description = f"list files {', '.join(lists)} with lines 'path pid camid [sceneid]'"
        base, _ = find_dataset_dir(root, (), [lists], description)
        splits = [self.parse_list(base, name) if name is not None else [] for name in (train, query, gallery)]
        super().__init__(*splits, root=base)

    @staticmethod
    def parse_list(base: Path, name: str) -> list[Record]:
        def parse(fields: list[str]) -> Record:
            if len(fields) not in (3, 4):
                raise ValueError
            pid, camid = int(fields[1]), int(fields[2])
            sceneid = int(fields[3]) if len(fields) == 4 else camid
            if camid < 0 or sceneid < 0:
                raise ValueError
            return Record(str(base / fields[0]), pid, camid, sceneid)

        return parse_list_file(base / name, parse, "'path pid camid [sceneid]' (camid >= 0)")


MSMT17_TIMES = {"morning": 0, "noon": 1, "afternoon": 2}


@register_dataset("msmt17")
class MSMT17(ReIDDataset):
    """MSMT17 V1 (``train/ test/``) or V2 (``mask_train_v2/ mask_test_v2/``) with ``list_*.txt`` labels.

    Lines look like ``0000/0000_000_01_0303morning_0015_0.jpg 0``: camera = 3rd ``_`` field (1-based in
    the name), time of day = letters of the 4th. Test labels restart at 0 in the lists; they are offset
    past the training labels so query/gallery ids never collide with train ids.
    ``merge_val=True`` (the usual setting, 1,041 ids / 32,621 images) adds ``list_val.txt`` to train.
    ``sceneid="camera"`` (default) or ``"time"`` (morning/noon/afternoon -> 0/1/2).
    """

    folder_names = ("MSMT17_V2", "MSMT17_V1", "MSMT17", "msmt17")
    lists = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
    versions = (("train", "test"), ("mask_train_v2", "mask_test_v2"))

    def __init__(self, root: str | os.PathLike, sceneid: str = "camera", merge_val: bool = True) -> None:
        if sceneid not in ("camera", "time"):
            raise ValueError(f"msmt17 sceneid must be 'camera' or 'time', got {sceneid!r}")
        self.sceneid = sceneid
        layouts = [(*dirs, *self.lists) for dirs in self.versions]
        description = " or ".join(f"folders {a}/ {b}/" for a, b in self.versions) + f" plus {', '.join(self.lists)}"
        base, version = find_dataset_dir(root, self.folder_names, layouts, f"MSMT17 {description}")
        train_dir, test_dir = (base / d for d in self.versions[version])
        train = self.parse_list(base / "list_train.txt", train_dir)
        if merge_val:
            train += self.parse_list(base / "list_val.txt", train_dir)
        offset = 1 + max((r.pid for r in train), default=-1)
        query, gallery = (
            self.parse_list(base / name, test_dir, offset) for name in ("list_query.txt", "list_gallery.txt")
        )
        super().__init__(train, query, gallery, root=base, num_scenes=len(MSMT17_TIMES) if sceneid == "time" else None)

    def parse_list(self, list_path: Path, image_dir: Path, pid_offset: int = 0) -> list[Record]:
        def parse(fields: list[str]) -> Record:
            relative, label = fields
            name_fields = os.path.basename(relative).split("_")
            camid = int(name_fields[2]) - 1
            time = MSMT17_TIMES[name_fields[3].lstrip("0123456789")]
            if camid < 0:
                raise ValueError
            sceneid = time if self.sceneid == "time" else camid
            return Record(str(image_dir / relative), int(label) + pid_offset, camid, sceneid)

        return parse_list_file(list_path, parse, "'PPPP/PPPP_NNN_CC_DDDDmorning|noon|afternoon_FFFF_N.jpg label'")


@register_dataset("vehicleid")
class VehicleID(ReIDDataset):
    """VehicleID (Liu et al. CVPR 2016): ``image/`` + ``train_test_split/{train_list,test_list_N}.txt``.

    ``test_size`` is 800, 1600 or 2400. The gallery holds one image per test vehicle, drawn with
    ``numpy.random.default_rng(draw)``; every other test image is a query. The protocol averages
    Rank-1/Rank-5 over 10 draws (``draw=0..9``). There are no cameras: every record has camera and scene
    0 and ``num_cameras`` = ``num_scenes`` = 1, so a camera embedding or a scene adversary sees only ids
    that training reaches. Score it with ``reidlab.evaluation.evaluate_vehicleid`` (the trainer does), which
    gives queries and gallery distinct stand-in cameras; a Market-style evaluation of these records would
    remove every true match as a same-camera one.
    """

    folder_names = ("VehicleID_V1.0", "VehicleID", "vehicleid")
    protocol = "draws"
    test_sizes = (800, 1600, 2400)

    def __init__(self, root: str | os.PathLike, test_size: int = 800, draw: int = 0) -> None:
        if test_size not in self.test_sizes:
            raise ValueError(f"vehicleid test_size must be one of {self.test_sizes}, got {test_size!r}")
        test_list = f"train_test_split/test_list_{test_size}.txt"
        layout = ["image", "train_test_split/train_list.txt", test_list]
        base, _ = find_dataset_dir(root, self.folder_names, [layout], f"VehicleID entries {', '.join(layout)}")
        train = [Record(path, vid, 0, 0) for path, vid in self.parse_list(base, "train_test_split/train_list.txt")]
        images_of_vehicle: dict[int, list[str]] = defaultdict(list)
        for path, vid in self.parse_list(base, test_list):
            images_of_vehicle[vid].append(path)
        rng = np.random.default_rng(draw)
        query, gallery = [], []
        for vid, paths in images_of_vehicle.items():
            chosen = int(rng.integers(len(paths)))
            gallery.append(Record(paths[chosen], vid, 0, 0))
            query.extend(Record(p, vid, 0, 0) for i, p in enumerate(paths) if i != chosen)
        super().__init__(train, query, gallery, root=base)

    @staticmethod
    def parse_list(base: Path, name: str) -> list[tuple[str, int]]:
        def parse(fields: list[str]) -> tuple[str, int]:
            image_id, vehicle_id = fields
            if not vehicle_id.isdigit():
                raise ValueError
            return str(base / "image" / f"{image_id}.jpg"), int(vehicle_id)

        return parse_list_file(base / name, parse, "'<image id> <vehicle id>'")

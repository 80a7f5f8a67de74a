"""SynthReID copied into the on-disk layouts of the real benchmarks.

The real datasets cannot be downloaded here, yet the paper study and its tests must run end to end on every
layout a loader reads (folder names, file-name patterns, list files, camera numbering). ``write_layout`` copies a
generated SynthReID into one of them, keeping each image's bytes, identity, camera and split, so that
``build_dataset(name, out_root)`` exercises the real loader on images that decode.

It imports neither this package's ``__init__`` (which exports it) nor ``reidlab.data.datasets`` (which imports the
package): either would close an import cycle, which tests/test_architecture.py forbids. So the few loader facts it
needs are restated below, and tests/test_synth_layouts.py checks that they agree with the loaders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import FORMAT, SPLIT_DIRS

# Split of each SynthReID folder; Market-1501 has the same folders.
SPLIT_OF_FOLDER = dict(zip(SPLIT_DIRS, ("train", "query", "gallery"), strict=True))
MARKET_FOLDER_OF_SPLIT = {split: folder for folder, split in SPLIT_OF_FOLDER.items()}
SYNTH_NAME = re.compile(r"(-?\d+)_c(\d+)s\d+_(\d+)_\d+\.jpg")  # pid, camera, frame
MSMT17_DATE = "0302"  # MMDD of the 4th file-name field; the loader reads only its time-of-day letters
MSMT17_TIMES = ("morning", "noon", "afternoon")  # the msmt17 loader's times of day, scenes 0, 1, 2 with sceneid="time"
VEHICLEID_TEST_SIZES = (800, 1600, 2400)  # the test_size values the vehicleid loader accepts


@dataclass(frozen=True)
class SynthImage:
    """One SynthReID file and what its name and meta.json say about it (camera is 1-based, as in names)."""

    source: Path
    split: str
    pid: int
    camera: int
    frame: int
    scene: int


def identified(images: list[SynthImage]) -> list[SynthImage]:
    """Images of real identities: without the distractors (pid 0) and junk (pid -1)."""
    return [image for image in images if image.pid > 0]


def copy_image(image: SynthImage, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.source, destination)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def write_market1501(images: list[SynthImage], out: Path) -> None:
    """SynthReID is Market-1501's layout already: same folders and names (``0002_c1s1_000451_01.jpg``)."""
    # Market-1501's gallery ships distractors (0000, kept by its loader) and junk (-1, dropped by it): both copied.
    for image in images:
        copy_image(image, out / MARKET_FOLDER_OF_SPLIT[image.split] / image.source.name)


def write_dukemtmc(images: list[SynthImage], out: Path) -> None:
    """``bounding_box_train/ query/ bounding_box_test/`` with names like ``0005_c2_f0046985.jpg``."""
    # DukeMTMC-reID has no pid 0000 or -1 files (its distractors are identities of their own): dropped.
    for image in identified(images):
        name = f"{image.pid:04d}_c{image.camera}_f{image.frame:07d}.jpg"
        copy_image(image, out / MARKET_FOLDER_OF_SPLIT[image.split] / name)


def write_veri776(images: list[SynthImage], out: Path) -> None:
    """``image_train/ image_query/ image_test/`` with names like ``0001_c001_00016450_0.jpg``, plus the
    ``name_train.txt``, ``name_query.txt`` and ``name_test.txt`` lists that ship with VeRi-776."""
    # VeRi-776 has no distractors or junk, and its pattern rejects a pid of -1: dropped.
    folder_of_split = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
    names_of_folder: dict[str, list[str]] = {folder: [] for folder in folder_of_split.values()}
    for image in identified(images):
        name = f"{image.pid:04d}_c{image.camera:03d}_{image.frame:08d}_0.jpg"
        folder = folder_of_split[image.split]
        copy_image(image, out / folder / name)
        names_of_folder[folder].append(name)
    for folder, names in names_of_folder.items():
        write_lines(out / (folder.replace("image_", "name_") + ".txt"), names)


def write_msmt17(images: list[SynthImage], out: Path) -> None:
    """MSMT17 V1: ``train/ test/`` holding ``PPPP/PPPP_NNN_CC_DDDDtime_FFFF_0.jpg`` files, labelled by
    ``list_train.txt``, ``list_val.txt``, ``list_query.txt`` and ``list_gallery.txt``.

    Labels are 0-based in sorted pid order, restarting at 0 for the test identities (as in MSMT17); NNN counts
    an identity's images, CC is the camera, and the time of day is the camera's SynthReID scene (modulo 3),
    so ``sceneid="time"`` sees SynthReID's scenes. SynthReID has no validation split: ``list_val.txt`` is empty.
    """
    # MSMT17 has no distractors or junk: a pid 0 line would be one more identity. Dropped.
    people = identified(images)
    lines_of_list: dict[str, list[str]] = {name: [] for name in ("train", "val", "query", "gallery")}
    for folder, splits in (("train", ("train",)), ("test", ("query", "gallery"))):
        members = sorted((image for image in people if image.split in splits), key=lambda i: (i.pid, i.camera, i.frame))
        label_of_pid = {pid: label for label, pid in enumerate(sorted({image.pid for image in members}))}
        count_of_label: dict[int, int] = defaultdict(int)
        for image in members:
            label = label_of_pid[image.pid]
            time = MSMT17_TIMES[image.scene % len(MSMT17_TIMES)]
            relative = (f"{label:04d}/{label:04d}_{count_of_label[label]:03d}_{image.camera:02d}_{MSMT17_DATE}{time}_"
                        f"{image.frame % 10000:04d}_0.jpg")
            count_of_label[label] += 1
            copy_image(image, out / folder / relative)
            lines_of_list[image.split].append(f"{relative} {label}")
    for name, lines in lines_of_list.items():
        write_lines(out / f"list_{name}.txt", lines)


def write_vehicleid(images: list[SynthImage], out: Path) -> None:
    """``image/<7-digit id>.jpg`` plus ``train_test_split/train_list.txt`` and ``test_list_{800,1600,2400}.txt``
    with ``<image id> <vehicle id>`` lines; vehicle ids are SynthReID's pids.

    VehicleID has no cameras and no fixed query/gallery: the loader draws one gallery image per test vehicle, so
    query and gallery images of SynthReID's test identities go into the test lists alike. Each list holds the
    first N test vehicles (in pid order) as its size N says, hence all of them when there are at most 800, and
    every ``test_size`` the loader accepts finds its file.
    """
    # A test list is one entry per vehicle: distractors would be one more vehicle, junk has no id. Dropped.
    vehicles = sorted(identified(images), key=lambda i: (i.split != "train", i.pid, i.camera, i.frame))
    train_lines, test_entries = [], []
    for number, image in enumerate(vehicles, start=1):
        image_id = f"{number:07d}"
        copy_image(image, out / "image" / f"{image_id}.jpg")
        if image.split == "train":
            train_lines.append(f"{image_id} {image.pid}")
        else:
            test_entries.append((image_id, image.pid))
    write_lines(out / "train_test_split" / "train_list.txt", train_lines)
    test_pids = sorted({pid for _, pid in test_entries})
    for size in VEHICLEID_TEST_SIZES:
        kept = set(test_pids[:size])
        lines = [f"{image_id} {pid}" for image_id, pid in test_entries if pid in kept]
        write_lines(out / "train_test_split" / f"test_list_{size}.txt", lines)


WRITERS: dict[str, Callable[[list[SynthImage], Path], None]] = {
    "market1501": write_market1501,
    "dukemtmc": write_dukemtmc,
    "msmt17": write_msmt17,
    "veri776": write_veri776,
    "vehicleid": write_vehicleid,
}


def read_synth_images(synth_root: Path) -> list[SynthImage]:
    """Every image of a SynthReID folder; raises if it is not one or misses images its meta.json lists."""
    meta_path = synth_root / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{synth_root} is not a SynthReID folder (no meta.json); create one with "
                                "reidlab.data.synth.generate(root)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}; regenerate the SynthReID")
    scene_of_camera = {int(camera): int(info["scene"]) for camera, info in meta["cameras"].items()}
    images = []
    for folder, split in SPLIT_OF_FOLDER.items():
        paths = sorted((synth_root / folder).glob("*.jpg"))
        if len(paths) != meta["counts"][folder]:
            raise FileNotFoundError(f"{synth_root / folder} holds {len(paths)} images, meta.json lists "
                                    f"{meta['counts'][folder]}: an incomplete SynthReID; regenerate it")
        for path in paths:
            match = SYNTH_NAME.fullmatch(path.name)
            if match is None:
                raise ValueError(f"{path} is not a SynthReID file name (e.g. 0002_c1s1_000451_01.jpg)")
            pid, camera, frame = (int(group) for group in match.groups())
            images.append(SynthImage(path, split, pid, camera, frame, scene_of_camera[camera]))
    return images


def write_layout(name: str, synth_root: str | os.PathLike, out_root: str | os.PathLike, *,
                 overwrite: bool = False) -> Path:
    """Copy the SynthReID at `synth_root` into `out_root` in the on-disk layout of the real benchmark `name`
    (market1501, dukemtmc, msmt17, veri776, vehicleid) and return ``Path(out_root)``.

    ``build_dataset(name, out_root)`` then loads SynthReID's identities, cameras (none for VehicleID) and splits
    through the real loader: the paper study and its tests run end to end on every real layout without the real
    data, which cannot be downloaded here. Distractors and junk are kept only in Market-1501, the one layout that
    has them. Image bytes are copied unchanged.
    A non-empty `out_root` is replaced only with ``overwrite=True``, and never when it holds `synth_root` or
    lies inside it.
    """
    if name not in WRITERS:
        raise ValueError(f"no real layout named {name!r}; choose one of {', '.join(WRITERS)}")
    source, out = Path(synth_root), Path(out_root)
    images = read_synth_images(source)
    resolved_source, resolved_out = source.resolve(), out.resolve()
    if resolved_out.is_relative_to(resolved_source) or resolved_source.is_relative_to(resolved_out):
        raise ValueError(f"{out} overlaps the SynthReID folder {source}; write the layout to a folder outside it")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it, or choose "
                                  "another out_root")
        shutil.rmtree(out)
    WRITERS[name](images, out)
    return out

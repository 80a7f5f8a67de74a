"""Your own images: embed a folder of unlabelled crops with a trained model, search it, and pick a distance threshold
on a labelled split (``reidlab embed``, ``reidlab search``, ``reidlab calibrate``).

Distances are those of reidlab's evaluation: ``1 - cos`` between L2-normalised features (``GalleryIndex`` with the
"cosine" metric), so the order is the one ``evaluate`` ranks by, ties to the lower gallery position. A threshold
``T`` keeps the matches with distance strictly below it, as ``tar_at_far`` accepts similarities strictly above
``1 - T``.

A features file (``EmbeddedImages.save``) is one ``.npz`` read back without pickle: ``features`` [N, D] float32,
``paths`` (relative to the embedded folder, str array) and ``meta``, a JSON string with the folder, the model's name,
the checkpoint's path and sha256, the transform (size, mean, std, flip) and the unreadable files with their reason.
numpy alone reads it; nothing in it can run code, unlike a pickle.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reidlab.data import (CorruptImageError, Record, ReIDImageDataset, build_dataset, build_transforms,
                          collate_skipping, list_datasets)
from reidlab.data.image_dataset import load_image
from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidlab.engine import RunDir, autocast_dtype, load_checkpoint, load_trained
from reidlab.evaluation import GalleryIndex, extract_features, tar_at_far
from reidlab.utils import atomic_write, file_sha256

#: what the distances are, as recorded in results and calibration files
DISTANCE = "1 - cosine similarity of L2-normalised features (reidlab's evaluation ranks by it; GalleryIndex 'cosine')"
#: the files ``embed_folder`` picks up under a folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FEATURES_FORMAT = "reidlab-features-v1"
CALIBRATION_FORMAT = "reidlab-calibration-v1"
CALIBRATION_FILE, HISTOGRAM_FILE = "calibration.json", "distances.png"
#: the false-accept rates ``calibrate`` measures by default
FARS = (1e-2, 1e-3, 1e-4)
#: gallery images held out to tune an approximate index's search knob (unlabelled data has no validation queries)
TUNING_QUERIES = 1000
#: height of the thumbnails of the results page
THUMBNAIL_HEIGHT = 128


class Embedder(Protocol):
    """A trained model as the embedding of images needs it: whatever a file loads into (``load_embedder``).

    ``transform``: the test transform's ``size`` [height, width], ``mean`` and ``std`` (what ``build_transforms``
    takes); ``__call__``: a batch of transformed images [B, 3, H, W] -> features [B, D] (float32 on the CPU,
    before normalisation); ``path`` and ``sha256``: the file it was loaded from, recorded so that queries are
    embedded by the very same model. A structural type: an implementation need not import this module."""

    path: Path
    model_name: str
    sha256: str
    transform: dict[str, list]

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class _TrainedShape(NamedTuple):
    """What building a run's model reads from its dataset, taken from the checkpoint: embedding needs neither the
    training images nor their folder. The identity classifier and scene adversary it sizes are left out when they
    do not fit (inference never runs them)."""

    num_train_pids: int
    num_cameras: int = 0
    num_scenes: int = 2


class CheckpointEmbedder:
    """A reidlab training checkpoint (``RUN/checkpoints/<name>.pt``, with ``RUN/config.yaml``) or a run folder (its
    ``last.pt``): the run's model in eval mode and its test transform, features as its evaluation extracts them
    (``extract_features``, the run's AMP on CUDA)."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu") -> None:
        checkpoint = Path(checkpoint)
        run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent.parent
        config = RunDir(run_dir).config()
        if config.model.camera_embedding:
            raise ValueError(f"{checkpoint}: model {config.model.name!r} was trained with camera ids "
                             "(model.camera_embedding), which images of a folder do not have")
        path = checkpoint if checkpoint.is_file() else RunDir(run_dir).checkpoint("last")
        shape = _TrainedShape(int(load_checkpoint(path).get("num_classes", 1)))
        trained = load_trained(run_dir, path, device=device, dataset=shape)
        self.model, self.path = trained.model, trained.checkpoint.resolve()
        self.model_name, self.sha256 = config.model.name, file_sha256(self.path)
        self.transform = {"size": list(config.data.size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        self.amp = autocast_dtype(config, next(self.model.parameters()).device) or False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = {"image": images, "pid": torch.zeros(len(images)), "camid": torch.zeros(len(images))}
        return extract_features(self.model, [batch], amp=self.amp, normalize=False)[0]

    def __repr__(self) -> str:
        return f"CheckpointEmbedder({str(self.path)!r}, {self.model_name}, sha256 {self.sha256[:12]})"


def load_embedder(path: str | os.PathLike, device: str = "cpu") -> Embedder:
    """The embedder a file holds, by its kind: a reidlab run folder or training checkpoint (``.pt``), or its ONNX
    export (``.onnx``, run by onnxruntime). The one place that knows the kinds of model files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() or path.suffix == ".pt":
        return CheckpointEmbedder(path, device)
    if path.suffix == ".onnx":
        from reidlab.export import OnnxEmbedder

        return OnnxEmbedder(path, device)
    raise ValueError(f"{path}: not a reidlab run folder, training checkpoint (.pt) or ONNX export (.onnx)")


def _collate_keeping_unreadable(items: Sequence[dict]) -> dict:
    """``collate_skipping``, and a batch of nothing but unreadable images is ``{"skipped": paths}``, not an error."""
    if not any("image" in item for item in items):
        return {"skipped": [item["skipped"] for item in items]}
    return collate_skipping(items)


def _why_unreadable(path: str) -> str:
    try:
        load_image(path)
    except CorruptImageError as error:
        return str(error.__cause__ or error)
    return "unreadable while embedding, readable since"


def embed_images(embedder: Embedder, paths: Sequence[str], flip: bool = False, batch_size: int = 128,
                 workers: int = 0, progress: bool = True) -> tuple[torch.Tensor, np.ndarray, list[tuple[int, str]]]:
    """(L2-normalised features [K, D] float32, the positions in ``paths`` of the K images that decode, (position,
    reason) of each one that does not), through the embedder's test transform. ``flip``: the mean of each image's
    features and its mirror's, as the evaluation's ``eval.flip``."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    size, mean, std = (embedder.transform[key] for key in ("size", "mean", "std"))
    records = [Record(str(path), 0, 0, 0) for path in paths]
    loader = DataLoader(ReIDImageDataset(records, build_transforms(False, size=size, mean=mean, std=std),
                                         skip_corrupt=True),
                        batch_size=batch_size, num_workers=workers, collate_fn=_collate_keeping_unreadable)
    feats, kept, skipped = [], [], []
    with tqdm(total=len(records), desc=f"embedding ({embedder.model_name})", unit="img", disable=not progress) as bar:
        for batch in loader:
            skipped += batch["skipped"]
            if "image" in batch:
                out = embedder(batch["image"])
                if flip:
                    out = (out + embedder(batch["image"].flip(-1))) / 2
                feats.append(out.float().cpu())
                kept.append(batch["index"])
            bar.update(len(batch["skipped"]) + len(batch.get("index", ())))
    position = {str(path): i for i, path in enumerate(paths)}
    unreadable = [(position[path], _why_unreadable(path)) for path in skipped]
    if not feats:
        raise ValueError(f"none of the {len(records)} image(s) decodes (first: {paths[0]}: {unreadable[0][1]})")
    return F.normalize(torch.cat(feats), dim=1), torch.cat(kept).numpy(), unreadable


@dataclass
class EmbeddedImages:
    """The features of the images under ``root`` (``paths`` relative to it, in order) and how they were made: what
    a features file holds (module doc). ``skipped``: (relative path, reason) of the files that do not decode."""

    features: np.ndarray
    paths: list[str]
    root: str
    model_name: str
    checkpoint: str
    sha256: str
    transform: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def absolute(self, position: int) -> str:
        return str(Path(self.root) / self.paths[position])

    def check_same_embedding(self, other: EmbeddedImages, what: str) -> None:
        """ValueError (one line) unless ``other`` was embedded by the same checkpoint with the same transform."""
        if other.sha256 != self.sha256:
            raise ValueError(f"{what} was embedded by checkpoint sha256 {other.sha256[:12]} ({other.checkpoint}), "
                             f"the gallery by {self.sha256[:12]} ({self.checkpoint}): embed both with one checkpoint")
        if other.transform != self.transform:
            raise ValueError(f"{what} was embedded with transform {other.transform}, the gallery with "
                             f"{self.transform}: embed both the same way (--flip on both or neither)")

    def save(self, path: str | os.PathLike) -> Path:
        meta = {"format": FEATURES_FORMAT, "root": self.root, "model_name": self.model_name,
                "checkpoint": self.checkpoint, "sha256": self.sha256, "transform": self.transform,
                "skipped": [list(item) for item in self.skipped], "distance": DISTANCE}
        return atomic_write(path, lambda f: np.savez(f, features=self.features.astype(np.float32),
                                                     paths=np.array(self.paths, dtype=str),
                                                     meta=np.array(json.dumps(meta))))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddedImages:
        if not Path(path).is_file():
            raise FileNotFoundError(f"features file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                features, paths = data["features"], data["paths"].tolist()
        except Exception:  # numpy raises many kinds for a file that is no npz of ours (OSError, ValueError, KeyError)
            meta = {}
        if meta.get("format") != FEATURES_FORMAT:
            raise ValueError(f"{path} is not a features file written by `reidlab embed`")
        return cls(features, paths, meta["root"], meta["model_name"], meta["checkpoint"], meta["sha256"],
                   meta["transform"], [tuple(item) for item in meta["skipped"]])


def image_files(folder: str | os.PathLike) -> tuple[Path, list[str]]:
    """(root, paths relative to it, sorted) of a folder's images, recursively, or of one image file."""
    folder = Path(folder)
    if folder.is_file():
        return folder.parent.resolve(), [folder.name]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist")
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return folder.resolve(), paths


def embed_folder(embedder: Embedder, folder: str | os.PathLike, flip: bool = False, batch_size: int = 128,
                 workers: int = 0, progress: bool = True, print_fn=print) -> EmbeddedImages:
    """Every image under ``folder`` (recursively; any names, no labels) or one image file, embedded; the files that
    do not decode are skipped, listed by ``print_fn`` and kept in ``skipped``."""
    root, paths = image_files(folder)
    features, kept, unreadable = embed_images(embedder, [str(root / path) for path in paths], flip, batch_size,
                                              workers, progress)
    skipped = [(paths[position], reason) for position, reason in unreadable]
    if skipped and print_fn is not None:
        print_fn(f"{len(skipped)} unreadable image(s) skipped:")
        for path, reason in skipped:
            print_fn(f"  {path}: {reason}")
    return EmbeddedImages(features.numpy(), [paths[i] for i in kept], str(root), embedder.model_name,
                          str(embedder.path), embedder.sha256, {**embedder.transform, "flip": flip}, skipped)


class Gallery:
    """Embedded images to search, through a ``GalleryIndex`` of a kind chosen per search.

    ``Gallery.from_folder(checkpoint, folder)`` embeds a folder; ``save`` / ``load`` write and read it as a features
    file. An approximate index (ivf, ivfpq, hnsw) is tuned when built (``index``) and, for a gallery with a file,
    saved next to it and loaded again while the features are the same."""

    def __init__(self, images: EmbeddedImages, path: str | os.PathLike | None = None) -> None:
        self.images, self.path = images, None if path is None else Path(path)
        self._indexes: dict[str, GalleryIndex] = {}
        #: kind -> ``GalleryIndex.tune``'s result for the approximate indexes built here (not those loaded)
        self.tuning: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_folder(cls, checkpoint: str | os.PathLike, folder: str | os.PathLike, device: str = "cpu",
                    flip: bool = False, batch_size: int = 128, workers: int = 0, progress: bool = True,
                    print_fn=print) -> Gallery:
        return cls(embed_folder(load_embedder(checkpoint, device), folder, flip, batch_size, workers, progress,
                                print_fn))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        return cls(EmbeddedImages.load(path), path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the features file, and next to it the approximate indexes built so far."""
        self.path = self.images.save(path)
        for kind, index in self._indexes.items():
            if kind != "flat":
                index.save(self.index_path(kind))
        return self.path

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Gallery({len(self)} images under {self.images.root}, {self.images.model_name})"

    def index_path(self, kind: str) -> Path:
        """Where the index of ``kind`` is kept: next to the features file, named by a digest of the features, so a
        file embedded again never meets an index of other features."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images.features).tobytes()).hexdigest()[:12]
        return self.path.with_name(f"{self.path.name}.{kind}-{digest}.index.npz")

    def index(self, kind: str = "flat", top_k: int = 10, target_recall: float = 0.99) -> GalleryIndex:
        """The gallery's index of ``kind``: exact for flat; an approximate kind has its search knob tuned (see
        ``tune_index``) for searches of ``top_k`` when it is built, and keeps that setting when saved and loaded."""
        if kind not in self._indexes:
            cached = None if self.path is None or kind == "flat" else self.index_path(kind)
            if cached is not None and cached.is_file():
                self._indexes[kind] = GalleryIndex.load(cached)
            else:
                self._indexes[kind], self.tuning[kind] = tune_index(self.images.features, kind, top_k,
                                                                    target_recall)
                if cached is not None:
                    self._indexes[kind].save(cached)
        return self._indexes[kind]

    def index_note(self, kind: str) -> str:
        """Where the index of ``kind`` came from, in a line: tuned here (to what recall, with which knob), or
        loaded."""
        if kind == "flat":
            return "flat index: exact search"
        tuned = self.tuning.get(kind)
        if tuned is None:
            return f"{kind} index loaded from {self.index_path(kind)}"
        saved = "" if self.path is None else f"; saved to {self.index_path(kind)}"
        knobs = ", ".join(f"{name}={tuned[name]}" for name in ("nprobe", "efSearch", "refine") if name in tuned)
        return (f"{kind} index tuned ({knobs}) to recall@1 {tuned['recall_at_1']:.3f} of exact search on "
                f"{tuned['queries']} held-out gallery images{saved}")

    def embed(self, queries: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str = "cpu",
              batch_size: int = 128, workers: int = 0, progress: bool = True, print_fn=print) -> EmbeddedImages:
        """Query images (an image or a folder) embedded as the gallery was: by its checkpoint (or ``checkpoint``,
        the same file elsewhere: its sha256 must be the gallery's), with its transform."""
        embedder = load_embedder(checkpoint or self.images.checkpoint, device)
        if embedder.sha256 != self.images.sha256:
            raise ValueError(f"{embedder.path} (sha256 {embedder.sha256[:12]}) is not the checkpoint that embedded "
                             f"the gallery ({self.images.checkpoint}, sha256 {self.images.sha256[:12]})")
        return embed_folder(embedder, queries, self.images.transform["flip"], batch_size, workers, progress, print_fn)

    def search(self, queries, top_k: int = 10, threshold: float | None = None, index: str = "flat") -> pd.DataFrame:
        """Each query's ``top_k`` gallery images, nearest first: a table of ``query`` (its path, or its row for
        features given as an array), ``rank`` (1-based), ``path`` (relative to the gallery's folder) and
        ``distance`` (module doc). ``threshold``: only the matches with distance below it. ``queries``: query
        images embedded as the gallery (``EmbeddedImages``), an image or folder (embedded by ``embed``), or
        features [Q, D]."""
        if isinstance(queries, (str, os.PathLike)):
            queries = self.embed(queries)
        if isinstance(queries, EmbeddedImages):
            self.images.check_same_embedding(queries, "the queries")
            names, features = queries.paths, queries.features
        else:
            features = queries.numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries)
            names = [str(i) for i in range(len(features))]
        distances, ids = self.index(index, top_k).search(features, top_k)
        query, rank = np.indices(ids.shape)
        keep = (ids >= 0) & (distances < threshold if threshold is not None else True)
        return pd.DataFrame({"query": np.asarray(names, dtype=object)[query[keep]], "rank": rank[keep] + 1,
                             "path": np.asarray(self.images.paths, dtype=object)[ids[keep]],
                             "distance": distances[keep]})


def tune_index(features: np.ndarray, kind: str, top_k: int = 10, target_recall: float = 0.99,
               tuning_queries: int = TUNING_QUERIES, seed: int = 0) -> tuple[GalleryIndex, dict[str, Any]]:
    """(a ``GalleryIndex`` of ``kind`` over ``features``, how it was tuned): an approximate kind has its search
    knob set by ``GalleryIndex.tune`` to reach ``target_recall`` (recall@1 of searches of ``top_k`` against exact
    search); the second item is ``tune``'s result ({} for flat).

    Unlabelled images have no validation queries, so a seeded sample of the gallery stands in. A query found in
    the index finds itself at distance 0 whatever the knob, so the knob is tuned on an index built without the
    sample (its nlist kept), then set on the index of every image: building twice is the price."""
    index = GalleryIndex(kind)
    if index.search_knob is None:
        return index.add(features), {}
    held_out = np.zeros(len(features), dtype=bool)
    held_out[np.random.default_rng(seed).choice(len(features), min(tuning_queries, len(features) // 10),
                                                replace=False)] = True
    if not held_out.any():
        raise ValueError(f"{len(features)} images are too few to tune a {kind} index: use --index flat")
    probe = GalleryIndex(kind)
    if probe.needs_training:
        probe.train(features[~held_out])
    probe.add(features[~held_out])
    tuned = probe.tune(features[held_out], target_recall, GalleryIndex("flat").add(features[~held_out]),
                       sample=int(held_out.sum()), seed=seed, k=top_k)
    knobs = {name: probe.params[name] for name in ("nlist", "m", probe.search_knob, "refine") if name in probe.params}
    index = GalleryIndex(kind, **knobs)
    if index.needs_training:
        index.train(features)
    index.add(features)
    return index, {**tuned, "queries": int(held_out.sum())}


def results_page(results: pd.DataFrame, gallery: EmbeddedImages, queries: EmbeddedImages) -> str:
    """A page of image tiles: one row per query, the query then its matches with their rank and distance."""
    from reidlab.explore.tiles import STYLE, row, tile  # the explorer's widgets load with it: only when asked for

    height, width = gallery.transform["size"]
    size = (THUMBNAIL_HEIGHT, max(1, round(THUMBNAIL_HEIGHT * width / height)))
    rows = []
    for position, name in enumerate(queries.paths):
        matches = results[results["query"] == name]
        tiles = [tile(queries.absolute(position), size, "query", mark="query")]
        tiles += [tile(str(Path(gallery.root) / match.path), size,
                       f"#{match.rank} d {match.distance:.3f}<br>{html.escape(match.path)}",
                       rank=match.rank, distance=f"{match.distance:.6f}", image=match.path)
                  for match in matches.itertuples()]
        rows.append(row(html.escape(name), tiles))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>reidlab search</title>{STYLE}</head><body>"
            f"<p style='font: 12px sans-serif'>{len(gallery)} gallery images under {html.escape(gallery.root)}; "
            f"distance: {DISTANCE}</p>{''.join(rows)}</body></html>")


def labelled_dataset(data: str, root: str | os.PathLike | None = None):
    """A registered dataset by name (at ``root``), or the SynthReID at the folder ``data``."""
    if data in list_datasets():
        if root is None:
            raise ValueError(f"dataset {data!r} needs its folder: pass --root")
        return build_dataset(data, root)
    if Path(data).is_dir():
        return build_dataset("synthreid", data)
    raise ValueError(f"--data {data!r} is neither a registered dataset ({', '.join(list_datasets())}) nor a folder")


@dataclass
class Calibration:
    """Distance thresholds at false-accept rates, measured on a labelled split by ``calibrate``: ``record`` is
    what ``calibration.json`` holds, ``genuine`` and ``impostor`` the pairs' distances."""

    record: dict[str, Any]
    genuine: np.ndarray
    impostor: np.ndarray

    def save(self, out_dir: str | os.PathLike) -> Path:
        """``calibration.json`` and ``distances.png`` (the two histograms, thresholds marked) in ``out_dir``."""
        from reidlab.explore.tiles import figure_png
        from reidlab.viz.verification import distance_histograms

        out_dir = Path(out_dir)
        thresholds = {f"FAR {item['far']:g}": item["threshold"] for item in self.record["thresholds"]}
        data = self.record["data"]
        fig = distance_histograms(self.genuine, self.impostor, thresholds,
                                  title=f"{self.record['model_name']} on {data['name']} {data['split']}")
        atomic_write(out_dir / HISTOGRAM_FILE, figure_png(fig))
        return atomic_write(out_dir / CALIBRATION_FILE, json.dumps(self.record, indent=2))


def calibrate(embedder: Embedder, dataset, split: str = "test", far: Sequence[float] = FARS, flip: bool = False,
              batch_size: int = 128, workers: int = 0, progress: bool = True) -> Calibration:
    """The distance thresholds of ``tar_at_far`` on a labelled split, with the true-accept rate at each.

    ``split="test"``: every query x gallery pair (junk gallery images, pid < 0, left out); ``"query"``: every pair
    of two query images. A pair of one identity is genuine, any other an impostor. The images are embedded as
    ``embed`` does, so the thresholds hold for its features (with the same ``flip``)."""
    if split not in ("test", "query"):
        raise ValueError(f"split must be 'test' or 'query', got {split!r}")
    query = dataset.query
    gallery = [r for r in dataset.gallery if r.pid >= 0] if split == "test" else []
    if not query or (split == "test" and not gallery):
        raise ValueError(f"{dataset.name} at {dataset.root} has {len(query)} query and {len(gallery)} gallery "
                         "images: nothing to calibrate on")
    records = query + gallery
    features, kept, unreadable = embed_images(embedder, [r.path for r in records], flip, batch_size, workers, progress)
    pids = np.array([records[i].pid for i in kept])
    is_query = kept < len(query)
    q, q_pids = features[torch.from_numpy(is_query)], pids[is_query]
    if split == "test":
        g, g_pids = features[torch.from_numpy(~is_query)], pids[~is_query]
        similarity, genuine = (q @ g.T).numpy(), q_pids[:, None] == g_pids[None, :]
    else:
        pairs = np.triu_indices(len(q), 1)
        similarity, genuine = (q @ q.T).numpy()[pairs], (q_pids[:, None] == q_pids[None, :])[pairs]
    similarity, genuine = similarity.ravel(), genuine.ravel()
    rates = tar_at_far(similarity, genuine, far)
    thresholds = [{"far": f, "threshold": 1.0 - rates[f]["threshold"], "tar": rates[f]["tar"],
                   "far_achieved": rates[f]["far_achieved"]} for f in far]
    record = {"format": CALIBRATION_FORMAT, "distance": DISTANCE, "accept": "distance < threshold",
              "model_name": embedder.model_name, "checkpoint": str(embedder.path), "sha256": embedder.sha256,
              "transform": {**embedder.transform, "flip": flip},
              "data": {"name": dataset.name, "root": str(dataset.root), "split": split},
              "images": len(kept), "skipped": [[records[i].path, reason] for i, reason in unreadable],
              "pairs": {"genuine": int(genuine.sum()), "impostor": int((~genuine).sum())}, "thresholds": thresholds}
    return Calibration(record, 1.0 - similarity[genuine], 1.0 - similarity[~genuine])


def read_threshold(path: str | os.PathLike, far: float | None, images: EmbeddedImages) -> dict[str, Any]:
    """The entry of ``calibration.json`` at ``far`` (the only one when ``far`` is None): ``{"far", "threshold",
    "tar", "far_achieved"}``; ValueError (one line) unless it was made with the checkpoint and transform that
    embedded ``images``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read calibration file {path}: {error}") from None
    if not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path} is not a calibration file written by `reidlab calibrate`")
    if record["sha256"] != images.sha256:
        raise ValueError(f"{path} calibrates checkpoint sha256 {record['sha256'][:12]} ({record['checkpoint']}), "
                         f"not the one that embedded the gallery ({images.sha256[:12]}): calibrate that checkpoint")
    if record["transform"] != images.transform:
        raise ValueError(f"{path} was measured with transform {record['transform']}, the gallery embedded with "
                         f"{images.transform}: calibrate the same way")
    entries = record["thresholds"]
    if far is None and len(entries) == 1:
        return entries[0]
    chosen = [entry for entry in entries if far is not None and math.isclose(entry["far"], far)]
    if not chosen:
        rates = ", ".join(f"{entry['far']:g}" for entry in entries)
        raise ValueError(f"{path} has thresholds at FAR {rates}, not {far}: choose one with --far")
    return chosen[0]

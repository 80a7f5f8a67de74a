"""A finished run opened for exploration: its checkpoints, its test features and a sample of its training
features (cached in the run folder), and each query's ranking, plain or k-reciprocal re-ranked."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from reidlab import engine
from reidlab.engine.evaluator import eval_loader
from reidlab.engine.provenance import dataset_fingerprint
from reidlab.evaluation import evaluate, evaluate_rank, extract_features, re_ranking
from reidlab.evaluation.search import ranking_features
from reidlab.utils import atomic_write, file_sha256

#: the folder of a run that holds the explorer's caches
CACHE_DIR = "explore"
#: how a gallery image stands to a query: a counted true match or a counted wrong one, or left out of the scores
#: by the Market protocol (junk: pid < 0; same-camera: the query's identity seen by the query's camera)
MARKS = ("true", "wrong", "junk", "same-camera")
THUMBNAIL_HEIGHT = 128


def cached_tensors(path: Path, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``compute()``'s tensors, read back from ``path`` when it was written under the same ``key`` (the inputs'
    digests); otherwise computed and written there. ``"from_cache"`` in the result says which."""
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("key") == key:
            return {**stored["values"], "from_cache": True}
    values = compute()
    atomic_write(path, lambda f: torch.save({"key": key, "values": values}, f))  # never half a cache file
    return {**values, "from_cache": False}


class Features(NamedTuple):
    """L2-normalized test features of one checkpoint; ``from_cache`` says whether they were read back."""

    query: torch.Tensor
    gallery: torch.Tensor
    from_cache: bool


class TrainFeatures(NamedTuple):
    """L2-normalized features of a seeded sample of training images, the ``paths`` of those images in the same
    order; ``from_cache`` says whether they were read back."""

    features: torch.Tensor
    paths: list[str]
    from_cache: bool


def _labels(records) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.pid for r in records]), np.array([r.camid for r in records])


class Ranking:
    """Every query's ranked gallery under one run (optionally re-ranked), with its protocol AP and the rank of
    its first true match, both as ``evaluate`` computes them.

    Plain rankings order by the evaluation's own key (cosine: ``-q.g``, stable ties), row by row on demand.
    Re-ranking keeps the dense [query, gallery] re-ranked distances (``re_ranking``; Market-1501 scale:
    0.2 GB), from which the metrics and the rows both come.
    """

    def __init__(self, run: ExploredRun, rerank: bool) -> None:
        features, config = run.features(), run.config.eval
        self.run, self.rerank = run, rerank
        labels = (run.q_pids, run.g_pids, run.q_camids, run.g_camids)
        if rerank:
            self._dense = re_ranking(features.query, features.gallery, k1=config.rerank_k1, k2=config.rerank_k2,
                                     lambda_value=config.rerank_lambda)
            result = evaluate_rank(self._dense, *labels, max_rank=1, return_per_query=True)
        else:
            self._query, self._gallery, _ = ranking_features(features.query, features.gallery, "cosine")
            result = evaluate(features.query, features.gallery, *labels, max_rank=1, return_per_query=True)
        self.mAP, self.ap = result["mAP"], result["AP"]
        self.first_match_rank = result["first_match_rank"]  # 1-based among the counted entries, 0: no true match

    def distances(self, query: int) -> np.ndarray:
        """The ranking key of every gallery image for one query (smaller is better)."""
        if self.rerank:
            return self._dense[query]
        return (self._query[query] @ self._gallery.T).numpy()

    def top(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(gallery indices, keys) of the query's first ``k`` gallery images, the protocol's left-out ones
        included (see :meth:`marks`)."""
        keys = self.distances(query)
        order = np.argsort(keys, kind="stable")[:k]
        return order, keys[order]

    def describe(self, key: float) -> str:
        """A ranking key as a reader knows it: the cosine similarity, or the re-ranked distance."""
        return f"d {key:.3f}" if self.rerank else f"cos {-key:.3f}"

    def marks(self, query: int, gallery: np.ndarray) -> list[str]:
        """The :data:`MARKS` entry of each gallery index for this query."""
        run = self.run
        same_pid = run.g_pids[gallery] == run.q_pids[query]
        same_cam = run.g_camids[gallery] == run.q_camids[query]
        return ["junk" if pid < 0 else "same-camera" if sp and sc else "true" if sp else "wrong"
                for pid, sp, sc in zip(run.g_pids[gallery], same_pid, same_cam)]

    @property
    def failures(self) -> np.ndarray:
        """Scored queries whose first counted gallery image is not a true match (rank-1 wrong); a query without
        any true match in the gallery is not scored by the protocol, nor counted here."""
        return np.flatnonzero(self.first_match_rank > 1)


class ExploredRun:
    """A training run's folder (``config.yaml``, ``checkpoints/``) rebuilt for the explorer views.

    ``checkpoint``: ``last`` (the end of training) by default; ``epoch_003`` with ``save_every``; ``best`` is the
    epoch of highest *test* mAP, a model the test split chose, so open it only to look at that choice.

    ``features()`` extracts the query and gallery features of ``checkpoint`` once, with a progress bar, into
    ``<run_dir>/explore/features.<checkpoint>.pt``; opening the run again reads them back, unless the
    checkpoint's content or the dataset's fingerprint changed, when they are extracted anew.
    """

    def __init__(self, run_dir: str | os.PathLike, checkpoint: str = "last", device: str = "cpu",
                 name: str | None = None, progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        trained = engine.load_trained(self.run_dir, checkpoint, device=device)
        self.model, self.config, self.dataset, self.checkpoint = trained
        self.device, self.progress = device, progress
        self.name = name or f"{self.run_dir.name} ({self.config.loss.metric})"
        self.q_pids, self.q_camids = _labels(self.dataset.query)
        self.g_pids, self.g_camids = _labels(self.dataset.gallery)
        self._features: Features | None = None
        self._rankings: dict[bool, Ranking] = {}

    def __repr__(self) -> str:
        return (f"ExploredRun({str(self.run_dir)!r}, {self.checkpoint.name}: {len(self.q_pids)} queries, "
                f"{len(self.g_pids)} gallery images)")

    @cached_property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.dataset)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the views' thumbnails: the run's input size, enlarged to at least 128 pixels high."""
        height, width = self.config.data.size
        scale = max(1.0, THUMBNAIL_HEIGHT / height)
        return round(height * scale), round(width * scale)

    @cached_property
    def epoch_checkpoints(self) -> dict[int, Path]:
        """Epoch -> its checkpoint (``RunDir.epoch_checkpoints``, runs trained with ``save_every``); without any, the loaded
        checkpoint alone, under the epoch it finished."""
        found = engine.RunDir(self.run_dir).epoch_checkpoints()
        if not found:
            state = engine.load_checkpoint(self.checkpoint, map_location="cpu")
            found = {int(state.get("epoch", 0)): self.checkpoint}
        return dict(sorted(found.items()))

    def model_at(self, checkpoint: str | os.PathLike) -> nn.Module:
        """The run's model with the weights of another of its checkpoints (the dataset is not read again)."""
        return engine.load_trained(self.run_dir, checkpoint, device=self.device, dataset=self.dataset).model

    def cache_path(self) -> Path:
        return self.run_dir / CACHE_DIR / f"features.{self.checkpoint.stem}.pt"

    def _cache_key(self) -> dict:
        return {"checkpoint": file_sha256(self.checkpoint), "dataset": self.fingerprint,
                "flip": self.config.eval.flip, "size": list(self.config.data.size)}

    def features(self) -> Features:
        """The query and gallery features of the loaded checkpoint, from the cache when it is still valid."""
        if not (self.dataset.query and self.dataset.gallery):
            raise ValueError(f"{self.config.data.name} at {self.config.data.root} has no fixed query/gallery split "
                             "(VehicleID draws its galleries): the query browser needs one")
        if self._features is None:
            values = cached_tensors(self.cache_path(), self._cache_key(),
                                    lambda: {split: self._extract(getattr(self.dataset, split), split)
                                             for split in ("query", "gallery")})
            self._features = Features(values["query"], values["gallery"], values["from_cache"])
        return self._features

    def train_features(self, sample: int = 1000, seed: int = 0) -> TrainFeatures:
        """Features of ``sample`` training images drawn with ``seed`` (all of them when the split is smaller),
        cached like the test features: ``<run_dir>/explore/train_features.<checkpoint>.pt``, under the same key
        plus the draw.

        They are validation queries for settings that must not be fit to the test queries, such as an
        approximate index's search knob: searched in the test gallery, their recall@1 against exact search needs
        no labels, and they are not test queries, so a setting tuned on them is not tuned on the queries it is
        then scored on."""
        records = self.dataset.train
        drawn = np.sort(np.random.default_rng(seed).choice(len(records), min(sample, len(records)), replace=False))
        records = [records[i] for i in drawn]
        values = cached_tensors(self.run_dir / CACHE_DIR / f"train_features.{self.checkpoint.stem}.pt",
                                {**self._cache_key(), "sample": sample, "seed": seed},
                                lambda: {"train": self._extract(records, "train")})
        return TrainFeatures(values["train"], [r.path for r in records], values["from_cache"])

    def _extract(self, records, split: str) -> torch.Tensor:
        from tqdm.auto import tqdm

        loader = eval_loader(records, self.config)
        batches = tqdm(loader, desc=f"{self.name}: {split} features ({self.checkpoint.name})", unit="batch",
                       disable=not self.progress, leave=False)
        amp = engine.autocast_dtype(self.config, next(self.model.parameters()).device) or False
        return extract_features(self.model, batches, flip=self.config.eval.flip, amp=amp)[0]

    def ranking(self, rerank: bool = False) -> Ranking:
        if rerank not in self._rankings:
            self._rankings[rerank] = Ranking(self, rerank)
        return self._rankings[rerank]

    def same_test_split(self, other: ExploredRun) -> bool:
        """Whether two runs rank the same queries against the same gallery (so one query can be shown in both)."""
        return [r.path for r in self.dataset.query] == [r.path for r in other.dataset.query] and \
            [r.path for r in self.dataset.gallery] == [r.path for r in other.dataset.gallery]


def write_explore_metrics(output_dir: str | os.PathLike, run: ExploredRun, compare: ExploredRun | None = None) -> dict:
    """The explore page's final record (the runs, the checkpoint, the ranking's mAP and failures, the epochs the
    sliders offer), written through ``study.records.write_page_metrics``; the query failures figure the browser
    wrote doubles as the index card's summary."""
    from reidlab.study.records import write_page_metrics
    from reidlab.viz import figure_path

    atomic_write(figure_path(output_dir, "summary"), figure_path(output_dir, "query_failures").read_bytes())
    ranking = run.ranking()
    metrics = {"run_dir": str(run.run_dir), "compare_run_dir": None if compare is None else str(compare.run_dir),
               "checkpoint": run.checkpoint.name, "queries": len(run.q_pids), "gallery": len(run.g_pids),
               "mAP": ranking.mAP, "failures": len(ranking.failures), "epochs": list(run.epoch_checkpoints),
               "features_from_cache": run.features().from_cache}
    if compare is not None:
        metrics["compare_mAP"] = compare.ranking().mAP
    return write_page_metrics(output_dir, metrics)


def drawn_checkpoints(run_dir: str | os.PathLike, max_shown: int) -> dict[int, Path]:
    """Epoch -> checkpoint of up to ``max_shown`` of the run's epoch checkpoints, spread evenly over training with
    the first and the last included: how the selection changes needs the start and the end of training."""
    found = engine.RunDir(run_dir).epoch_checkpoints()
    if not found:
        raise FileNotFoundError(f"no epoch checkpoints in {engine.RunDir(run_dir).checkpoint_dir}: "
                                "train it with save_every=1")
    epochs = list(found)
    picks = np.linspace(0, len(epochs) - 1, min(max_shown, len(epochs))).round().astype(int)
    return {epochs[i]: found[epochs[i]] for i in sorted(set(picks))}

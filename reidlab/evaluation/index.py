"""Gallery search through faiss: exact or approximate k-nearest neighbours for galleries of millions.

``GalleryIndex`` wraps the faiss index kinds that matter for ReID retrieval behind one small interface
(train / add / search / tune / save / load), with the metric and tie rule of reidlab's exact evaluation:
"cosine" ranks L2-normalised features by inner product, "euclidean" by squared L2 distance, and exact ties
go to the lower gallery index. Scores are returned as distances (smaller is closer) for both metrics:
``1 - cos`` and ``|q - g|^2``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlab.evaluation.rank import evaluate_retrieved
from reidlab.utils import atomic_write

__all__ = ["INDEX_KINDS", "GalleryIndex", "operating_points"]

# kind -> (the defaults of its faiss parameters, why)
INDEX_KINDS: dict[str, dict[str, Any]] = {
    "flat": {},  # exact search: the reference every other kind is measured against
    "ivf": {"nlist": None, "nprobe": 16},  # inverted lists; nlist None: about 4 sqrt(N) at train time
    # m None: D / 4 sub-vectors; nbits 4 scans codes with SIMD lookups (faiss "fast scan"), other nbits the
    # generic way; refine: exact re-scoring of refine x k candidates (1: codes only, the compressed index)
    "ivfpq": {"nlist": None, "nprobe": 16, "m": None, "nbits": 4, "refine": 10},
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 64},  # graph search, no training, most memory
}
METRICS = ("cosine", "euclidean")


def _as_float32(x, what: str) -> np.ndarray:
    """A C-contiguous float32 [N, D] array from numpy or torch, with clear errors for what faiss cannot take."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D [n, dim], got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{what} hold NaN or Inf in {bad} row(s); check the model's features")
    return x


class GalleryIndex:
    """A faiss index over gallery features, searched with reidlab's metrics and tie rule.

    Args:
        kind: "flat" (exact), "ivf" (inverted lists, exact vectors), "ivfpq" (inverted lists of product-quantised
            codes, 4-bit codes scanned in SIMD registers, re-scored exactly on the best ``refine`` x k
            candidates), or "hnsw" (a navigable graph).
        metric: "cosine" (features are L2-normalised on the way in) or "euclidean" (squared L2).
        threads: faiss threads; None follows ``torch.get_num_threads()`` at each call.
        **params: the kind's faiss parameters (``INDEX_KINDS`` lists them with their defaults): nlist, nprobe,
            m, nbits, refine, M, efConstruction, efSearch.
    """

    def __init__(self, kind: str = "flat", metric: str = "cosine", threads: int | None = None, **params: Any):
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {sorted(INDEX_KINDS)}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        unknown = set(params) - set(INDEX_KINDS[kind])
        if unknown:
            raise ValueError(f"index kind {kind!r} takes {sorted(INDEX_KINDS[kind]) or 'no parameters'}, "
                             f"not {sorted(unknown)}")
        self.kind, self.metric, self.threads = kind, metric, threads
        self.params = {**INDEX_KINDS[kind], **params}
        self.dim: int | None = None
        self._index = None
        self._parts: list = []

    # -- building ------------------------------------------------------------------------------------
    def _prepare(self, x, what: str) -> np.ndarray:
        x = _as_float32(x, what)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{what} have dimension {x.shape[1]} but the index holds {self.dim}-d features")
        if self.metric == "cosine":
            import faiss

            x = x.copy()  # normalised in place below: never the caller's array or tensor
            faiss.normalize_L2(x)
        return x

    def _set_threads(self) -> None:
        import faiss

        faiss.omp_set_num_threads(self.threads or torch.get_num_threads())

    def _create(self, dim: int, num_train: int):
        import faiss

        inner = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        flat = faiss.IndexFlatIP if self.metric == "cosine" else faiss.IndexFlatL2
        p = self.params
        if self.kind == "flat":
            return flat(dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, p["M"], inner)
            index.hnsw.efConstruction = p["efConstruction"]
            return index
        nlist = p["nlist"] or max(1, int(4 * np.sqrt(num_train)))
        needed = max(nlist, 2 ** p["nbits"] if self.kind == "ivfpq" else 0)
        if num_train < needed:
            raise ValueError(f"index kind {self.kind!r} with nlist={nlist}"
                             + (f" and nbits={p['nbits']}" if self.kind == "ivfpq" else "")
                             + f" needs at least {needed} training vectors, got {num_train}; train on more "
                             "features or pass a smaller nlist" + (" / nbits" if self.kind == "ivfpq" else ""))
        self.params["nlist"] = nlist
        quantizer = flat(dim)
        if self.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, inner)
        else:
            m = p["m"] or max(1, dim // 4)
            if dim % m:
                raise ValueError(f"ivfpq needs m dividing the dimension {dim}, got m={m}")
            self.params["m"] = m
            if p["nbits"] == 4:
                index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, m, 4, inner)
            else:
                index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, p["nbits"], inner)
        self._parts = [quantizer, index]  # faiss indexes point to these; Python must keep them alive
        if self.kind == "ivfpq" and p["refine"] > 1:  # exact re-scoring of refine x k candidates
            index = faiss.IndexRefineFlat(index)
        return index

    @property
    def needs_training(self) -> bool:
        return self.kind in ("ivf", "ivfpq")

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    def train(self, feats) -> GalleryIndex:
        """Learn the coarse quantiser (and PQ codebooks) from ``feats``; a no-op for flat and hnsw."""
        x = self._prepare(feats, "training features")
        self.dim = x.shape[1]
        self._set_threads()
        if self._index is None:
            self._index = self._create(self.dim, len(x))
        if self.needs_training:
            self._index.train(x)
        return self

    def add(self, feats) -> GalleryIndex:
        """Append gallery features; their positions continue from ``len(self)``."""
        x = self._prepare(feats, "gallery features")
        if self._index is None:
            if self.needs_training:
                raise ValueError(f"index kind {self.kind!r} must be trained before adding: call "
                                 ".train(feats) first (a sample of the gallery will do)")
            self.dim = x.shape[1]
            self._index = self._create(self.dim, len(x))
        elif not self._index.is_trained:
            raise ValueError(f"index kind {self.kind!r} must be trained before adding: call .train(feats) first")
        self._set_threads()
        self._index.add(x)
        return self

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    # -- searching -----------------------------------------------------------------------------------
    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances [Q, k] ascending, gallery indices [Q, k]); -1 pads rows when fewer than k are found.

        Distances: ``1 - cos`` for "cosine", squared L2 for "euclidean". Exact ties are ordered by gallery
        index, as in ``evaluate``."""
        if self._index is None or len(self) == 0:
            raise ValueError("the index is empty: call .add(gallery_features) before .search")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        q = self._prepare(queries, "queries")
        self._set_threads()
        self._apply_search_params()
        k_search = min(k, len(self))
        scores, ids = self._index.search(q, k_search)
        distances = 1.0 - scores if self.metric == "cosine" else scores
        distances = np.where(ids < 0, np.inf, distances)
        # exact ties (and faiss's unspecified order among them) go to the lower gallery index
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), distances), axis=1)
        distances, ids = np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)
        if k_search < k:
            pad = k - k_search
            distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return distances.astype(np.float32), ids.astype(np.int64)

    def _apply_search_params(self) -> None:
        import faiss

        if self.kind in ("ivf", "ivfpq"):
            faiss.extract_index_ivf(self._index).nprobe = int(self.params["nprobe"])
            if isinstance(self._index, faiss.IndexRefine):
                self._index.k_factor = float(max(1, self.params["refine"]))
        elif self.kind == "hnsw":
            self._index.hnsw.efSearch = int(self.params["efSearch"])

    # -- tuning --------------------------------------------------------------------------------------
    @property
    def search_knob(self) -> str | None:
        """The parameter that trades speed for recall at search time (None for exact flat search)."""
        return {"ivf": "nprobe", "ivfpq": "nprobe", "hnsw": "efSearch"}.get(self.kind)

    def tune(self, queries, target_recall: float = 0.99, reference: GalleryIndex | None = None,
             sample: int = 1000, seed: int = 0, k: int = 100) -> dict[str, Any]:
        """Set the search knob (nprobe or efSearch; then ivfpq's refine depth) to the smallest power of two whose
        recall@1 against exact search reaches ``target_recall`` on a sample of ``queries``, and return the
        operating point chosen: ``{"recall_at_1", "target_recall", "nprobe" | "efSearch", ("refine"),
        "tried": {"nprobe=4": recall, ...}}``. When the target is out of reach (compressed codes cap the
        recall), the sweep stops where doubling gains less than 0.1 point, or at nlist / efSearch 4096.

        ``queries``: validation queries, not the test queries the index is then scored on, or the setting is fit
        to them. Recall@1 against exact search needs no labels, so training images searched in the same gallery
        will do (``reidlab.explore.ExploredRun.train_features``).

        ``reference``: a flat GalleryIndex over the same gallery; by default one is built from the vectors this
        index stores (ivf, hnsw, ivfpq with refine); ivfpq without refine keeps only codes and needs it.
        ``k``: the list length the index will be searched with; recall@1 is measured on such searches, since
        ivfpq re-scores ``refine`` x k candidates."""
        if not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must lie in (0, 1], got {target_recall}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        knob = self.search_knob
        if knob is None:
            return {"recall_at_1": 1.0, "target_recall": target_recall, "tried": {}}
        q = _as_float32(queries, "queries")
        if len(q) > sample:
            q = q[np.sort(np.random.default_rng(seed).choice(len(q), sample, replace=False))]
        if reference is None:
            reference = GalleryIndex("flat", self.metric, self.threads).add(self.reconstruct())
        exact = reference.search(q, 1)[1][:, 0]

        def sweep(name: str, limit: int) -> float:
            value, previous = 1, -1.0
            while True:
                self.params[name] = value
                tried[f"{name}={value}"] = recall = float((self.search(q, k)[1][:, 0] == exact).mean())
                if recall >= target_recall or value >= limit or (value >= 8 and recall - previous < 1e-3):
                    return recall
                value, previous = min(value * 2, limit), recall

        tried: dict[str, float] = {}
        recall = sweep(knob, self.params["nlist"] if knob == "nprobe" else 4096)
        if recall < target_recall and self.kind == "ivfpq" and self.params["refine"] > 1:
            recall = sweep("refine", 256)  # the codes lose the order: re-score more candidates exactly
        chosen = {name: self.params[name] for name in (knob, "refine") if name in self.params}
        return {"recall_at_1": recall, "target_recall": target_recall, **chosen, "tried": tried}

    def reconstruct(self) -> np.ndarray:
        """The stored gallery vectors [N, D] (normalised for "cosine"), for kinds that keep them exactly."""
        import faiss

        if self._index is None:
            raise ValueError("the index is empty")
        if self.kind == "ivfpq":
            if self.params["refine"] <= 1:
                raise ValueError("ivfpq without refine keeps only compressed codes: pass reference=GalleryIndex("
                                 "'flat').add(gallery) to tune it")
            return faiss.downcast_index(self._index.refine_index).reconstruct_n(0, len(self))
        if self.kind == "ivf":
            ivf = faiss.extract_index_ivf(self._index)
            ivf.make_direct_map()
        return self._index.reconstruct_n(0, len(self))

    # -- size and persistence ------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of the serialised index (vectors or codes, lists, graph)."""
        import faiss

        return 0 if self._index is None else int(faiss.serialize_index(self._index).nbytes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index and its settings to one ``.npz`` file (no pickle)."""
        import faiss

        if self._index is None:
            raise ValueError("nothing to save: the index is empty")
        meta = {"kind": self.kind, "metric": self.metric, "params": self.params, "dim": self.dim}
        blob = faiss.serialize_index(self._index)
        return atomic_write(path, lambda f: np.savez(f, index=blob, meta=np.array(json.dumps(meta))))

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> GalleryIndex:
        """Read an index written by :meth:`save`."""
        import faiss

        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            blob = data["index"]
        index = cls(meta["kind"], meta["metric"], threads, **meta["params"])
        index.dim, index._index = meta["dim"], faiss.deserialize_index(blob)
        return index

    def __repr__(self) -> str:
        return f"GalleryIndex(kind={self.kind!r}, metric={self.metric!r}, size={len(self)}, dim={self.dim}, {self.params})"


def operating_points(index: GalleryIndex, queries, q_pids, g_pids, q_camids, g_camids, exact_ids,
                     values: list[int] | None = None, top_k: int = 100) -> list[dict[str, Any]]:
    """The speed / accuracy trade-off of ``index`` along its search knob, one dict per value of ``values``
    (default: the current setting; the knob is left at the last value).

    Each point: the knob value, ``queries_per_s`` (one batched search of every query, top ``top_k``),
    ``recall_at_1`` and ``recall_at_10`` against ``exact_ids`` (a flat index's ranked ids for the same
    queries), and the retrieved lists' ``rank1`` and ``mAP_at_k`` (:func:`evaluate_retrieved`). These are the
    numbers to report on the test queries, with the knob tuned on other ones (see :meth:`GalleryIndex.tune`)."""
    knob = index.search_knob
    points = []
    for value in values if values is not None and knob is not None else [None]:
        if value is not None:
            index.params[knob] = value
        start = time.perf_counter()
        ids = index.search(queries, top_k)[1]
        seconds = time.perf_counter() - start
        metrics = evaluate_retrieved(ids, q_pids, g_pids, q_camids, g_camids, max_rank=min(50, top_k))
        top10 = min(10, top_k, exact_ids.shape[1])
        overlap10 = (ids[:, :top10, None] == exact_ids[:, None, :top10]).any(-1).mean()
        points.append({**({knob: value} if value is not None else {}),
                       "queries_per_s": round(len(ids) / seconds, 1),
                       "recall_at_1": round(float((ids[:, 0] == exact_ids[:, 0]).mean()), 4),
                       "recall_at_10": round(float(overlap10), 4),
                       "rank1": round(float(metrics["cmc"][0]), 4), "mAP_at_k": round(metrics["mAP"], 4)})
    return points

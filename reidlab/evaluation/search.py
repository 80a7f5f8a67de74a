"""Feature-level evaluation: chunked query x gallery search feeding the exact ranking metrics.

Never holds the whole distance matrix: query chunks are multiplied against the gallery in torch (on the
features' device, so on GPU when they are CUDA tensors) and each chunk goes straight to
:func:`reidlab.evaluation.rank.match_ranks`, which finds the ranks of the true matches without sorting.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.evaluation.checks import as_feature_tensor, check_positive_int
from reidlab.evaluation.query_expansion import average_query_expansion
from reidlab.evaluation.index import GalleryIndex
from reidlab.evaluation.rank import MetricAccumulator, RankingProblem, evaluate_retrieved, match_ranks
from reidlab.evaluation.rerank import KReciprocalReranker

__all__ = ["evaluate", "ranking_features"]

METRICS = ("cosine", "euclidean")
#: tolerance on |norm - 1| under which features count as L2-normalized (see :func:`ranking_features`)
UNIT_NORM_ATOL = 1e-4


def _is_unit_norm(x: torch.Tensor) -> bool:
    return bool(((x.norm(dim=1) - 1).abs() <= UNIT_NORM_ATOL).all())


def ranking_features(q: torch.Tensor, g: torch.Tensor, metric: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(scaled query, gallery, per-gallery offset or None): ``q_s @ g.T + offset`` orders like the metric.

    cosine: features are L2-normalized unless they already are; the key is ``-q.g``.  euclidean on
    unit-norm features: ``|q - g|^2 = 2 - 2 q.g``, so the key is the same ``-q.g`` - cosine and squared
    Euclidean rank from one similarity and cannot disagree by rounding.  euclidean otherwise:
    ``|g|^2 - 2 q.g`` (the per-query constant ``|q|^2`` is left out: it cannot change the order).
    The scaling by -1 or -2 is exact and goes on the (smaller) query side: the gallery is not copied.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if _is_unit_norm(q) and _is_unit_norm(g):
        return -q, g, None
    if metric == "cosine":
        return -F.normalize(q, dim=1), F.normalize(g, dim=1), None
    return -2.0 * q, g, (g * g).sum(1)


def _search_index(index: GalleryIndex, q: torch.Tensor, g: torch.Tensor, kept: torch.Tensor | None,
                  num_full: int, metric: str, top_k: int, chunk: int) -> np.ndarray:
    """Each query's top K through ``index`` as positions in the whole gallery ([num_query, K], -1 for none).
    An empty index is filled with ``g`` (the gallery without junk); a filled one must hold the whole gallery
    (``num_full`` images, junk included) or ``g``."""
    if index.metric != metric:
        raise ValueError(f"the index ranks by {index.metric!r} but evaluate was asked for metric={metric!r}")
    if len(index) == 0:
        if index.needs_training:
            index.train(g)
        index.add(g)
    if len(index) not in (num_full, len(g)):
        raise ValueError(f"the index holds {len(index)} images but the gallery has {num_full}; pass an empty "
                         "index (evaluate fills it) or one filled with this gallery, in its order")
    ids = np.concatenate([index.search(q[start:start + chunk], top_k)[1] for start in range(0, len(q), chunk)])
    if kept is not None and len(index) != num_full:  # filled with the junk-free gallery: back to whole positions
        ids = np.where(ids >= 0, kept.cpu().numpy()[np.maximum(ids, 0)], -1)
    return ids


def _default_chunk(num_gallery: int, device: torch.device) -> int:
    elements = 1 << (26 if device.type == "cuda" else 24)
    return max(1, elements // max(num_gallery, 1))


def evaluate(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, rerank: bool = False,
             metric: str = "cosine", chunk_size: int | None = None, device=None, rerank_kwargs: dict | None = None,
             query_expansion: dict | None = None, return_per_query: bool = False,
             index: GalleryIndex | None = None, top_k: int = 100) -> dict:
    """Metrics of :func:`reidlab.evaluation.evaluate_rank` straight from features, chunk by chunk.

    ``metric``: "cosine" or "euclidean" (squared; identical rankings on L2-normalized features).
    ``rerank``: k-reciprocal re-ranking (``rerank_kwargs`` go to :class:`KReciprocalReranker`: k1, k2,
    lambda_value), which is defined on Euclidean distances (``metric`` is not used then); its distances
    are produced chunk by chunk, never as a whole matrix, and equal ``re_ranking(...)`` with the same
    ``chunk_size``.
    ``query_expansion``: keyword arguments of :func:`average_query_expansion` (e.g. ``dict(k=5, alpha=3)``),
    applied before the search / re-ranking; junk gallery images (pid < 0) take no part in it.
    ``chunk_size``: query rows per chunk (default: about 16M distances per chunk on CPU; all queries with an index).  ``device``: where
    to compute (default: the features' device).
    ``index``: search through a :class:`GalleryIndex` (faiss) and score only each query's ``top_k`` retrieved
    images: an empty index is filled with the gallery (junk left out; trained on it first where the kind
    needs it), a filled one must hold the whole gallery in order. The result is then mAP@K, CMC@K and
    mINP@K (``"top_k": K`` in the result): true matches beyond the top K add nothing to AP, and INP is 0
    when the last one lies beyond it. With an exact ("flat") index it is at most the exact mAP, and equal to it
    when every true match is within the top K; an approximate index can score above it, as the hard negatives
    it misses no longer push the true matches down.

    Equal to ``evaluate_rank`` on the dense matrix computed the same way (same keys, same ties).
    """
    max_rank = check_positive_int(max_rank, "max_rank")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q = as_feature_tensor(q_feats, "q_feats", device)
    g = as_feature_tensor(g_feats, "g_feats", q.device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats have dimension {q.shape[1]} but g_feats have {g.shape[1]}")
    if q.dtype != g.dtype:
        q, g = q.double(), g.double()
    problem = RankingProblem(q_pids, g_pids, q_camids, g_camids, num_query=len(q), num_gallery=len(g))
    num_full = len(g)
    kept = None if problem.kept_columns is None else torch.from_numpy(problem.kept_columns)
    if kept is not None and not rerank:
        g = g[kept.to(g.device)]  # junk (pid < 0) leaves before query expansion and search
    if query_expansion and kept is not None and rerank:
        # re-ranking keeps junk in its neighbour graph (normalized, not expanded), but no feature expands with junk
        q, expanded = average_query_expansion(q, g[kept.to(g.device)], **query_expansion)
        g = F.normalize(g, dim=1).index_copy(0, kept.to(g.device), expanded)
    elif query_expansion:
        q, g = average_query_expansion(q, g, **query_expansion)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    if index is not None:
        if rerank:
            raise ValueError("re-ranking needs every distance; evaluate with either rerank=True or an index")
        # faiss blocks its own search, and batches of fewer than 20 queries leave its BLAS path: all at once
        ids = _search_index(index, q, g, kept, num_full, metric, check_positive_int(top_k, "top_k"),
                            chunk_size or len(q))
        return evaluate_retrieved(ids, q_pids, g_pids, q_camids, g_camids, max_rank, return_per_query)
    acc = MetricAccumulator(problem.num_query)
    if rerank:
        reranker = KReciprocalReranker(q, g, chunk_size=chunk_size, **(rerank_kwargs or {}))
        for rows, block in reranker.iter_query_rows():
            keys = torch.from_numpy(block)
            acc.add(rows, *match_ranks(keys if kept is None else keys[:, kept], problem, rows))
        return acc.result(max_rank, return_per_query)
    q, g, offset = ranking_features(q, g, metric)
    g_t = g.T
    for rows in problem.chunks(chunk_size or _default_chunk(len(g), q.device)):
        keys = q[rows] @ g_t if offset is None else torch.addmm(offset.unsqueeze(0), q[rows], g_t)
        acc.add(rows, *match_ranks(keys, problem, rows))
    return acc.result(max_rank, return_per_query)

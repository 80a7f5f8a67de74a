"""The chance level of a retrieval split: what random features score under the same protocol."""

from __future__ import annotations

import numpy as np

from .checks import check_positive_int
from .rank import evaluate_rank


def chance_level(q_pids, g_pids, q_camids, g_camids, draws: int = 20, seed: int = 0,
                 max_distances: float = 1e8) -> dict[str, float]:
    """Mean mAP and rank-1 (fractions) of ``draws`` random rankings (i.i.d. uniform distances) of the gallery:
    the floor a trained model must clear. It depends on the split (gallery size, matches per query, the
    same-camera rule), so a report states it next to its results.

    A large split is estimated within ``max_distances`` random distances in all: a seeded subset of at most
    ``max_distances / 5`` query-gallery pairs per draw and fewer draws (SynthReID-sized splits use every
    query and all ``draws``)."""
    draws = check_positive_int(draws, "draws")
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a) for a in (q_pids, g_pids, q_camids, g_camids))
    rng = np.random.default_rng(seed)
    num_query = min(len(q_pids), max(1, int(max_distances / 5 // max(len(g_pids), 1))))
    if num_query < len(q_pids):
        picked = np.sort(rng.choice(len(q_pids), num_query, replace=False))
        q_pids, q_camids = q_pids[picked], q_camids[picked]
    draws = int(np.clip(max_distances // (num_query * max(len(g_pids), 1)), 1, draws))
    shape = (num_query, len(g_pids))
    results = [evaluate_rank(rng.random(shape), q_pids, g_pids, q_camids, g_camids, max_rank=1) for _ in range(draws)]
    return {"mAP": float(np.mean([r["mAP"] for r in results])), "rank1": float(np.mean([r["cmc"][0] for r in results])),
            "draws": draws, "queries": num_query}


def split_chance_level(dataset, **kwargs) -> dict[str, float]:
    """:func:`chance_level` of a dataset's query / gallery split (records with ``pid`` and ``camid``)."""
    q_pids, g_pids, q_camids, g_camids = (np.array([getattr(r, field) for r in records])
                                          for field in ("pid", "camid") for records in (dataset.query, dataset.gallery))
    return chance_level(q_pids, g_pids, q_camids, g_camids, **kwargs)

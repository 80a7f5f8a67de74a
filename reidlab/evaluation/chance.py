"""The chance level of a retrieval split: what random features score under the same protocol."""

from __future__ import annotations

import numpy as np

from .rank import evaluate_rank


def chance_level(q_pids, g_pids, q_camids, g_camids, draws: int = 20, seed: int = 0) -> dict[str, float]:
    """Mean mAP and rank-1 (fractions) of ``draws`` random rankings (i.i.d. uniform distances) of the gallery:
    the floor a trained model must clear. It depends on the split (gallery size, matches per query, the
    same-camera rule), so a report states it next to its results."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    shape = (len(q_pids), len(g_pids))
    results = [evaluate_rank(rng.random(shape), q_pids, g_pids, q_camids, g_camids, max_rank=1) for _ in range(draws)]
    return {"mAP": float(np.mean([r["mAP"] for r in results])), "rank1": float(np.mean([r["cmc"][0] for r in results])),
            "draws": draws}

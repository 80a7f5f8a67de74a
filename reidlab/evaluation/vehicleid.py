"""VehicleID protocol on features: per test size, random one-image-per-vehicle galleries over seeded draws.

For each draw one image of every vehicle is picked at random as the gallery and all its other images
are queries; R1, R5 and mAP are averaged over ``num_draws`` draws (10 in the literature) and their
standard deviation (over draws, ddof=0) is reported.  VehicleID has no cameras, so queries get camid 0
and gallery images camid 1: nothing is ever removed by the same-camera rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from reidlab.evaluation.checks import as_feature_tensor, as_label_array, check_positive_int
from reidlab.evaluation.search import evaluate

__all__ = ["draw_gallery", "evaluate_vehicleid", "evaluate_vehicleid_sizes"]


def draw_gallery(vids: np.ndarray, seed: int) -> np.ndarray:
    """Indices of one randomly chosen image per vehicle (sorted), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vids))
    _, first = np.unique(vids[order], return_index=True)
    return np.sort(order[first])


def evaluate_vehicleid(feats, vids, num_draws: int = 10, seed: int = 0, metric: str = "cosine",
                       draw_fn: Callable[[np.ndarray, int], np.ndarray] = draw_gallery, **evaluate_kwargs) -> dict:
    """Mean and std over draws of R1, R5 and mAP for one test set (features [N, D], vehicle ids [N]).

    Draw ``d`` uses seed ``seed + d`` with ``draw_fn(vids, seed) -> gallery indices``.  Vehicles with a
    single image only ever appear in the gallery (as distractors).  Extra keyword arguments go to
    :func:`reidlab.evaluation.evaluate` (e.g. ``rerank=True``).
    """
    x = as_feature_tensor(feats, "feats")
    vids = as_label_array(vids, "vids")
    if len(vids) != len(x):
        raise ValueError(f"vids has {len(vids)} entries but there are {len(x)} feature rows")
    num_draws = check_positive_int(num_draws, "num_draws")
    max_rank = max(5, evaluate_kwargs.pop("max_rank", 5))
    per_draw = {"R1": [], "R5": [], "mAP": []}
    for draw in range(num_draws):
        gallery = np.asarray(draw_fn(vids, seed + draw))
        is_query = np.ones(len(vids), dtype=bool)
        is_query[gallery] = False
        query = np.flatnonzero(is_query)
        if len(query) == 0:
            raise ValueError("every vehicle has a single image: no query is left after drawing the gallery")
        result = evaluate(x[query], x[gallery], vids[query], vids[gallery], np.zeros(len(query), dtype=np.int64),
                          np.ones(len(gallery), dtype=np.int64), max_rank=max_rank, metric=metric,
                          **evaluate_kwargs)
        per_draw["R1"].append(result["cmc"][0])
        per_draw["R5"].append(result["cmc"][4])
        per_draw["mAP"].append(result["mAP"])
    out: dict = {"num_draws": int(num_draws)}
    for name, values in per_draw.items():
        out[name] = float(np.mean(values))
        out[f"{name}_std"] = float(np.std(values))
    out["per_draw"] = {name: [float(v) for v in values] for name, values in per_draw.items()}
    return out


def evaluate_vehicleid_sizes(test_sets: Mapping[object, tuple], **kwargs) -> dict:
    """:func:`evaluate_vehicleid` for each test size: ``{size: (feats, vids)}`` -> ``{size: result}``."""
    if not test_sets:
        raise ValueError("test_sets is empty: pass {test_size: (feats, vids)}")
    return {size: evaluate_vehicleid(feats, vids, **kwargs) for size, (feats, vids) in test_sets.items()}

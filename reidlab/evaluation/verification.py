"""Verification metric: TAR at FAR (true accept rate at a fixed false accept rate).

Every query-gallery pair is a trial; a pair of the same identity is *genuine*, otherwise an *impostor*.
A pair is accepted when its similarity is strictly above a threshold.  For a target FAR ``f`` the
threshold is the ``(floor(f * num_impostors) + 1)``-th highest impostor score, so at most a fraction
``f`` of impostor pairs is accepted (fewer when scores tie at the threshold); TAR is the fraction of
genuine pairs accepted at that threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.evaluation.checks import as_feature_tensor, as_label_array

__all__ = ["tar_at_far", "pairwise_tar_at_far"]


def tar_at_far(scores, genuine, far: Sequence[float] = (1e-4, 1e-3, 1e-2)) -> dict:
    """``{far: {"tar", "threshold", "far_achieved"}}`` from pair similarities and genuine flags (module doc)."""
    scores = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).ravel()
    genuine = np.asarray(genuine.cpu() if isinstance(genuine, torch.Tensor) else genuine).ravel().astype(bool)
    if len(scores) != len(genuine):
        raise ValueError(f"scores has {len(scores)} entries but genuine has {len(genuine)}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    genuine_scores, impostor_scores = scores[genuine], scores[~genuine]
    if len(genuine_scores) == 0 or len(impostor_scores) == 0:
        raise ValueError(f"TAR@FAR needs genuine and impostor pairs, got {len(genuine_scores)} genuine and "
                         f"{len(impostor_scores)} impostor")
    impostor_desc = np.sort(impostor_scores)[::-1]
    out = {}
    for f in far:
        if not 0 <= f < 1:
            raise ValueError(f"FAR values must lie in [0, 1), got {f!r}")
        threshold = impostor_desc[int(np.floor(f * len(impostor_desc)))]
        out[f] = {"tar": float(np.mean(genuine_scores > threshold)), "threshold": float(threshold),
                  "far_achieved": float(np.mean(impostor_scores > threshold))}
    return out


def pairwise_tar_at_far(q_feats, g_feats, q_pids, g_pids, far: Sequence[float] = (1e-4, 1e-3, 1e-2)) -> dict:
    """TAR@FAR over all query x gallery pairs with cosine similarity (materializes the q x g scores)."""
    q = F.normalize(as_feature_tensor(q_feats, "q_feats"), dim=1)
    g = F.normalize(as_feature_tensor(g_feats, "g_feats"), dim=1)
    q_pids, g_pids = as_label_array(q_pids, "q_pids"), as_label_array(g_pids, "g_pids")
    if len(q_pids) != len(q) or len(g_pids) != len(g):
        raise ValueError(f"labels ({len(q_pids)}, {len(g_pids)}) do not match features ({len(q)}, {len(g)})")
    scores = (q @ g.T).cpu().numpy()
    return tar_at_far(scores, q_pids[:, None] == g_pids[None, :], far)

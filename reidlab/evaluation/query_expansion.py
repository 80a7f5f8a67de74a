"""Alpha-weighted average query expansion (alpha-QE, Radenovic et al., TPAMI 2018).

Each query is replaced by the L2-normalized weighted sum of itself (weight 1) and its ``k`` nearest
gallery features, weighted by ``max(cos, 0) ** alpha`` (``alpha = 0``: plain average query expansion).
With ``expand_gallery=True`` gallery features are expanded the same way among the gallery (their own
entry excluded from the neighbours: database-side augmentation).  Works chunk by chunk on the features'
device; the result is L2-normalized.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidlab.evaluation.checks import check_positive_int

__all__ = ["average_query_expansion"]

_CHUNK_ELEMENTS = 1 << 24


def _expand(x: torch.Tensor, database: torch.Tensor, k: int, alpha: float, exclude_self: bool) -> torch.Tensor:
    out = torch.empty_like(x)
    chunk = max(1, _CHUNK_ELEMENTS // max(len(database), 1))
    for start in range(0, len(x), chunk):
        rows = slice(start, min(start + chunk, len(x)))
        sims = x[rows] @ database.T
        if exclude_self:
            sims[torch.arange(sims.shape[0]), torch.arange(rows.start, rows.stop)] = -torch.inf
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = top_sims.clamp(min=0).pow(alpha)
        out[rows] = x[rows] + (weights.unsqueeze(-1) * database[top_idx]).sum(1)
    return F.normalize(out, dim=1)


def average_query_expansion(q_feats: torch.Tensor, g_feats: torch.Tensor, k: int = 5, alpha: float = 3.0,
                            expand_gallery: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(expanded queries, gallery) as L2-normalized tensors; see the module docstring."""
    k = check_positive_int(k, "k")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    q, g = F.normalize(q_feats, dim=1), F.normalize(g_feats, dim=1)
    if k > len(g) - int(expand_gallery):
        raise ValueError(f"k={k} neighbours requested but the gallery has only {len(g)} images")
    expanded_g = _expand(g, g, int(k), float(alpha), exclude_self=True) if expand_gallery else g
    return _expand(q, g, int(k), float(alpha), exclude_self=False), expanded_g

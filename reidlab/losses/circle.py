"""Pairwise Circle loss (Sun et al., CVPR 2020) as in fast-reid's pairwise_circleloss (docs/design.md, "Losses")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_embeddings_and_labels, cosine_similarity_matrix

__all__ = ["CircleLoss"]


class CircleLoss(nn.Module):
    """loss_i = softplus(LSE_p(-gamma a_p (s_p - (1 - m))) + LSE_n(gamma a_n (s_n - m))), mean over anchors.

    Positives exclude the anchor itself; a_p = relu(1 + m - s_p) and a_n = relu(s_n + m) are detached.
    An anchor without any positive (single-image identity) contributes 0 and still counts in the mean,
    as in fast-reid (whose -1e8 fill drives the softplus to 0).
    """

    def __init__(self, margin: float = 0.25, gamma: float = 128.0):
        super().__init__()
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.margin = float(margin)
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        check_embeddings_and_labels(embeddings, labels)
        similarity, _ = cosine_similarity_matrix(embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        is_self = torch.eye(same.shape[0], dtype=torch.bool, device=same.device)
        is_pos, is_neg = same & ~is_self, ~same
        alpha_p = F.relu(1 + self.margin - similarity.detach())
        alpha_n = F.relu(similarity.detach() + self.margin)
        logit_p = (-self.gamma * alpha_p * (similarity - (1 - self.margin))).masked_fill(~is_pos, -torch.inf)
        logit_n = (self.gamma * alpha_n * (similarity - self.margin)).masked_fill(~is_neg, -torch.inf)
        has_pos = is_pos.any(dim=1)
        # Rows without a positive get a dummy finite row so that no -inf - (-inf) reaches the backward.
        lse_p = torch.logsumexp(logit_p.masked_fill(~has_pos.unsqueeze(1), 0.0), dim=1)
        lse_n = torch.logsumexp(logit_n, dim=1)
        per_anchor = torch.where(has_pos, F.softplus(lse_p + lse_n), 0.0)
        return per_anchor.mean()

"""Batch-hard triplet loss (Hermans et al. 2017) in the fast-reid convention (docs/design.md, "Losses")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_embeddings_and_labels, check_finite_rows, compute_dtype, cosine_similarity_matrix, gram_matrix

__all__ = ["TripletLoss", "pairwise_distance"]


def pairwise_distance(embeddings: Tensor, normalize: bool = False) -> Tensor:
    """[B, B] distances in float32 (float64 stays float64).

    normalize=False: Euclidean on raw features, sqrt(max(||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, 1e-12)).
    normalize=True: fast-reid's cosine distance 2 - 2 cos(x_i, x_j) (the squared Euclidean distance of
    the L2-normalized features).
    """
    if normalize:
        similarity, _ = cosine_similarity_matrix(embeddings)
        return 2 - 2 * similarity
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        gram = gram_matrix(embeddings.to(compute_dtype(embeddings)))
        squared_norms = gram.diagonal()
        check_finite_rows(squared_norms)
        squared = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2 * gram
        return squared.clamp_min(1e-12).sqrt()


def _masked_softmax(values: Tensor, mask: Tensor) -> Tensor:
    """Softmax of values over the True entries of each row of mask (rows with no True entry give zeros)."""
    logits = values.masked_fill(~mask, -torch.inf)
    has_entry = mask.any(dim=1, keepdim=True)
    return torch.where(has_entry, torch.softmax(logits.masked_fill(~has_entry, 0.0), dim=1), 0.0)


class TripletLoss(nn.Module):
    """Triplet loss over every anchor of the batch.

    Args:
        margin: m > 0 gives mean relu(d_ap - d_an + m); m = 0 gives the soft margin mean softplus(d_ap - d_an).
        hard_mining: True = batch-hard (per anchor the farthest positive, self included as in fast-reid, and
            the closest negative). False = fast-reid's weighted example mining: d_ap and d_an are
            softmax-weighted means over the anchor's positives (weights softmax(d)) and negatives
            (weights softmax(-d)); fast-reid adds 1e-6 to the softmax denominator, this uses the exact softmax.
        normalize: use the cosine distance 2 - 2 cos on L2-normalized features instead of raw Euclidean.
    """

    def __init__(self, margin: float = 0.3, hard_mining: bool = True, normalize: bool = False):
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0 (0 = soft margin), got {margin}")
        self.margin = float(margin)
        self.hard_mining = hard_mining
        self.normalize = normalize

    def extra_repr(self) -> str:
        return f"margin={self.margin}, hard_mining={self.hard_mining}, normalize={self.normalize}"

    def mine(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(d_ap [B], d_an [B]): each anchor's positive and negative distance under the mining rule."""
        check_embeddings_and_labels(embeddings, labels)
        distance = pairwise_distance(embeddings, normalize=self.normalize)
        is_pos = labels.unsqueeze(0) == labels.unsqueeze(1)
        if self.hard_mining:
            d_ap = distance.masked_fill(~is_pos, -torch.inf).amax(dim=1)
            d_an = distance.masked_fill(is_pos, torch.inf).amin(dim=1)
            return d_ap, d_an
        d_ap = (distance * _masked_softmax(distance, is_pos)).sum(dim=1)
        d_an = (distance * _masked_softmax(-distance, ~is_pos)).sum(dim=1)
        return d_ap, d_an

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d_ap, d_an = self.mine(embeddings, labels)
        if self.margin > 0:
            return F.relu(d_ap - d_an + self.margin).mean()
        return F.softplus(d_ap - d_an).mean()

"""Sparse Pairwise losses SP-H, SP-LH and AdaSP (Zhou et al., CVPR 2023), computed from label masks.

Math (docs/design.md, "Losses"), with z_i = x_i / ||x_i||, s_ij = z_i . z_j, temperature T, C_a the rows of
identity a:

    n_ab    = log sum_{i in C_a, j in C_b} exp(s_ij / T)                   (soft hardest negative pair)
    p^H_a   = -log sum_{i, j in C_a} exp(-s_ij / T)                         (soft hardest positive pair)
    p^LH_a  = log sum_{i in C_a} (sum_{j in C_a} exp(-s_ij / T))^-1         (soft least-hard positive)
    h_a = T p^H_a, l_a = T p^LH_a (detached), w_a = 2 h_a l_a / (h_a + l_a) if h_a >= 0 else 0
    p_a = w_a p^H_a + (1 - w_a) p^LH_a                                       (AdaSP)
    L   = 1/P sum_a log(1 + sum_{b != a} exp(n_ab - p_a))

The published implementation builds its identity masks from block positions (contiguous, equally many
rows per identity) and takes raw exponentials; this one builds them from the labels (any order, any counts,
single-image identities have only their self pair) and evaluates every log-sum-exp shifted by its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LabelLayout, check_embeddings_and_labels, cosine_similarity_matrix, label_layout, segment_logsumexp

__all__ = ["SPARSE_PAIRWISE_MODES", "PairSelection", "SparsePairwiseLoss", "sparse_pairwise_terms"]

SPARSE_PAIRWISE_MODES = ("adasp", "sp-h", "sp-lh")


@dataclass(frozen=True)
class PairSelection:
    """What a sparse pairwise loss looks at, one entry per identity present in the batch (sorted by label).

    Indices refer to rows of the batch given to ``select``. Similarities are cosine similarities.
    """

    labels: Tensor  # [P] identity labels
    positive_pair: Tensor  # [P, 2] hardest positive pair (i, j) = argmin s_ij in the class (i == j only for single-image classes)
    positive_similarity: Tensor  # [P] s of that pair
    anchor: Tensor  # [P] least-hard anchor: the anchor whose hardest positive is most similar
    anchor_positive: Tensor  # [P] that anchor's hardest positive
    anchor_similarity: Tensor  # [P] s of (anchor, anchor_positive)
    h: Tensor  # [P] T * p^H (soft hardest positive similarity)
    l: Tensor  # [P] T * p^LH (soft least-hard positive similarity), l >= h
    w: Tensor  # [P] AdaSP weight of the SP-H term
    negative_label: Tensor  # [P] identity b != a with the largest n_ab
    negative_pair: Tensor  # [P, 2] most similar cross pair (i in a, j in b)
    negative_similarity: Tensor  # [P] s of that pair

    def to_records(self) -> list[dict]:
        """One plain dict per identity (handy for pandas.DataFrame in the notebooks)."""
        columns = {f.name: getattr(self, f.name).tolist() for f in fields(self)}
        return [dict(zip(columns, row)) for row in zip(*columns.values())]


def adaptive_weight(h: Tensor, l: Tensor) -> Tensor:
    """w = 2hl / (h + l) where h >= 0, else 0 (h = l = 0 gives the limit 0 instead of 0/0)."""
    denominator = h + l
    safe = (h >= 0) & (denominator > 0)
    return torch.where(safe, 2 * h * l / torch.where(safe, denominator, torch.ones_like(denominator)), torch.zeros_like(h))


def sparse_pairwise_terms(embeddings: Tensor, labels: Tensor | LabelLayout, temperature: float) -> dict[str, Tensor]:
    """All per-identity quantities of the SP losses, from label masks, in float32 (float64 stays float64).

    Returns dict with ``labels`` [P] (sorted unique), ``inverse`` [B], ``similarity`` [B, B], ``negative``
    [P, P] (n_ab, diagonal meaningless), ``positive_h`` [P] (p^H), ``positive_lh`` [P] (p^LH).
    Cost: one B x B x D matmul plus O(B^2) elementwise work; no loop over identities. Everything after the
    (autocast-free) similarity matrix is elementwise or scatter work, which autocast leaves in float32.
    """
    similarity, _ = cosine_similarity_matrix(embeddings)
    layout = labels if isinstance(labels, LabelLayout) else label_layout(labels)
    unique_labels, inverse, num_ids = layout.labels, layout.inverse, layout.num_ids
    same = inverse.unsqueeze(0) == inverse.unsqueeze(1)
    # -s/T inside the own class, +s/T across classes: one multiply (and one in the backward).
    sign_over_t = (1 - 2 * same.to(similarity.dtype)) / temperature
    scaled = similarity * sign_over_t
    # row_lse[i, b] = log sum_{j in C_b} exp(+-s_ij / T), minus sign inside the own class of i.
    # |s| <= 1 (up to rounding), so a row of scaled spans at most 2 / T: lets large T use one shift per row.
    row_lse = segment_logsumexp(scaled, inverse, num_ids, max_spread=2.0 / temperature + 1e-3)
    own = row_lse.gather(1, inverse.unsqueeze(1))  # [B, 1]: log sum_{j in C(i)} exp(-s_ij / T)
    stacked = torch.cat([row_lse, -own, own], dim=1)  # [B, P + 2]
    per_identity = segment_logsumexp(stacked.T.contiguous(), inverse, num_ids).T  # [P, P + 2]
    return {
        "labels": unique_labels,
        "inverse": inverse,
        "similarity": similarity,
        "negative": per_identity[:, :num_ids],
        "positive_lh": per_identity[:, num_ids],
        "positive_h": -per_identity[:, num_ids + 1],
    }


class SparsePairwiseLoss(nn.Module):
    """SP-H, SP-LH or AdaSP loss on embeddings[B, D] with integer labels[B].

    Args:
        mode: "adasp" (adaptive mix), "sp-h" (hardest positive pair) or "sp-lh" (least-hard positive).
        temperature: T; 0.04 for person, 0.05 for vehicle datasets in the paper.

    Under DDP, ``DistributedLossWrapper(SparsePairwiseLoss(...))`` computes it on the global batch.
    """

    def __init__(self, mode: str = "adasp", temperature: float = 0.04):
        super().__init__()
        if mode not in SPARSE_PAIRWISE_MODES:
            raise ValueError(f"unknown sparse pairwise mode {mode!r}; choose one of {SPARSE_PAIRWISE_MODES}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.mode = mode
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, temperature={self.temperature}"

    def positives(self, terms: dict[str, Tensor]) -> Tensor:
        """p_a for this mode from ``sparse_pairwise_terms`` output."""
        if self.mode == "sp-h":
            return terms["positive_h"]
        if self.mode == "sp-lh":
            return terms["positive_lh"]
        weight = adaptive_weight(
            self.temperature * terms["positive_h"].detach(), self.temperature * terms["positive_lh"].detach()
        )
        return weight * terms["positive_h"] + (1 - weight) * terms["positive_lh"]

    def per_identity(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """log(1 + sum_{b != a} exp(n_ab - p_a)) for every identity a (sorted by label), [P]."""
        layout = check_embeddings_and_labels(embeddings, labels)
        terms = sparse_pairwise_terms(embeddings, layout, self.temperature)
        positive = self.positives(terms)
        # Cross-entropy form: logits n_ab with the diagonal replaced by p_a, target a.
        num_ids = positive.shape[0]
        diagonal = torch.eye(num_ids, dtype=torch.bool, device=positive.device)
        logits = torch.where(diagonal, positive.unsqueeze(1), terms["negative"])
        target = torch.arange(num_ids, device=positive.device)
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.per_identity(embeddings, labels).mean()

    @torch.no_grad()
    def select(self, embeddings: Tensor, labels: Tensor) -> PairSelection:
        """The pairs the loss focuses on, per identity (no gradients; local batch only)."""
        terms = sparse_pairwise_terms(embeddings, check_embeddings_and_labels(embeddings, labels), self.temperature)
        similarity, inverse = terms["similarity"], terms["inverse"]
        num_rows, num_ids = similarity.shape[0], terms["labels"].numel()
        rows = torch.arange(num_rows, device=similarity.device)
        members = F.one_hot(inverse, num_ids).T.bool()  # [P, B]
        same = inverse.unsqueeze(0) == inverse.unsqueeze(1)
        class_size = members.sum(1)
        # Positive candidates: same class, self only for single-image classes.
        is_self = rows.unsqueeze(0) == rows.unsqueeze(1)
        candidate = same & (~is_self | (class_size[inverse] == 1).unsqueeze(1))
        pos_sim = similarity.masked_fill(~candidate, torch.inf)
        row_min, row_argmin = pos_sim.min(dim=1)  # each anchor's hardest positive
        inf = torch.tensor(torch.inf, dtype=similarity.dtype, device=similarity.device)
        hardest_anchor = torch.where(members, row_min.unsqueeze(0), inf).argmin(dim=1)
        least_hard_anchor = torch.where(members, row_min.unsqueeze(0), -inf).argmax(dim=1)

        negative = terms["negative"].masked_fill(torch.eye(num_ids, dtype=torch.bool, device=similarity.device), -torch.inf)
        negative_id = negative.argmax(dim=1)  # [P]
        in_negative_id = inverse.unsqueeze(0) == negative_id[inverse].unsqueeze(1)  # [B, B]: j in the negative id of i
        neg_row_max, neg_row_argmax = similarity.masked_fill(~in_negative_id, -torch.inf).max(dim=1)
        negative_anchor = torch.where(members, neg_row_max.unsqueeze(0), -inf).argmax(dim=1)

        h = self.temperature * terms["positive_h"]
        l = self.temperature * terms["positive_lh"]
        return PairSelection(
            labels=terms["labels"],
            positive_pair=torch.stack([hardest_anchor, row_argmin[hardest_anchor]], dim=1),
            positive_similarity=row_min[hardest_anchor],
            anchor=least_hard_anchor,
            anchor_positive=row_argmin[least_hard_anchor],
            anchor_similarity=row_min[least_hard_anchor],
            h=h,
            l=l,
            w=adaptive_weight(h, l),
            negative_label=terms["labels"][negative_id],
            negative_pair=torch.stack([negative_anchor, neg_row_argmax[negative_anchor]], dim=1),
            negative_similarity=neg_row_max[negative_anchor],
        )

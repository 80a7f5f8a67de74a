"""All-gather of embeddings and labels so a pairwise loss sees the global batch under DDP: one wrapper for every
pairwise loss (as pytorch-metric-learning's ``DistributedLossWrapper``) instead of a flag in each."""

from __future__ import annotations

from torch import Tensor, nn

from reidlab.utils.distributed import gather_with_grad

__all__ = ["DistributedLossWrapper", "gather_with_grad"]


class DistributedLossWrapper(nn.Module):
    """``loss(embeddings, labels)`` on the global batch: every rank's rows are gathered first (``gather_with_grad``).

    Outside DDP (or with one rank) it is the wrapped loss itself. ``process_group``: the ranks to gather over
    (None: the default group).
    """

    def __init__(self, loss: nn.Module, process_group=None) -> None:
        super().__init__()
        self.loss = loss
        self.process_group = process_group

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.loss(*gather_with_grad(embeddings, labels, self.process_group))

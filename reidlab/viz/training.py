"""Figures of one training run's evaluation (notebooks/train.ipynb)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

from .plots import cmc_curve


def cmc_figure(cmcs: Mapping[str, Sequence[float]], max_rank: int = 20) -> plt.Figure:
    """The CMC curves of :func:`cmc_curve` as a figure of their own, to ``max_rank`` or to the longest curve, whichever
    is shorter (a small gallery ranks fewer than 20 images)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cmc_curve(cmcs, max_rank=min(max_rank, max(len(cmc) for cmc in cmcs.values())), ax=ax)
    return fig

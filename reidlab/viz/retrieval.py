"""Figures of approximate search against exact search (notebooks/retrieval.ipynb)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def trade_off_figure(points: pd.DataFrame, exact: Mapping[str, float], k: int, title: str) -> plt.Figure:
    """Rank-1 and mAP@``k`` against queries per second (log), one line per index kind along its search knob
    (``points``: columns kind, queries_per_s, rank1, mAP_at_k), with exact search as a star: a point right of the
    star at its height is a free speed-up."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, name in ((axes[0], "rank1", "rank-1"), (axes[1], "mAP_at_k", f"mAP@{k}")):
        sns.lineplot(data=points, x="queries_per_s", y=metric, hue="kind", marker="o", sort=False, ax=ax)
        ax.scatter([exact["queries_per_s"]], [exact[metric]], marker="*", s=220, color="black", zorder=5,
                   label="exact (flat)")
        ax.set(xscale="log", xlabel="queries per second (log)", ylabel=name)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig

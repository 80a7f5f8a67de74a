"""The figure of a distance threshold (``reidlab calibrate``): genuine and impostor pair distances."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .images import CORRECT, WRONG


def distance_histograms(genuine: np.ndarray, impostor: np.ndarray, thresholds: Mapping[str, float],
                        title: str = "") -> plt.Figure:
    """The distances of genuine and impostor pairs, each as a density (impostors outnumber genuine pairs by far),
    with a dashed line at each threshold (``label -> distance``): a match is accepted left of it."""
    bins = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=60)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for distances, name, colour in ((genuine, "genuine", CORRECT), (impostor, "impostor", WRONG)):
        sns.histplot(distances, bins=bins, stat="density", element="step", color=colour, alpha=0.3, label=name, ax=ax)
    for (label, distance), colour in zip(thresholds.items(), sns.color_palette("Greys_r", len(thresholds) + 1)):
        ax.axvline(distance, linestyle="--", color=colour, linewidth=1.2, label=f"{label}: d < {distance:.3f}")
    ax.legend(fontsize=8)
    ax.set(xlabel="distance (1 - cos)", ylabel="density",
           title=f"{title + ': ' if title else ''}{len(genuine):,} genuine, {len(impostor):,} impostor pairs")
    fig.tight_layout()
    return fig

"""Embedding views: class-weight similarity heatmaps, UMAP maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def cosine_similarity(weights: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``weights`` (C x L) -> C x C, the HBReID class similarity s_ij."""
    w = np.asarray(weights, np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return w @ w.T


def _palette(values: Sequence[Any]) -> dict[Any, Any]:
    import seaborn as sns

    unique = sorted(set(values), key=str)
    colours = sns.color_palette("tab20" if len(unique) > 10 else "tab10", len(unique))
    return dict(zip(unique, colours))


def similarity_clustermap(weights: np.ndarray, groups: Sequence[Any] | None = None, group_name: str = "family", max_classes: int = 120) -> Any:
    """seaborn clustermap of the class-weight cosine similarity, rows/columns hierarchically clustered and
    colour-coded by ``groups`` (e.g. SynthReID family) when given: blocks of one colour on the diagonal mean
    the classifier learnt the families."""
    import seaborn as sns

    sim = cosine_similarity(weights)
    if len(sim) > max_classes:
        sim = sim[:max_classes, :max_classes]
        groups = None if groups is None else list(groups)[:max_classes]
    colours = None
    if groups is not None:
        palette = _palette(groups)
        colours = [palette[g] for g in groups]
    grid = sns.clustermap(sim, cmap="vlag", vmin=-1, vmax=1, row_colors=colours, col_colors=colours,
                          xticklabels=False, yticklabels=False, figsize=(7, 7), dendrogram_ratio=0.12,
                          cbar_kws={"label": "cos(w_i, w_j)"})
    grid.ax_heatmap.set_xlabel(f"classes (colour bar: {group_name})" if groups is not None else "classes")
    return grid


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, metric: str = "cosine", init: np.ndarray | str = "spectral") -> np.ndarray:
    """2-D UMAP of the rows of ``features`` (deterministic for a seed; ``init`` lets successive epochs start
    from the previous map so the panels stay comparable)."""
    import umap

    n = len(features)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, max(2, n - 1)), metric=metric,
                        random_state=seed, init=init, n_jobs=1)
    return reducer.fit_transform(np.asarray(features, np.float32))


def scatter_groups(ax: plt.Axes, xy: np.ndarray, groups: Sequence[Any], title: str = "", legend_title: str = "", size: float = 18, legend: bool = True) -> None:
    """Scatter a 2-D map coloured by a categorical label."""
    palette = _palette(groups)
    groups = np.asarray(list(groups), dtype=object)
    for g, colour in palette.items():
        mask = groups == g
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colour, label=str(g), alpha=0.85, edgecolors="none")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    if legend and len(palette) <= 20:
        ax.legend(title=legend_title, fontsize=7, title_fontsize=8, markerscale=1.2, loc="best", ncol=2 if len(palette) > 8 else 1)

"""Figures of how classes arrange themselves (notebooks/class_similarity.ipynb): the class-similarity heatmap, the
class weights over training, the batches a sampler builds drawn on the class map, test features by scene."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .embedding import scatter_groups, similarity_clustermap


def class_similarity_figure(weights: np.ndarray, families: Sequence[Any] | None, max_classes: int,
                            epoch: int) -> plt.Figure:
    """The clustered heatmap of the first ``max_classes`` classes' weight similarity (also capped by
    :func:`similarity_clustermap`), with the family colour strip: family blocks on the diagonal mean the classifier
    places near-duplicate identities next to each other."""
    limit = min(max_classes, len(weights))
    grid = similarity_clustermap(weights[:limit], None if families is None else list(families)[:limit])
    grid.fig.suptitle(f"classifier-weight cosine similarity, epoch {epoch}", y=1.02)
    return grid.fig


def class_umap_figure(maps: Mapping[int, np.ndarray], families: Sequence[Any] | None) -> plt.Figure:
    """One panel per epoch: the 2-D map of the class weights, coloured by family when there are families."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 4.2), squeeze=False)
    for ax, (epoch, xy) in zip(axes[0], maps.items()):
        groups = families if families is not None else [0] * len(xy)
        scatter_groups(ax, xy, groups, title=f"epoch {epoch}", legend=False, size=26)
    fig.suptitle("UMAP of classifier weights" + (" (colour: identity family)" if families is not None else ""))
    fig.tight_layout()
    return fig


def batches_figure(xy: np.ndarray, panels: Mapping[str, tuple[Sequence[Sequence[int]], float]], p: int,
                   shown: int) -> plt.Figure:
    """One panel per sampler (title -> (classes of each batch, mean in-batch similarity)): the class map in grey,
    and the classes of its first ``shown`` batches in one colour per batch, joined to their centre, so that a
    batch of similar classes shows as a tight star."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    colours = plt.cm.tab10(np.arange(shown) % 10)
    for ax, (name, (batches, similarity)) in zip(axes[0], panels.items()):
        ax.scatter(xy[:, 0], xy[:, 1], s=14, color="#c8c8c8")
        for colour, classes in zip(colours, batches[:shown]):
            points = xy[list(classes)]
            centre = points.mean(0)
            for x, y in points:
                ax.plot([centre[0], x], [centre[1], y], color=colour, lw=1, alpha=0.7)
            ax.scatter(points[:, 0], points[:, 1], s=40, color=colour, edgecolors="black", linewidths=0.4)
        ax.set_title(f"{name}: mean in-batch cos {similarity:.2f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"first {shown} batches of an epoch, P = {p} classes each")
    fig.tight_layout()
    return fig


def scene_invariance_figure(feature_maps: Mapping[str, np.ndarray], scenes: Sequence[int],
                            probe: Mapping[str, float], chance: float) -> plt.Figure:
    """One panel per run: the 2-D map of its test features coloured by scene, titled with the held-out scene probe
    against chance (mixed colours: the scene is hidden)."""
    fig, axes = plt.subplots(1, len(feature_maps), figsize=(4.8 * len(feature_maps), 4.6), squeeze=False)
    for ax, (name, xy) in zip(axes[0], feature_maps.items()):
        scatter_groups(ax, xy, [f"scene {s}" for s in scenes], size=10, legend=ax is axes[0][0],
                       title=f"{name}: probe {probe[name]:.0%} (chance {chance:.0%})")
    fig.suptitle("UMAP of test features, coloured by scene")
    fig.tight_layout()
    return fig

"""Figures of the pairs the sparse pairwise losses select (notebooks/positive_pairs.ipynb) and of the activation
maps of image pairs (that page and the explorer's views)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import FigureBase

from .images import _framed, pair_strip

ROW_HEIGHT = 1.55  # inches per identity row
CAPTION_WIDTH = 2.4  # the caption column, in image widths


class PairRow(NamedTuple):
    """One identity of a pair figure: its batch images, the frame (colour, label) of each image a loss picked, by
    position in ``paths``, and the caption written beside the row."""

    paths: Sequence[str]
    highlights: Mapping[int, tuple[str, str]]
    caption: str


class MapPanel(NamedTuple):
    """One image of an activation-map figure: the image with its map drawn over it, its frame colour and label."""

    image: np.ndarray
    colour: str
    label: str


def _rows_axes(num_rows: int, cols: int, title: str, container: FigureBase | None) -> tuple[FigureBase, np.ndarray]:
    """``container`` (or a new figure sized to the rows) titled, with ``num_rows`` rows of ``cols`` image axes and
    a caption axes, whose text :func:`_caption` writes."""
    height = num_rows * ROW_HEIGHT + 0.5
    if container is None:
        container = plt.figure(figsize=(cols * 1.0 + 2.6, height))
    axes = container.subplots(num_rows, cols + 1, squeeze=False, gridspec_kw={
        "hspace": 0.35, "wspace": 0.08, "top": 1 - 0.55 / height, "bottom": 0.02, "left": 0.01, "right": 0.99,
        "width_ratios": [1] * cols + [CAPTION_WIDTH]})
    container.suptitle(title)
    return container, axes


def _caption(ax: plt.Axes, text: str) -> None:
    ax.axis("off")
    ax.text(0.05, 0.5, text, transform=ax.transAxes, fontsize=9, va="center")


def pair_rows_figure(rows: Sequence[PairRow], title: str, size: tuple[int, int],
                     container: FigureBase | None = None) -> FigureBase:
    """One row per identity, its images framed as ``highlights`` says and its caption on the right; drawn into
    ``container`` (a subfigure, to set two groups side by side) or a new figure sized to the rows."""
    cols = max(len(row.paths) for row in rows)
    container, axes = _rows_axes(len(rows), cols, title, container)
    for ax_row, row in zip(axes, rows):
        pair_strip(ax_row[:cols], row.paths, dict(row.highlights), size=size)
        _caption(ax_row[cols], row.caption)
    return container


def activation_rows_figure(rows: Sequence[Sequence[MapPanel]], captions: Sequence[str], title: str) -> plt.Figure:
    """One row of panels per entry of ``rows`` (each an image with its activation map over it, framed and
    labelled), its caption on the right: the pairs of a row side by side, each image mapped for its pair."""
    cols = max(len(row) for row in rows)
    fig, axes = _rows_axes(len(rows), cols, title, None)
    for ax_row, row, caption in zip(axes, rows, captions):
        for i, ax in enumerate(ax_row[:cols]):
            if i < len(row):
                _framed(ax, row[i].image, row[i].colour, row[i].label, width=3.5)
            else:
                ax.axis("off")
        _caption(ax_row[cols], caption)
    return fig


def pair_rows_side_by_side(left: Sequence[PairRow], right: Sequence[PairRow], titles: tuple[str, str], title: str,
                           images_per_row: int, size: tuple[int, int]) -> plt.Figure:
    """Two groups of identity rows (:func:`pair_rows_figure`) next to each other, e.g. the most varied identities
    beside the least varied, so their captions can be compared row by row; ``images_per_row`` sizes the figure."""
    fig = plt.figure(figsize=(2 * (images_per_row * 1.0 + 2.6) + 0.3, max(len(left), len(right)) * ROW_HEIGHT + 1.0))
    left_panel, right_panel = fig.subfigures(1, 2, wspace=0.04)
    pair_rows_figure(left, titles[0], size, left_panel)
    pair_rows_figure(right, titles[1], size, right_panel)
    fig.suptitle(title, y=1.02)
    return fig


def weight_figure(w_by_epoch: Mapping[int, Sequence[float]], variation: Sequence[float] | None = None,
                  w: Sequence[float] | None = None, h: Sequence[float] | None = None, title: str = "") -> plt.Figure:
    """Left: a histogram of the AdaSP weight w per epoch (its mean in the legend). Right, when ``variation`` is
    given: w against the identity's variation level, coloured by h, titled ``title``."""
    fig, axes = plt.subplots(1, 1 if variation is None else 2, figsize=(5.5 if variation is None else 11, 3.8),
                             squeeze=False)
    bins = np.linspace(0, 1, 21)
    for epoch, weights in w_by_epoch.items():
        axes[0, 0].hist(weights, bins=bins, histtype="step", lw=2, label=f"epoch {epoch} (mean {np.mean(weights):.2f})")
    axes[0, 0].set(xlabel="AdaSP weight w (0 = SP-LH, 1 = SP-H)", ylabel="identities", title="w across identities")
    axes[0, 0].legend(fontsize=8)
    if variation is not None:
        ax = axes[0, 1]
        points = ax.scatter(variation, w, c=h, cmap="viridis", s=22)
        fig.colorbar(points, ax=ax, label="h (hardest-pair similarity)")
        ax.set(xlabel="SynthReID variation level of the identity", ylabel="w", title=title)
    fig.tight_layout()
    return fig

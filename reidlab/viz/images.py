"""Image grids: ranked retrieval results and the positive pairs a sparse pairwise loss selects."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

CORRECT, WRONG, QUERY = "#1a9e3a", "#d62728", "#1f77b4"


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 array of an image file, optionally resized to ``size`` = (height, width)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img)


def _framed(ax: plt.Axes, image: np.ndarray, colour: str | None, title: str = "", width: float = 4.0) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if colour:
        h, w = image.shape[:2]
        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor=colour, linewidth=width))
    if title:
        ax.set_title(title, fontsize=7, pad=2)


def ranked_results(
    query_paths: Sequence[str],
    ranked_gallery_paths: Sequence[Sequence[str]],
    correct: Sequence[Sequence[bool | str]],
    captions: Sequence[Sequence[str]] | None = None,
    query_captions: Sequence[str] | None = None,
    size: tuple[int, int] = (128, 64),
) -> plt.Figure:
    """One row per query: the query (blue frame), then its top-ranked gallery images with green frames for
    correct matches and red for wrong ones (an entry of ``correct`` may also be a frame colour)."""
    rows, cols = len(query_paths), 1 + max(len(r) for r in ranked_gallery_paths)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.95, rows * 1.75), squeeze=False)
    for q, qpath in enumerate(query_paths):
        _framed(axes[q, 0], read_image(qpath, size), QUERY, query_captions[q] if query_captions else "query")
        for r in range(cols - 1):
            ax = axes[q, r + 1]
            if r >= len(ranked_gallery_paths[q]):
                ax.axis("off")
                continue
            caption = captions[q][r] if captions else f"#{r + 1}"
            frame = correct[q][r] if isinstance(correct[q][r], str) else CORRECT if correct[q][r] else WRONG
            _framed(ax, read_image(ranked_gallery_paths[q][r], size), frame, caption)
    height = rows * 1.75
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / height, wspace=0.08, hspace=0.3)
    return fig


def pair_strip(
    ax_row: Sequence[plt.Axes],
    paths: Sequence[str],
    highlights: dict[int, tuple[str, str]],
    size: tuple[int, int] = (128, 64),
) -> None:
    """Draw one identity's batch images in a row of axes; ``highlights`` maps image position -> (colour,
    label) for the images a loss picked (e.g. the SP-H hardest pair in red, the SP-LH pair in green)."""
    for i, ax in enumerate(ax_row):
        if i >= len(paths):
            ax.axis("off")
            continue
        colour, label = highlights.get(i, (None, ""))
        _framed(ax, read_image(paths[i], size), colour, label, width=3.5)

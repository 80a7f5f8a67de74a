"""What the explorer views share: framed image tiles in HTML, and the static figure each view shows where no
widget can render (a notebook rendered to HTML, a notebook opened without its kernel)."""

from __future__ import annotations

import base64
import html
import io
from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

from reidlab.utils import atomic_write
from reidlab.viz.images import CORRECT, QUERY, WRONG, read_image

#: frame colour of each kind of tile; a tile without a mark has no frame
COLOURS = {"query": QUERY, "true": CORRECT, "wrong": WRONG, "junk": "#8c8c8c", "same-camera": "#ff9f1c",
           "sp-h": WRONG, "sp-lh": CORRECT, "negative": "#9467bd", "neighbour": "#ff9f1c"}

STYLE = """<style>
.reidlab-row {display: flex; align-items: flex-start; gap: 4px; margin: 4px 0; flex-wrap: wrap}
.reidlab-row-title {width: 110px; font: 12px sans-serif; padding-top: 4px}
.reidlab-tile {margin: 0; text-align: center; font: 10px sans-serif; line-height: 1.25}
.reidlab-tile img {display: block; box-sizing: border-box; border: 4px solid transparent}
.reidlab-legend span {display: inline-block; margin-right: 12px; font: 12px sans-serif}
</style>"""


@lru_cache(maxsize=4096)
def thumbnail_uri(path: str, size: tuple[int, int]) -> str:
    """A PNG data URI of an image resized to ``size`` = (height, width); each file is encoded once per size."""
    buffer = io.BytesIO()
    Image.fromarray(read_image(path, size)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def tile(path: str, size: tuple[int, int], caption: str = "", mark: str | None = None, **data: object) -> str:
    """One framed image with a caption; ``data`` become ``data-*`` attributes (what a test or a page can read)."""
    attributes = "".join(f' data-{key.replace("_", "-")}="{html.escape(str(value))}"' for key, value in data.items())
    colour = COLOURS[mark] if mark else "transparent"
    return (f'<figure class="reidlab-tile"{attributes} data-mark="{mark or ""}" style="width: {size[1] + 8}px">'
            f'<img src="{thumbnail_uri(path, tuple(size))}" width="{size[1]}" height="{size[0]}" '
            f'style="border-color: {colour}" title="{html.escape(path)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def row(title: str, tiles: list[str]) -> str:
    return f'<div class="reidlab-row"><div class="reidlab-row-title">{title}</div>{"".join(tiles)}</div>'


def legend(marks: list[str]) -> str:
    return '<div class="reidlab-legend">' + "".join(
        f'<span><b style="color: {COLOURS[m]}">&#9632;</b> {m}</span>' for m in marks) + "</div>"


def figure_png(fig: plt.Figure) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


class View:
    """An explorer view: ``widget`` in JupyterLab, ``static_figure()`` where widgets cannot render.

    Displaying a view gives both representations in one output; a live frontend shows the widget, and nbconvert
    (without saved widget state) falls back to the PNG, so a rendered report still shows the view. With
    ``figure_path`` set, displaying also writes that PNG there (a report's ``figures/``), drawn once for both.
    """

    widget = None
    figure_path: Path | None = None

    def static_figure(self) -> plt.Figure:
        raise NotImplementedError

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        png = figure_png(self.static_figure())
        if self.figure_path is not None:
            atomic_write(self.figure_path, png)
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
        return bundle

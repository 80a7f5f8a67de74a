"""The class map: a UMAP of the classifier weights per saved epoch; an identity's images and hard-batch
neighbours on hover or click."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_hex
from scipy.linalg import orthogonal_procrustes

from reidlab.viz.embedding import scatter_groups, umap_2d

from .run import ExploredRun, cached_tensors, file_digest
from .tiles import STYLE, View, row, tile

NEIGHBOUR = "#ff7f0e"


class ClassMap(View):
    """Each train identity is a point: the 2-D UMAP of its classifier weight row, at the epoch the slider picks.
    Maps of other epochs are rotated onto the last one (orthogonal Procrustes), so points move only as the
    weights do. Hovering a point names the identity; clicking it (or picking it in the dropdown) shows its
    images and its hard-batch neighbours: the P - 1 classes whose weights are most cosine-similar to its own,
    which a hard-batch mining round anchored at it puts in the same batch (P: the run's sampler).
    Maps and weights are cached in ``<run_dir>/explore/``."""

    def __init__(self, run: ExploredRun, seed: int = 0, images_shown: int = 8) -> None:
        self.run, self.seed, self.images_shown = run, seed, images_shown
        self.images_of: dict[int, list[int]] = {}
        for index, record in enumerate(run.dataset.train):
            self.images_of.setdefault(record.pid, []).append(index)
        self.p = min(run.config.sampler.p, len(self.images_of))
        self.groups = self._families()
        self._maps: dict[int, dict[str, torch.Tensor]] = {}
        epochs = list(run.epoch_checkpoints)
        self.reference = self.map_at(epochs[-1])["xy"].numpy()
        palette = plt.get_cmap("tab20")
        codes = {g: i for i, g in enumerate(sorted(set(self.groups)))}
        self.scatter = bq.Scatter(
            x=self.reference[:, 0], y=self.reference[:, 1], names=[str(c) for c in range(len(self.reference))],
            display_names=False, color=[codes[g] for g in self.groups], default_size=40,
            scales={"x": bq.LinearScale(), "y": bq.LinearScale(),
                    "color": bq.OrdinalColorScale(colors=[to_hex(palette(i % 20)) for i in range(len(codes))])},
            tooltip=bq.Tooltip(fields=["name"], labels=["identity"]),
            interactions={"click": "select", "hover": "tooltip"},
            selected_style={"stroke": "black", "stroke-width": 3}, unselected_style={"opacity": 0.6})
        self.neighbour_marks = bq.Scatter(x=[], y=[], scales=self.scatter.scales, colors=[NEIGHBOUR], fill=False,
                                          stroke=NEIGHBOUR, stroke_width=3, default_size=160)
        self.figure = bq.Figure(marks=[self.scatter, self.neighbour_marks], fig_margin=dict(top=30, bottom=10, left=10, right=10),
                                layout=widgets.Layout(width="520px", height="480px"))
        self.epoch = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="epoch",
                                             continuous_update=False, layout=widgets.Layout(width="420px"))
        self.identity = widgets.Dropdown(options=[(str(c), c) for c in range(len(self.reference))], value=None,
                                         description="identity", layout=widgets.Layout(width="200px"))
        self.details = widgets.HTML("<i>click an identity on the map, or pick it in the dropdown</i>")
        self.details.add_class("reidlab-class-details")
        self.epoch.observe(self._move_points, names="value")
        self.scatter.observe(self._clicked, names="selected")
        self.identity.observe(lambda change: self.select(change["new"]), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.epoch, self.identity]),
                                    widgets.HBox([self.figure, self.details])])
        self.widget.add_class("reidlab-class-map")
        self._move_points()

    def _families(self) -> list:
        """Each class's SynthReID identity family (the map's colours); one group elsewhere."""
        classes = range(max(self.images_of) + 1)
        if self.run.config.data.name != "synthreid":
            return ["all"] * len(classes)
        from reidlab.data.synth import train_identities

        entries = train_identities(self.run.dataset)
        return [entries[c]["family"] for c in classes]

    def map_at(self, epoch: int) -> dict[str, torch.Tensor]:
        """{"weights": the classifier weights [C, D], "xy": the 2-D map [C, 2]} of one epoch's checkpoint."""
        if epoch not in self._maps:
            checkpoint = self.run.epoch_checkpoints[epoch]
            path = self.run.run_dir / "explore" / f"classmap.{checkpoint.stem}.pt"
            key = {"checkpoint": file_digest(checkpoint), "seed": self.seed}

            def compute() -> dict[str, torch.Tensor]:
                weights = self.run.model_at(checkpoint).classifier_weight().detach().float().cpu()
                return {"weights": weights, "xy": torch.from_numpy(umap_2d(weights.numpy(), seed=self.seed))}

            values = cached_tensors(path, key, compute)
            last = max(self.run.epoch_checkpoints)
            if epoch != last:  # rotate, shift and scale onto the last epoch's map
                reference, xy = self.map_at(last)["xy"].double().numpy(), values["xy"].double().numpy()
                centred, target = xy - xy.mean(0), reference - reference.mean(0)
                rotation, scale = orthogonal_procrustes(centred, target)
                aligned = centred @ rotation * (scale / max((centred ** 2).sum(), 1e-12)) + reference.mean(0)
                values = {**values, "xy": torch.from_numpy(aligned.astype(np.float32))}
            self._maps[epoch] = values
        return self._maps[epoch]

    def neighbours(self, cls: int, epoch: int | None = None) -> list[tuple[int, float]]:
        """(class, cosine similarity) of the P - 1 classes most similar to ``cls`` at ``epoch`` (default: shown)."""
        weights = torch.nn.functional.normalize(self.map_at(epoch or self.epoch.value)["weights"].double(), dim=1)
        similarity = (weights @ weights[cls]).numpy()
        similarity[cls] = -np.inf
        order = np.argsort(-similarity, kind="stable")[: self.p - 1]
        return [(int(c), float(similarity[c])) for c in order]

    def _move_points(self, _change=None) -> None:
        xy = self.map_at(self.epoch.value)["xy"].numpy()
        with self.scatter.hold_sync():
            self.scatter.x, self.scatter.y = xy[:, 0], xy[:, 1]
        self.select(self.identity.value)

    def _clicked(self, change) -> None:
        selected = change["new"]
        if selected is not None and len(selected):
            self.identity.value = int(selected[0])

    def select(self, cls: int | None) -> None:
        """Show one identity's images and hard-batch neighbours (None: clear)."""
        if cls is None:
            self.neighbour_marks.x, self.neighbour_marks.y = [], []
            return
        xy = self.map_at(self.epoch.value)["xy"].numpy()
        neighbours = self.neighbours(cls)
        ids = [c for c, _ in neighbours]
        with self.neighbour_marks.hold_sync():
            self.neighbour_marks.x, self.neighbour_marks.y = xy[ids, 0], xy[ids, 1]
        if list(self.scatter.selected or []) != [cls]:
            self.scatter.selected = [cls]
        train, size = self.run.dataset.train, self.run.image_size
        own = [tile(train[i].path, size, f"cam {train[i].camid + 1}", "query", image=i)
               for i in self.images_of[cls][: self.images_shown]]
        near = [tile(train[self.images_of[c][0]].path, size, f"id {c}<br>cos {s:.2f}", "neighbour", identity=c)
                for c, s in neighbours]
        family = "" if self.groups[cls] == "all" else f", family {self.groups[cls]}"
        self.details.value = (STYLE + f"<b>identity {cls}</b>{family}: {len(self.images_of[cls])} train images, "
                              f"epoch {self.epoch.value}" + row("images", own)
                              + row(f"hard-batch neighbours (P = {self.p})", near))

    def static_figure(self) -> plt.Figure:
        """The map at the shown epoch, coloured by family, with the selected (or first) identity's hard-batch
        neighbours joined to it."""
        xy = self.map_at(self.epoch.value)["xy"].numpy()
        cls = 0 if self.identity.value is None else self.identity.value
        fig, ax = plt.subplots(figsize=(6, 5.2))
        scatter_groups(ax, xy, self.groups, legend=False, size=22)
        for c, _ in self.neighbours(cls):
            ax.plot(*zip(xy[cls], xy[c]), color=NEIGHBOUR, lw=1.2)
        ax.scatter(*xy[cls], s=120, facecolors="none", edgecolors="black", linewidths=2)
        ax.set_title(f"{self.run.name}: classifier weights, epoch {self.epoch.value}; identity {cls} and its "
                     f"{self.p - 1} hard-batch neighbours", fontsize=9)
        return fig

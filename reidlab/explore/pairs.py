"""The pair inspector: for an identity of a training batch, the pairs the sparse pairwise losses pick."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from reidlab.data import ReIDImageDataset, build_transforms
from reidlab.data.samplers import PKSampler
from reidlab.losses import SparsePairwiseLoss
from reidlab.losses.sparse_pairwise import PairSelection
from reidlab.viz.images import pair_strip

from .run import ExploredRun
from .tiles import COLOURS, STYLE, View, row, tile


def metric_features(model: nn.Module, images: Tensor) -> Tensor:
    """What a sparse pairwise loss sees in training: the train-mode metric feature (BatchNorm on the batch's own
    statistics), without gradients. The forward pass updates BatchNorm's running statistics: use a model loaded
    for this, not one that is evaluated afterwards."""
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    with torch.no_grad():
        features = model(images.to(device))["features"][0].float().cpu()
    model.train(was_training)
    return features


def _pair_marks(record: dict) -> dict[int, tuple[str, str]]:
    """Batch row -> (mark, caption) for the images a selection picked in its identity."""
    captions: dict[int, list[str]] = {}
    for j in record["positive_pair"]:
        captions.setdefault(j, []).append("SP-H")
    captions.setdefault(record["anchor"], []).append("LH anchor")
    captions.setdefault(record["anchor_positive"], []).append("LH positive")
    return {j: ("sp-h" if "SP-H" in names else "sp-lh", " + ".join(names)) for j, names in captions.items()}


class PairInspector(View):
    """Pick a training batch (P x K, the run's sampler sizes, drawn with ``seed``), an identity in it and a
    saved checkpoint (epoch slider): see the identity's images with the SP-H hardest pair, the SP-LH
    least-hard anchor and its positive, the AdaSP weight w, and the hardest negative identity with its most
    similar image. Selections come from ``SparsePairwiseLoss.select`` on the train-mode features."""

    def __init__(self, run: ExploredRun, seed: int = 0, temperature: float | None = None) -> None:
        self.run = run
        config, train = run.config, run.dataset.train
        self.selector = SparsePairwiseLoss(mode="adasp", temperature=temperature or config.loss.temperature)
        pids = [r.pid for r in train]
        sampler = PKSampler(pids, p=min(config.sampler.p, len(set(pids))), k=config.sampler.k, seed=seed)
        self.batches = sampler.plan(0)
        self.images = ReIDImageDataset(train, build_transforms(False, size=run.image_size))
        self._selections: dict[tuple[int, int], PairSelection] = {}
        self._loaded: tuple[int, nn.Module] | None = None
        self._syncing = False
        epochs = list(run.epoch_checkpoints)
        self.epoch = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="epoch",
                                             continuous_update=False, layout=widgets.Layout(width="360px"))
        self.batch = widgets.IntSlider(min=0, max=len(self.batches) - 1, description="batch",
                                       continuous_update=False, layout=widgets.Layout(width="360px"))
        self.identity = widgets.Dropdown(description="identity", layout=widgets.Layout(width="260px"))
        self.summary = widgets.HTML()
        self.grid = widgets.HTML()
        self.grid.add_class("reidlab-pair-grid")
        self.epoch.observe(self._refresh, names="value")
        self.batch.observe(self._refresh, names="value")
        self.identity.observe(lambda _change: self._syncing or self.show(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.epoch, self.batch, self.identity]), self.summary, self.grid])
        self.widget.add_class("reidlab-pair-inspector")
        self._refresh()

    def selection(self, epoch: int, batch: int) -> PairSelection:
        """The selection of one batch under one checkpoint (computed once)."""
        key = (epoch, batch)
        if key not in self._selections:
            indices = self.batches[batch]
            images = torch.stack([self.images[i]["image"] for i in indices])
            labels = torch.tensor([self.run.dataset.train[i].pid for i in indices])
            self._selections[key] = self.selector.select(metric_features(self._model(epoch), images), labels)
        return self._selections[key]

    def _model(self, epoch: int) -> nn.Module:
        """The model of one epoch's checkpoint; the last one loaded is kept (moving the batch slider reuses it)."""
        if self._loaded is None or self._loaded[0] != epoch:
            self._loaded = (epoch, self.run.model_at(self.run.epoch_checkpoints[epoch]))
        return self._loaded[1]

    def positions(self, pid: int) -> list[int]:
        """The rows of the current batch that hold images of identity ``pid``."""
        return [j for j, i in enumerate(self.batches[self.batch.value]) if self.run.dataset.train[i].pid == pid]

    def records(self) -> dict[int, dict]:
        """Identity -> its selection record, for the current epoch and batch."""
        return {r["labels"]: r for r in self.selection(self.epoch.value, self.batch.value).to_records()}

    def _refresh(self, _change=None) -> None:
        records = self.records()
        current = self.identity.value
        self._syncing = True  # the new options reset the value: draw once, below
        try:
            self.identity.options = [(f"{pid} (w {r['w']:.2f})", pid) for pid, r in records.items()]
            self.identity.value = current if current in records else next(iter(records))
        finally:
            self._syncing = False
        self.show()

    def show(self) -> None:
        pid = self.identity.value
        record = self.records()[pid]
        indices, train, size = self.batches[self.batch.value], self.run.dataset.train, self.run.image_size
        marks = _pair_marks(record)
        own = self.positions(pid)
        tiles = [tile(train[indices[j]].path, size, caption, mark, row=j)
                 for j in own for mark, caption in [marks.get(j, (None, f"image {j}"))]]
        negative = record["negative_label"]
        anchor, match = record["negative_pair"]
        others = self.positions(negative)
        negative_tiles = [tile(train[indices[j]].path, size, f"most similar to image {anchor}" if j == match
                               else f"image {j}", "negative" if j == match else None, row=j) for j in others]
        self.summary.value = (
            f"epoch {self.epoch.value}, batch {self.batch.value}, identity {pid}: "
            f"<b>w = {record['w']:.3f}</b> (1: the SP-H pair, red; 0: the SP-LH pair, green), h = {record['h']:.3f}, l = {record['l']:.3f}; "
            f"hardest pair s = {record['positive_similarity']:.3f}, least-hard pair s = {record['anchor_similarity']:.3f}; "
            f"hardest negative identity {negative} (s = {record['negative_similarity']:.3f})")
        self.grid.value = STYLE + row(f"identity {pid}", tiles) + row(f"hardest negative: {negative}", negative_tiles)

    def static_figure(self, num_identities: int = 6) -> plt.Figure:
        """The first ``num_identities`` identities of the current batch at the current epoch, one row each."""
        records = list(self.records().values())[:num_identities]
        indices, train = self.batches[self.batch.value], self.run.dataset.train
        rows = [self.positions(r["labels"]) for r in records]
        cols = max(map(len, rows))
        height = 1.55 * len(rows) + 0.5
        fig, axes = plt.subplots(len(rows), cols + 1, figsize=(1.1 * cols + 2.6, height), squeeze=False,
                                 gridspec_kw={"width_ratios": [1] * cols + [2.4], "wspace": 0.1, "hspace": 0.35,
                                              "top": 1 - 0.55 / height, "bottom": 0.02, "left": 0.01, "right": 0.99})
        for ax_row, record, own in zip(axes, records, rows):
            highlights = {own.index(j): (COLOURS[mark], caption) for j, (mark, caption) in _pair_marks(record).items()}
            pair_strip(ax_row[:cols], [train[indices[j]].path for j in own], highlights, size=self.run.image_size)
            ax_row[cols].axis("off")
            ax_row[cols].text(0.05, 0.5, f"id {record['labels']}\nw = {record['w']:.2f}\nhardest negative: "
                              f"{record['negative_label']}", transform=ax_row[cols].transAxes, fontsize=9, va="center")
        fig.suptitle(f"{self.run.name}, epoch {self.epoch.value}, batch {self.batch.value}: SP-H pair (red),\n"
                     "SP-LH least-hard anchor and its positive (green)", fontsize=10)
        return fig

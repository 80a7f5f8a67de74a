"""The pairs the sparse pairwise losses pick: the positive_pairs page (the checkpoints it draws, a batch of
identities at several epochs, the AdaSP weight of every training identity, the activation maps of the selected
pairs and the answers it prints) and the pair inspector (any identity of any training batch, interactively)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from reidlab import engine
from reidlab.data import ReIDImageDataset, build_transforms
from reidlab.data.samplers import PKSampler
from reidlab.engine import TrainConfig
from reidlab.evaluation import split_chance_level
from reidlab.losses import SparsePairwiseLoss
from reidlab.losses.sparse_pairwise import PairSelection
from reidlab.study.records import write_page_metrics
from reidlab.viz.images import pair_strip
from reidlab.viz.plots import save_figure
from reidlab.viz.pairs import (MapPanel, PairRow, activation_rows_figure, pair_rows_figure, pair_rows_side_by_side,
                               weight_figure)

from .activation import ActivationMap, maps_html, with_maps_below
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


def first_epoch_batches(config: TrainConfig, train: list, seed: int) -> list[list[int]]:
    """The P x K batches (indices into ``train``) of the first epoch of the run's sampler sizes, drawn with ``seed``:
    every training identity once, in batches like those the loss saw."""
    pids = [r.pid for r in train]
    return PKSampler(pids, p=min(config.sampler.p, len(set(pids))), k=config.sampler.k, seed=seed).plan(0)


def _pair_marks(record: dict) -> dict[int, tuple[str, str]]:
    """Batch row -> (mark, caption) for the images a selection picked in its identity."""
    captions: dict[int, list[str]] = {}
    for j in record["positive_pair"]:
        captions.setdefault(j, []).append("SP-H")
    captions.setdefault(record["anchor"], []).append("LH anchor")
    captions.setdefault(record["anchor_positive"], []).append("LH positive")
    return {j: ("sp-h" if "SP-H" in names else "sp-lh", " + ".join(names)) for j, names in captions.items()}


#: the pairs of a selection record that can be mapped: kind -> (its name, the labels of its two images)
PAIR_KINDS = {"sp-h": ("SP-H hardest pair", ("SP-H", "SP-H")), "sp-lh": ("SP-LH pair", ("SP-LH A", "SP-LH P")),
              "negative": ("hardest negative pair", ("anchor", "negative"))}


def pair_rows(record: dict, kind: str) -> tuple[int, int]:
    """The batch rows of one pair of a selection record (:data:`PAIR_KINDS`): the SP-H hardest positive pair, the
    SP-LH anchor and its positive, or the hardest negative pair."""
    return {"sp-h": tuple(record["positive_pair"]), "sp-lh": (record["anchor"], record["anchor_positive"]),
            "negative": tuple(record["negative_pair"])}[kind]


def pair_map_panels(maps: ActivationMap, batch_records: Sequence, record: dict, kinds: Sequence[str],
                    size: tuple[int, int]) -> list[MapPanel]:
    """Both images of each pair ``kinds`` names in a selection record (``batch_records``: the dataset records of
    the batch's rows), read at ``size``, each with its activation map for its pair's similarity, framed in the
    kind's colour."""
    panels = []
    for kind in kinds:
        first, second = (batch_records[j] for j in pair_rows(record, kind))
        images = maps.overlays(first.path, second.path, size, (first.camid, second.camid))
        panels += [MapPanel(image, COLOURS[kind], label) for image, label in zip(images, PAIR_KINDS[kind][1])]
    return panels


class PairInspector(View):
    """Pick a training batch (P x K, the run's sampler sizes, drawn with ``seed``), an identity in it and a
    saved checkpoint (epoch slider): see the identity's images with the SP-H hardest pair, the SP-LH
    least-hard anchor and its positive, the AdaSP weight w, and the hardest negative identity with its most
    similar image. Selections come from ``SparsePairwiseLoss.select`` on the train-mode features. A click on one
    of the pairs (``maps_of``) shows its two images' activation maps for their similarity (:class:`ActivationMap`:
    the evaluation features of the epoch's checkpoint); the maps follow the identity, batch and epoch shown."""

    def __init__(self, run: ExploredRun, seed: int = 0, temperature: float | None = None) -> None:
        self.run = run
        config, train = run.config, run.dataset.train
        self.selector = SparsePairwiseLoss(mode="adasp", temperature=temperature or config.loss.temperature)
        self.batches = first_epoch_batches(config, train, seed)
        self.images = training_images(run)  # at the run's input size, as the loss saw them (not thumbnail size)
        self._selections: dict[tuple[int, int], PairSelection] = {}
        self._loaded: tuple[int, nn.Module] | None = None
        self._maps: tuple[int, ActivationMap] | None = None
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
        self.maps_of = widgets.ToggleButtons(options=[(name, kind) for kind, (name, _) in PAIR_KINDS.items()],
                                             value=None, description="maps of", style={"button_width": "auto"})
        self.maps_of.add_class("reidlab-pair-maps-of")
        self.maps = widgets.HTML()
        self.maps.add_class("reidlab-pair-maps")
        self.epoch.observe(self._refresh, names="value")
        self.batch.observe(self._refresh, names="value")
        self.identity.observe(lambda _change: self._syncing or self.show(), names="value")
        self.maps_of.observe(self._show_maps, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.epoch, self.batch, self.identity]), self.summary, self.grid,
                                    self.maps_of, self.maps])
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

    def activation_maps(self, epoch: int) -> ActivationMap:
        """Activation maps under one epoch's checkpoint, loaded apart from the model the selections use (their
        train-mode passes move its BatchNorm statistics); the last one loaded is kept."""
        if self._maps is None or self._maps[0] != epoch:
            self._maps = (epoch, ActivationMap(self.run.model_at(self.run.epoch_checkpoints[epoch]), self.run.config))
        return self._maps[1]

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
        self._show_maps()

    def _show_maps(self, _change=None) -> None:
        kind, pid = self.maps_of.value, self.identity.value
        self.maps.value = "" if kind is None else maps_html(self.maps_figure(self.records()[pid], [kind]), pair=kind,
                                                            identity=pid)

    def maps_figure(self, record: dict, kinds: Sequence[str]) -> plt.Figure:
        """The pairs ``kinds`` (:data:`PAIR_KINDS`) of one identity's record at the current epoch and batch, each
        image with its activation map for its pair's similarity."""
        epoch = self.epoch.value
        maps = self.activation_maps(epoch)
        batch_records = [self.run.dataset.train[i] for i in self.batches[self.batch.value]]
        panels = pair_map_panels(maps, batch_records, record, kinds, self.run.image_size)
        return activation_rows_figure([panels], [f"id {record['labels']}\nw = {record['w']:.2f}"],
                                      f"{maps.method}, epoch {epoch}: " + ", ".join(PAIR_KINDS[k][0] for k in kinds))

    def static_figure(self, num_identities: int = 6) -> plt.Figure:
        """The first ``num_identities`` identities of the current batch at the current epoch, one row each; below,
        the first identity's SP-H and SP-LH pairs with their activation maps."""
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
        return with_maps_below(fig, self.maps_figure(records[0], ("sp-h", "sp-lh")))


# The positive_pairs page: a batch of identities at several epochs, then the AdaSP weight of every training identity.


def run_score(run_dir: str | os.PathLike, run: engine.TrainedRun) -> dict[str, float]:
    """The analysed run's own test mAP (its final metrics) and its test split's chance mAP and rank-1: the pairs a
    run selects mean little when the run learned little, and the run may have been trained elsewhere."""
    chance = split_chance_level(run.dataset)
    return {"run_mAP": engine.RunDir(run_dir).metrics().get("mAP", float("nan")), "chance_mAP": chance["mAP"],
            "chance_rank1": chance["rank1"]}


def run_score_line(run_dir: str | os.PathLike, run: engine.TrainedRun, score: dict[str, float]) -> str:
    """:func:`run_score` as a sentence, with the epochs the run trained."""
    epochs = engine.RunDir(run_dir).metrics().get("epochs_completed", "?")
    return (f"the analysed run ({Path(run_dir).name}, {run.config.data.name}): test mAP {score['run_mAP']:.1%} "
            f"(chance {score['chance_mAP']:.2%}) after {epochs} epochs")


def identity_variation(run: engine.TrainedRun) -> dict[int, float]:
    """Each training identity's variation level where the dataset knows it (SynthReID: pid -> level); {} elsewhere.
    The page asks whether the identities that vary more get a smaller AdaSP weight."""
    traits = run.dataset.identity_traits() or []
    return {pid: entry["variation"] for pid, entry in enumerate(traits) if "variation" in entry}


def training_images(run: engine.TrainedRun) -> ReIDImageDataset:
    """The training split at the run's input size without augmentation: the images as the loss saw them, minus the
    random changes."""
    return ReIDImageDataset(run.dataset.train, build_transforms(False, size=tuple(run.config.data.size)))


@dataclass
class PairBatch:
    """The batch the page draws at every epoch: ``identities`` (SynthReID: the most varied ones, then the least
    varied ones; elsewhere drawn at random), up to K images of each (``indices`` into the training split, grouped by
    identity), the ``variation`` level of each identity ({} off SynthReID), and the images and labels the model
    reads."""

    run: engine.TrainedRun
    identities: list[int]
    indices: list[int]
    variation: dict[int, float]
    images: Tensor
    labels: Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) the run's images are read at."""
        return tuple(self.run.config.data.size)

    def rows(self, selection: PairSelection, identities: list[int] | None = None) -> list[PairRow]:
        """The figure rows of ``identities`` (default: all of the batch's): the SP-H hardest pair framed red, the
        SP-LH anchor (A) and its hardest positive (P) green, and beside them the identity's w, h, l and variation."""
        records = {r["labels"]: r for r in selection.to_records()}
        train = self.run.dataset.train
        rows = []
        for pid in self.identities if identities is None else identities:
            positions = [j for j, i in enumerate(self.indices) if train[i].pid == pid]
            record = records[pid]
            marks = {j: (COLOURS["sp-h"], "SP-H") for j in record["positive_pair"]}
            for tag, j in (("A", record["anchor"]), ("P", record["anchor_positive"])):
                marks[j] = (COLOURS["sp-lh"], f"SP-LH {tag}" + (" + SP-H" if j in record["positive_pair"] else ""))
            caption = f"id {pid}\nw = {record['w']:.2f}\nh = {record['h']:.2f}, l = {record['l']:.2f}"
            if self.variation:
                caption += f"\nvariation {self.variation[pid]:.2f}"
            rows.append(PairRow([train[self.indices[j]].path for j in positions],
                                {positions.index(j): mark for j, mark in marks.items() if j in positions}, caption))
        return rows

    def variation_groups(self) -> tuple[list[int], list[int]]:
        """(most varied, least varied) identities of the batch, as many in each; two empty lists off SynthReID or
        with fewer than two identities."""
        half = len(self.identities) // 2
        if not (self.variation and half):
            return [], []
        return self.identities[: len(self.identities) - half][:half], self.identities[len(self.identities) - half:]

    def compare_variation(self, selection: PairSelection, epoch: int) -> str:
        """The mean w of the most varied identities of the batch against that of the least varied."""
        large, small = self.variation_groups()
        w_of = {r["labels"]: r["w"] for r in selection.to_records()}
        w_large, w_small = np.mean([w_of[pid] for pid in large]), np.mean([w_of[pid] for pid in small])
        return (f"epoch {epoch}, this batch: mean w {w_large:.3f} for the {len(large)} most varied identities vs "
                f"{w_small:.3f} for the {len(small)} least varied ({'smaller' if w_large < w_small else 'not smaller'} "
                "for large variation; a few identities only: see the Spearman correlation above for all of them)")


def draw_batch(run: engine.TrainedRun, num_identities: int, images_per_identity: int, seed: int) -> PairBatch:
    """``num_identities`` training identities with two images or more, up to ``images_per_identity`` images of each
    drawn with ``seed``. On SynthReID half are the most varied identities and half the least varied, so the figures
    can set the two side by side; elsewhere they are drawn at random."""
    train = run.dataset.train
    images_of: dict[int, list[int]] = {}  # in the order identities first appear (the seeded draws depend on it)
    for index, record in enumerate(train):
        images_of.setdefault(record.pid, []).append(index)
    variation = identity_variation(run)
    rng = np.random.default_rng(seed)
    eligible = [pid for pid, indices in images_of.items() if len(indices) >= 2]
    if variation:
        ranked = sorted(eligible, key=lambda pid: variation[pid])
        half = num_identities // 2
        chosen = ranked[::-1][: num_identities - half] + ranked[:half]
    else:
        chosen = [int(pid) for pid in rng.choice(eligible, size=min(num_identities, len(eligible)), replace=False)]
    indices = [int(i) for pid in chosen
               for i in rng.choice(images_of[pid], size=min(images_per_identity, len(images_of[pid])), replace=False)]
    images = training_images(run)
    return PairBatch(run, chosen, indices, variation, torch.stack([images[i]["image"] for i in indices]),
                     torch.tensor([train[i].pid for i in indices]))


def select_pairs(run_dir: str | os.PathLike, checkpoints: dict[int, Path], batch: PairBatch, temperature: float,
                 device: str = "cpu") -> dict[int, PairSelection]:
    """Epoch -> the pairs AdaSP selects in ``batch`` under that epoch's checkpoint, on the train-mode features the
    loss saw (:func:`metric_features`; each checkpoint is loaded afresh, as those update BatchNorm's statistics)."""
    selector = SparsePairwiseLoss(mode="adasp", temperature=temperature)
    return {epoch: selector.select(metric_features(engine.load_trained(run_dir, path, device=device,
                                                                       dataset=batch.run.dataset).model, batch.images),
                                   batch.labels)
            for epoch, path in checkpoints.items()}


def identity_weights(run_dir: str | os.PathLike, checkpoints: dict[int, Path], run: engine.TrainedRun,
                     temperature: float, seed: int, device: str = "cpu") -> pd.DataFrame:
    """w, h and l of every training identity at each drawn epoch (columns ``epoch, pid, w, h, l, variation``; NaN
    variation off SynthReID): each identity once, from the first-epoch P x K batches of the run's sampler sizes
    drawn with ``seed``, so the weight is measured in batches like those the loss saw, over all identities."""
    selector = SparsePairwiseLoss(mode="adasp", temperature=temperature)
    train, images, variation = run.dataset.train, training_images(run), identity_variation(run)
    batches = first_epoch_batches(run.config, train, seed)
    rows = []
    for epoch, path in checkpoints.items():
        model = engine.load_trained(run_dir, path, device=device, dataset=run.dataset).model
        seen = set()
        for indices in batches:
            batch = torch.stack([images[i]["image"] for i in indices])
            labels = torch.tensor([train[i].pid for i in indices])
            for record in selector.select(metric_features(model, batch), labels).to_records():
                if record["labels"] not in seen:
                    seen.add(record["labels"])
                    rows.append({"epoch": epoch, "pid": record["labels"], "w": record["w"], "h": record["h"],
                                 "l": record["l"], "variation": variation.get(record["labels"], np.nan)})
    return pd.DataFrame(rows)


def _last_epoch(weights: pd.DataFrame) -> pd.DataFrame:
    return weights[weights["epoch"] == weights["epoch"].max()]


def weight_table(weights: pd.DataFrame) -> pd.DataFrame:
    """Per drawn epoch: the identities measured, the mean, least and largest w, the share with w = 0 (hardest pair
    still dissimilar, h < 0) and the mean h and l."""
    return weights.groupby("epoch").agg(identities=("w", "size"), w_mean=("w", "mean"), w_min=("w", "min"),
                                        w_max=("w", "max"), share_w_zero=("w", lambda w: float((w == 0).mean())),
                                        h_mean=("h", "mean"), l_mean=("l", "mean"))


def weight_summary(weights: pd.DataFrame) -> dict[str, Any]:
    """The page's numbers on w at the last drawn epoch (its mean, range, how many identities have w < 0.5 or w = 0,
    and on SynthReID its Spearman correlation with the variation level) and ``answer``, the sentence they give."""
    last = _last_epoch(weights)
    w = last["w"]
    summary = {"identities": int(weights["pid"].nunique()),
               "epochs_drawn": sorted(int(e) for e in weights["epoch"].unique()),
               "mean_w_last": float(w.mean()), "frac_w_zero_last": float((w == 0).mean())}
    has_variation = bool(weights["variation"].notna().any())
    if has_variation:
        rho, p = spearmanr(last["variation"], w)
        summary.update(spearman_w_variation=float(rho), spearman_p=float(p))
    summary.update(w_min_last=float(w.min()), w_max_last=float(w.max()), n_w_below_half_last=int((w < 0.5).sum()),
                   n_w_zero_last=int((w == 0).sum()))
    if has_variation:
        summary["spearman_n"] = int(last["variation"].notna().sum())
    summary["answer"] = _answer(summary, weight_table(weights), len(w))
    return summary


def _answer(summary: dict[str, Any], table: pd.DataFrame, identities_last: int) -> str:
    """The measured answers: the spread of w at the last drawn epoch, its change over training, and its rank
    correlation with the variation level (significant at p < 0.05)."""
    first, last = int(table.index.min()), int(table.index.max())
    answer = (f"At epoch {last}, w ranges {summary['w_min_last']:.3f}-{summary['w_max_last']:.3f} "
              f"(mean {summary['mean_w_last']:.3f}) over {identities_last} identities; "
              f"{summary['n_w_below_half_last']} have w < 0.5 and {summary['n_w_zero_last']} have w = 0.")
    if first != last:
        change = table.loc[last, "w_mean"] - table.loc[first, "w_mean"]
        answer += (f" From epoch {first} to {last} the mean w {'rose' if change > 0 else 'fell'} by {abs(change):.3f} "
                   f"(mean h {table.loc[first, 'h_mean']:.3f} -> {table.loc[last, 'h_mean']:.3f}).")
    if "spearman_n" in summary:
        rho, p = summary["spearman_w_variation"], summary["spearman_p"]
        if not np.isfinite(rho):
            association = "undefined (w or the variation level is constant)"
        elif p < 0.05:
            association = (f"a significant {'negative' if rho < 0 else 'positive'} association: identities with larger "
                           f"variation get a {'smaller' if rho < 0 else 'larger'} w")
        else:
            association = "no detectable association at the 5% level"
        answer += f" Spearman(w, variation) = {rho:.2f} (p = {p:.2g}, n = {summary['spearman_n']}): {association}."
    return answer


def identity_weight_figure(weights: pd.DataFrame, summary: dict[str, Any]) -> plt.Figure:
    """:func:`reidlab.viz.pairs.weight_figure` of the page: w per drawn epoch and, on SynthReID, w against the
    variation level at the last drawn epoch with the Spearman correlation of :func:`weight_summary`."""
    w_by_epoch = {int(epoch): group["w"].to_numpy() for epoch, group in weights.groupby("epoch")}
    if "spearman_n" not in summary:
        return weight_figure(w_by_epoch)
    last = _last_epoch(weights)
    title = (f"epoch {int(last['epoch'].iloc[0])}: w vs variation (Spearman {summary['spearman_w_variation']:.2f}, "
             f"p={summary['spearman_p']:.2g})")
    return weight_figure(w_by_epoch, last["variation"].to_numpy(), last["w"].to_numpy(), last["h"].to_numpy(), title)


def epoch_figure(batch: PairBatch, selection: PairSelection, epoch: int) -> plt.Figure:
    """Every identity of the batch under one epoch's selection, one row each (:meth:`PairBatch.rows`)."""
    return pair_rows_figure(batch.rows(selection), f"epoch {epoch}: pairs selected per identity", batch.size)


def variation_figure(batch: PairBatch, selection: PairSelection, epoch: int, images_per_identity: int) -> plt.Figure:
    """The batch's most varied identities (left) beside its least varied (right) under one epoch's selection."""
    large, small = batch.variation_groups()
    return pair_rows_side_by_side(batch.rows(selection, large), batch.rows(selection, small),
                                  ("large intra-class variation", "small intra-class variation"), f"epoch {epoch}",
                                  images_per_identity, batch.size)


def save_epoch_figures(batch: PairBatch, selections: dict[int, PairSelection], output_dir: str | os.PathLike) -> None:
    """The page's figure of every drawn epoch (``pairs_epoch_NNN``; the last one is also the index card's
    ``summary``), saved; the notebook's inline backend shows them."""
    for epoch, selection in selections.items():
        fig = epoch_figure(batch, selection, epoch)
        save_figure(fig, output_dir, f"pairs_epoch_{epoch:03d}")
        if epoch == max(selections):
            save_figure(fig, output_dir, "summary")


def save_variation_figure(batch: PairBatch, selections: dict[int, PairSelection], images_per_identity: int,
                          output_dir: str | os.PathLike) -> str:
    """On SynthReID, the last drawn epoch's most varied identities beside its least varied, saved as
    ``variation_side_by_side``; returns the sentence comparing their w (elsewhere, why there is no figure)."""
    epoch = max(selections)
    if not batch.variation_groups()[0]:  # off SynthReID, or fewer than two identities
        return "no SynthReID variation levels for this dataset; see the figures above"
    save_figure(variation_figure(batch, selections[epoch], epoch, images_per_identity), output_dir,
                "variation_side_by_side")
    return batch.compare_variation(selections[epoch], epoch)


def activation_figure(run_dir: str | os.PathLike, checkpoint: Path, batch: PairBatch, selection: PairSelection,
                      epoch: int, num_identities: int, device: str = "cpu") -> plt.Figure:
    """For ``num_identities`` identities of the batch (on SynthReID the most varied and the least varied, as many
    of each), the SP-H hardest pair and the SP-LH pair of one epoch's selection, each image with its activation map
    (:class:`ActivationMap` of that epoch's checkpoint) for its pair's similarity; captioned as
    :meth:`PairBatch.rows`."""
    maps = ActivationMap(engine.load_trained(run_dir, checkpoint, device=device, dataset=batch.run.dataset).model,
                         batch.run.config)
    large, small = batch.variation_groups()
    identities = (large[: num_identities - num_identities // 2] + small[: num_identities // 2] if large
                  else batch.identities[:num_identities])
    records = {r["labels"]: r for r in selection.to_records()}
    batch_records = [batch.run.dataset.train[i] for i in batch.indices]
    rows = [pair_map_panels(maps, batch_records, records[pid], ("sp-h", "sp-lh"), batch.size) for pid in identities]
    return activation_rows_figure(rows, [r.caption for r in batch.rows(selection, identities)],
                                  f"epoch {epoch}: {maps.method} of the SP-H pair (red) and the SP-LH pair (green)")


def write_pairs_metrics(output_dir: str | os.PathLike, summary: dict[str, Any], run_dir: str | os.PathLike,
                        temperature: float, score: dict[str, float]) -> dict[str, Any]:
    """The notebook's final record: :func:`weight_summary`, the run read and the temperature used, its
    :func:`run_score` and the figures saved in ``output_dir``; written and returned."""
    return write_page_metrics(output_dir, {**summary, "run_dir": str(run_dir), "temperature": temperature, **score})


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """The page's metrics (column ``value``) without the figure list and the answer sentence, printed above."""
    return pd.Series({k: v for k, v in metrics.items() if k not in ("figures", "answer")}, name="value").to_frame()

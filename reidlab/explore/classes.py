"""How classes arrange themselves (notebooks/class_similarity.ipynb): the class map, a UMAP of the classifier
weights per saved epoch with an identity's images and hard-batch neighbours on hover or click; and the notebook's
pages: its runs, the classifier weights per drawn epoch, their similarity by identity family, hard batches against
random ones, and how well each scene-removal objective hides the scene."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_hex
from scipy.linalg import orthogonal_procrustes

from reidlab import engine
from reidlab.study.records import write_page_metrics
from reidlab.data.samplers import HardBatchSampler, PKSampler
from reidlab.evaluation import split_chance_level
from reidlab.evaluation.probe import linear_probe_accuracy
from reidlab.study.training import finished_run
from reidlab.utils import file_sha256
from reidlab.viz.embedding import cosine_similarity, scatter_groups, umap_2d

from .run import ExploredRun, cached_tensors, drawn_checkpoints
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
        classes = max(self.images_of) + 1
        self.groups = run.dataset.identity_families() or ["all"] * classes  # the families the dataset knows
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
        self.figure = bq.Figure(marks=[self.scatter, self.neighbour_marks],
                                fig_margin=dict(top=30, bottom=10, left=10, right=10),
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

    def map_at(self, epoch: int) -> dict[str, torch.Tensor]:
        """{"weights": the classifier weights [C, D], "xy": the 2-D map [C, 2]} of one epoch's checkpoint."""
        if epoch not in self._maps:
            checkpoint = self.run.epoch_checkpoints[epoch]
            path = self.run.run_dir / "explore" / f"classmap.{checkpoint.stem}.pt"
            key = {"checkpoint": file_sha256(checkpoint), "seed": self.seed}

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


def class_similarity_runs(run_dir: str | os.PathLike | None, scene_run_dirs: dict[str, str | os.PathLike],
                          scene_objectives: list[str], output_dir: str | os.PathLike, preset: str,
                          overrides: dict[str, Any], seed: int, epochs: int | None, data_root: str | None, device: str,
                          resume: bool, print_fn=print) -> tuple[Path, dict[str, Path]]:
    """The notebook's runs, all with hard batch mining and per-epoch checkpoints: ``run_dir`` and one run with scene
    removal per objective. A run not given is trained into ``output_dir/run_hm`` or ``run_hm_sr_<objective>``
    (reused or continued with ``resume``) and its final mAP printed; a given one must have finished."""
    def hard_batch_run(path, extra: dict[str, Any], name: str) -> Path:
        trained_here = path is None
        path = finished_run(path, output_dir, preset, {**overrides, "sampler.name": "hard", **extra}, seed, epochs,
                            data_root, device, resume, name=name, training_log=False, save_every=1)
        if trained_here:
            result = engine.RunDir(path).metrics()
            removal = f", scene removal ({extra['scene.objective']})" if extra else ""
            print_fn(f"{name} (hard batch mining{removal}, {result['epochs_completed']} epochs) in {path}: "
                     f"mAP {result['mAP']:.1%}, rank-1 {result['rank1']:.1%}")
        return path

    run_dir = hard_batch_run(run_dir, {}, "run_hm")
    return run_dir, {objective: hard_batch_run(scene_run_dirs.get(objective),
                                               {"scene.enabled": True, "scene.objective": objective},
                                               f"run_hm_sr_{objective}") for objective in scene_objectives}


@dataclass
class ClassWeights:
    """A run's classifier weights (one row per train class: its class centre) at a few epochs spread over
    training, with the run's config and dataset and each class's identity family (None off SynthReID)."""

    by_epoch: dict[int, np.ndarray]
    families: list[str] | None
    config: engine.TrainConfig
    dataset: Any

    @property
    def last_epoch(self) -> int:
        return max(self.by_epoch)

    @property
    def last(self) -> np.ndarray:
        """The weights of the last drawn epoch, the one the similarity, the batches and the heatmap are of."""
        return self.by_epoch[self.last_epoch]

    def summary(self) -> str:
        return (f"{len(self.last)} classes, weight dim {self.last.shape[1]}; "
                f"epochs drawn: {sorted(self.by_epoch)}")


def drawn_class_weights(run_dir: str | os.PathLike, max_epochs: int, device: str = "cpu") -> ClassWeights:
    """The classifier weights of up to ``max_epochs`` of the run's epoch checkpoints, evenly spread from the first
    to the last (training shows as a few panels); FileNotFoundError when the run saved none (``save_every``)."""
    by_epoch, trained = {}, None
    for epoch, checkpoint in drawn_checkpoints(run_dir, max_epochs).items():
        trained = engine.load_trained(run_dir, checkpoint, device=device,
                                      dataset=trained.dataset if trained else None)
        by_epoch[epoch] = trained.model.classifier_weight().detach().cpu().numpy()
    classes = len(by_epoch[max(by_epoch)])
    families = trained.dataset.identity_families()
    return ClassWeights(by_epoch, families[:classes] if families else None, trained.config, trained.dataset)


def similarity_summary(weights: ClassWeights) -> dict[str, float]:
    """How similar the last epoch's class weights are (cosine, the similarity hard batch mining ranks classes by):
    overall and, with families, within against across families, and how often a class's most similar class is a
    family member next to that rate if neighbours were random."""
    w = weights.last
    sim = cosine_similarity(w)
    off = ~np.eye(len(w), dtype=bool)
    summary = {"classes": int(len(w)), "mean_class_similarity": float(sim[off].mean())}
    if weights.families is not None:
        family = np.asarray(weights.families)
        same = (family[:, None] == family[None, :]) & off
        summary["mean_similarity_same_family"] = float(sim[same].mean()) if same.any() else float("nan")
        summary["mean_similarity_other_family"] = float(sim[off & ~same].mean())
        nearest = np.where(off, sim, -np.inf).argmax(1)
        members = (family[:, None] == family[None, :]).sum(1) - 1
        summary["nearest_class_same_family"] = float((family[nearest] == family).mean())
        summary["nearest_class_same_family_chance"] = float((members / (len(w) - 1)).mean())
    return summary


def similarity_answer(summary: dict[str, float], epoch: int) -> str | None:
    """Whether the classifier places family members closer to each other than to other classes, from the numbers
    of :func:`similarity_summary`; None without families."""
    if "mean_similarity_same_family" not in summary:
        return None
    same, other = summary["mean_similarity_same_family"], summary["mean_similarity_other_family"]
    nearest, chance = summary["nearest_class_same_family"], summary["nearest_class_same_family_chance"]
    gap = same - other
    return textwrap.fill(
        f"Epoch {epoch}: mean cos within a family {same:.3f} vs {other:.3f} across families ({gap:+.3f}); the most "
        f"similar class is a family member for {nearest:.0%} of the classes, against {chance:.0%} if neighbours were "
        "random. On these two measures the classifier " + ("does" if gap > 0 and nearest > chance else "does not")
        + " place family members closer to each other than to other classes.", 110)


def epoch_maps(by_epoch: dict[int, np.ndarray], seed: int = 0) -> dict[int, np.ndarray]:
    """The 2-D UMAP of each epoch's class weights, in epoch order, each started from the previous epoch's map so
    that the panels stay comparable."""
    maps, init = {}, "spectral"
    for epoch, weights in sorted(by_epoch.items()):
        maps[epoch] = init = umap_2d(weights, seed=seed, init=init)
    return maps


@dataclass
class BatchComparison:
    """The classes of each batch of one epoch, as ``HardBatchSampler`` plans it with the last weights and as a
    random P x K sampler does, and the mean pairwise class similarity inside a batch (how hard its negatives are)."""

    hard: list[list[int]]
    random: list[list[int]]
    hard_similarity: float
    random_similarity: float
    p: int

    def panels(self) -> dict[str, tuple[list[list[int]], float]]:
        """Title -> (classes per batch, mean in-batch similarity), for ``reidlab.viz.classes.batches_figure``."""
        return {"hard batches (HBReID)": (self.hard, self.hard_similarity),
                "random P x K batches": (self.random, self.random_similarity)}

    def metrics(self) -> dict[str, float]:
        return {"in_batch_similarity_hard": self.hard_similarity, "in_batch_similarity_random": self.random_similarity}

    def answer(self) -> str:
        return (f"mean in-batch class similarity: hard batches {self.hard_similarity:.3f}, random batches "
                f"{self.random_similarity:.3f} ({self.hard_similarity - self.random_similarity:+.3f}): hard batches "
                f"{'do' if self.hard_similarity > self.random_similarity else 'do not'} hold more similar classes")


def compare_batches(weights: ClassWeights, seed: int = 0) -> BatchComparison:
    """Hard batches (one random anchor class, all classes sorted by similarity to it, cut into groups of P) built
    from the last weights, against random P x K batches over the same train images."""
    pids = [r.pid for r in weights.dataset.train]
    sampler, w = weights.config.sampler, weights.last
    p = min(sampler.p, len(w))
    hard = HardBatchSampler(pids, p, sampler.k, warmup_epochs=0, seed=seed)
    hard.update_weights(w)
    random_batches = PKSampler(pids, p, sampler.k, seed=seed).plan(0)
    hard_batches = hard.plan(0)
    sim = cosine_similarity(w)

    def classes(batches: list[list[int]]) -> list[list[int]]:
        return [sorted({pids[i] for i in batch}) for batch in batches]

    def mean_similarity(batches: list[list[int]]) -> float:
        return float(np.mean([sim[np.ix_(c, c)][~np.eye(len(c), dtype=bool)].mean() for c in batches]))

    hard_classes, random_classes = classes(hard_batches), classes(random_batches)
    return BatchComparison(hard_classes, random_classes, mean_similarity(hard_classes),
                           mean_similarity(random_classes), p)


@dataclass
class SceneRemoval:
    """How well the scene (camera group) can still be read from each run's test features: ``table`` has one row per
    run (``no removal``, then each objective) with the held-out probe, the run's own adversary on the test features
    and on its last training epoch (as logged), the scene chance, the run's mAP and the split's chance mAP.
    ``feature_maps``: run -> 2-D UMAP of its test features; ``scenes``: the scene of each of their rows."""

    table: pd.DataFrame
    chance: float
    map_chance: dict[str, float]
    scenes: np.ndarray
    feature_maps: dict[str, np.ndarray]

    @property
    def objectives(self) -> list[str]:
        return [name for name in self.table.index if name != "no removal"]

    def answer(self) -> str:
        """Per objective, the probe against no removal (and how far towards chance), the adversary and the mAP; an
        adversary below chance while the probe reads the scene is called fooled; then the objective that lowered
        the probe most."""
        probe, chance = self.table, self.chance
        base = probe.loc["no removal"]
        verdict = (f"Held-out scene probe without scene removal: {base['held-out probe']:.0%} (chance {chance:.0%}), "
                   f"mAP {base['mAP']:.1%} (chance {self.map_chance['mAP']:.2%}). ")
        for objective in self.objectives:
            row = probe.loc[objective]
            change = row["held-out probe"] - base["held-out probe"]
            verdict += f"{objective}: probe {row['held-out probe']:.0%} ({change:+.0%}"
            gap = base["held-out probe"] - chance
            if change < -0.02 and gap > 0:
                verdict += f", {min(-change / gap, 1):.0%} of the way to chance"
            verdict += f"), adversary {row['adversary (test)']:.0%} on test features, mAP {row['mAP']:.1%}"
            if row["adversary (test)"] < chance - 0.1 and row["held-out probe"] > chance + 0.1:
                verdict += " - the adversary is below chance while the probe reads the scene: fooled, not beaten"
            verdict += ". "
        if self.objectives:
            best = min(self.objectives, key=lambda objective: probe.loc[objective, "held-out probe"])
            drop = base["held-out probe"] - probe.loc[best, "held-out probe"]
            verdict += (f"Lowest probe: {best} ({drop:+.0%} against no removal)." if drop > 0.02 else
                        "No objective lowered the probe by more than 2 points on this run.")
        return textwrap.fill(verdict, 110)

    def metrics(self) -> dict[str, float]:
        probe, objectives = self.table, self.objectives
        base = probe.loc["no removal"]
        return {
            "scene_probe_without_sr": float(base["held-out probe"]),
            "scene_chance": self.chance,
            "mAP_without_sr": float(base["mAP"]),
            "chance_mAP": self.map_chance["mAP"],
            "chance_rank1": self.map_chance["rank1"],
            **{f"scene_probe_{o}": float(probe.loc[o, "held-out probe"]) for o in objectives},
            **{f"scene_adversary_test_{o}": float(probe.loc[o, "adversary (test)"]) for o in objectives},
            **{f"scene_adversary_train_{o}": float(probe.loc[o, "adversary (train)"]) for o in objectives},
            **{f"mAP_{o}": float(probe.loc[o, "mAP"]) for o in objectives},
        }


def scene_reading(run_dir: str | os.PathLike, records: list, seed: int = 0,
                  device: str = "cpu") -> tuple[dict[str, float], torch.Tensor]:
    """One run's readers of the scene on ``records`` (their ``sceneid``): a logistic probe scored on identities it
    was not fit on (so knowing an identity, and where it was filmed, does not count), the run's own adversary (NaN
    without scene removal) on the same features and as logged in its last training epoch; and the run's mAP.
    Returns that row and the raw features (what the adversary saw)."""
    scenes = np.array([r.sceneid for r in records])
    identities = np.array([r.pid for r in records])
    run = engine.load_trained(run_dir, "last", device=device)
    feats, _, _ = run.features(records, flip=False, normalize=False)
    row = {"held-out probe": float("nan"), "adversary (test)": float("nan"), "adversary (train)": float("nan")}
    if len(set(scenes)) > 1:
        row["held-out probe"] = linear_probe_accuracy(torch.nn.functional.normalize(feats, dim=1).numpy(), scenes,
                                                      seed=seed, groups=identities)
    adversary = run.model.scene_adversary
    if adversary is not None:
        with torch.no_grad():
            predicted = adversary.classifier(feats.to(next(adversary.parameters()).device)).argmax(1).cpu().numpy()
        row["adversary (test)"] = float((predicted == scenes).mean())
        logged = [r for r in engine.read_metrics(run_dir, "epoch") if "scene_accuracy" in r]
        row["adversary (train)"] = logged[-1]["scene_accuracy"] if logged else float("nan")
    row["mAP"] = engine.RunDir(run_dir).metrics()["mAP"]
    return row, feats


def scene_removal(dataset: Any, run_dir: str | os.PathLike, scene_runs: dict[str, str | os.PathLike], seed: int = 0,
                  device: str = "cpu") -> SceneRemoval:
    """:func:`scene_reading` of the run without scene removal and of each objective's run, on the test images of
    ``dataset`` (query and gallery, distractors left out), next to the scene chance (the most frequent scene's
    share) and the split's chance mAP."""
    records = list(dataset.query) + list(dataset.gallery)
    records = [r for r in records if r.pid > 0] or records  # distractors left out
    scenes = np.array([r.sceneid for r in records])
    chance = float(np.bincount(scenes).max() / len(scenes))
    map_chance = split_chance_level(dataset)
    rows, feature_maps = [], {}
    for name, path in {"no removal": run_dir, **scene_runs}.items():
        row, feats = scene_reading(path, records, seed, device)
        rows.append({"run": name, **row, "scene chance": chance, "chance mAP": map_chance["mAP"]})
        feature_maps[name] = umap_2d(feats.numpy(), seed=seed)
    columns = ["run", "held-out probe", "adversary (test)", "adversary (train)", "scene chance", "mAP", "chance mAP"]
    return SceneRemoval(pd.DataFrame(rows, columns=columns).set_index("run"), chance, map_chance, scenes,
                        feature_maps)


def write_class_similarity_metrics(output_dir: str | os.PathLike, similarity: dict[str, float],
                                   batches: BatchComparison, scene: SceneRemoval, run_dir: str | os.PathLike,
                                   scene_runs: dict[str, str | os.PathLike]) -> dict[str, Any]:
    """The notebook's ``metrics.json`` (its pages' numbers, the runs read and the figures in ``output_dir/figures``),
    written and returned."""
    return write_page_metrics(output_dir, {**similarity, **batches.metrics(), **scene.metrics(), "run_dir": str(run_dir),
                                           "scene_run_dirs": {o: str(p) for o, p in scene_runs.items()}})

"""The ablation plan: the rows of the source tables as override sets, and the SynthReID copies they train on."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .sweep import _slug, point_name
from .training import as_override_dict

# Small enough that `reidlab report` (four notebooks, every ablation cell over 3 seeds) finishes in well
# under 15 minutes on 2 CPU cores: a 64 x 32 SynthReID generated once, a ResNet-18-shaped network with
# 1/4 of the channels, 8 x 4 batches, a few epochs. Real-dataset studies pass their own preset instead.
STUDY_SYNTH_KNOBS: dict[str, Any] = {
    "num_train_ids": 32, "num_test_ids": 32, "num_cameras": 6, "num_scenes": 3, "image_size": [64, 32],
    "images_per_camera": [1, 3], "num_distractors": 30, "num_junk": 6,
    # Milder nuisances than the full benchmark: a from-scratch network must learn in ~130 steps.
    "color_cast": 0.15, "occlusion_prob": 0.15, "misalignment": 0.05, "noise": [1.0, 4.0], "blur": [0.0, 0.4],
}
STUDY_OVERRIDES: dict[str, Any] = {
    # The study generates its datasets itself (variation_datasets); a run must never regenerate them.
    "data.generate": False,
    "data.size": [64, 32], "data.num_workers": 0, "data.test_batch_size": 256,
    "data.aug": {"flip_p": 0.5, "padding": 2, "erasing_p": 0.0},
    "model.name": "resnet18_tiny",
    "model.kwargs": {"last_stride": 2},
    "sampler.p": 8, "sampler.k": 4, "sampler.hard_warmup_epochs": 1,
    "epochs": 16, "optim.lr": 1.5e-2, "optim.warmup_epochs": 0.0, "scene.ramp_epochs": 2,
    "eval.every": 0, "progress": False, "log_every": 5,
}
STUDY_SEEDS = (0, 1, 2)
VARIATION_LEVELS = (0.1, 0.5, 0.9)

# Ablation cells: overrides on top of the preset. The AdaSP README rows train the metric loss alone
# (AdaSP's "single" setting) against a triplet and a cross-entropy baseline.
ADASP_ROWS: dict[str, dict[str, Any]] = {
    "SP-H": {"loss.metric": "sp-h", "loss.ce_weight": 0.0},
    "SP-LH": {"loss.metric": "sp-lh", "loss.ce_weight": 0.0},
    "AdaSP": {"loss.metric": "adasp", "loss.ce_weight": 0.0},
    "Triplet": {"loss.metric": "triplet", "loss.ce_weight": 0.0, "loss.margin": 0.3},
    "CE": {"loss.metric": "none", "loss.ce_weight": 1.0},
}
# HBReID: the baseline is CE + soft-margin triplet with a random P x K sampler (its TransReID§ row);
# GS = grayscale patch replacement, HM = hard batch mining, SR = adversarial scene removal.
_HB_BASE = {"loss.metric": "triplet", "loss.margin": 0.0, "loss.ce_weight": 1.0, "loss.label_smoothing": 0.0,
            "sampler.name": "pk", "scene.enabled": False}
_GS, _HM, _SR = {"data.aug.gray_patch_p": 0.5}, {"sampler.name": "hard"}, {"scene.enabled": True}
HBREID_TABLE2_ROWS: dict[str, dict[str, Any]] = {
    "baseline": _HB_BASE,
    "+GS": {**_HB_BASE, **_GS},
    "+GS +HM": {**_HB_BASE, **_GS, **_HM},
    "+GS +SR": {**_HB_BASE, **_GS, **_SR},
    "+GS +HM +SR": {**_HB_BASE, **_GS, **_HM, **_SR},
}
HBREID_TABLE1_ROWS: dict[str, dict[str, Any]] = {
    "Default": _HB_BASE,
    "+CJ": {**_HB_BASE, "data.aug.color_jitter_p": 0.5},
    "+GB": {**_HB_BASE, "data.aug.blur_p": 0.5},
    "+GT": {**_HB_BASE, "data.aug.gamma_p": 0.5},
    "+GS": {**_HB_BASE, **_GS},
}
VARIATION_LOSSES = ("SP-H", "SP-LH", "AdaSP")


def point_key(overrides: Mapping[str, Any], data_root: str | None = None, rerank: bool = False) -> str:
    """The grid-point name of a set of overrides: identical cells of different tables share one run."""
    return point_name({"o": dict(sorted(overrides.items())), "d": data_root, "r": rerank})


def ablation_plan(
    tables: Sequence[str] = ("adasp", "hbreid2", "hbreid1", "variation"),
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    variation_roots: Mapping[float, str] | None = None,
    default_variation: float | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """The sweep grid of the ablation notebook and, per table, row label -> grid point name.

    Tables: ``adasp`` (SP-H, SP-LH, AdaSP, triplet, CE), ``hbreid2`` (baseline, +GS, +HM, +SR; evaluated
    with and without re-ranking), ``hbreid1`` (augmentations), ``variation`` (SP-H / SP-LH / AdaSP on
    SynthReID copies that differ only in the intra-class variation knob; ``variation_roots`` maps level
    -> dataset folder; rows are labelled ``"<loss>@<level>"``). Cells with the same settings share a run.
    ``only`` keeps a subset of rows per table (``{"adasp": ["AdaSP", "Triplet"], "variation": ["AdaSP"]}``;
    variation rows are selected by loss).
    """
    known = {"adasp", "hbreid2", "hbreid1", "variation"}
    if set(tables) - known:
        raise ValueError(f"unknown ablation tables {sorted(set(tables) - known)}; choose from {sorted(known)}")
    base = as_override_dict(overrides)
    grid: dict[str, dict] = {}
    rows: dict[str, dict[str, str]] = {}

    only = {table: set(labels) for table, labels in (only or {}).items()}
    for table, labels in only.items():
        valid = set(VARIATION_LOSSES if table == "variation" else {"adasp": ADASP_ROWS, "hbreid2": HBREID_TABLE2_ROWS,
                                                                     "hbreid1": HBREID_TABLE1_ROWS}.get(table, {}))
        if table not in known or labels - valid:
            raise ValueError(f"only={{{table!r}: {sorted(labels)}}}: unknown table or rows; rows of {table!r}: {sorted(valid)}")

    def add(table: str, label: str, cell: Mapping[str, Any], root: str | None, rerank: bool = False) -> None:
        if table in only and label.split("@")[0] not in only[table]:
            return
        merged = {**base, **cell}
        name = point_key(merged, root, rerank)
        params = {"preset": preset, "overrides": merged, "rerank": rerank}
        if epochs is not None:
            params["epochs"] = epochs
        if root is not None:
            params["data_root"] = root
        grid[name] = params
        rows.setdefault(table, {})[label] = name

    hb_rerank = "hbreid2" in tables
    for table, cells in (("adasp", ADASP_ROWS), ("hbreid2", HBREID_TABLE2_ROWS), ("hbreid1", HBREID_TABLE1_ROWS)):
        if table in tables:
            for label, cell in cells.items():
                add(table, label, cell, data_root, rerank=hb_rerank and table != "adasp")
    if "variation" in tables:
        if not variation_roots:
            raise ValueError("the variation table needs variation_roots: {level: SynthReID folder generated with that variation}")
        for level, root in sorted(variation_roots.items()):
            same_as_default = default_variation is not None and abs(level - default_variation) < 1e-9 and root == data_root
            for loss in VARIATION_LOSSES:
                add("variation", f"{loss}@{level:g}", ADASP_ROWS[loss], data_root if same_as_default else root)
    # Rename points to readable, stable folder names (first table and label that uses them).
    readable: dict[str, str] = {}
    for table, labels in rows.items():
        for label, name in labels.items():
            readable.setdefault(name, _slug(f"{table}-" + label.replace("+", "").strip().replace(" ", "-")))
    grid = {readable[name]: params for name, params in grid.items()}
    rows = {table: {label: readable[name] for label, name in labels.items()} for table, labels in rows.items()}
    return grid, rows


def variation_datasets(data_dir: str | os.PathLike, levels: Sequence[float] = VARIATION_LEVELS, seed: int = 0,
                       knobs: Mapping[str, Any] | None = None) -> dict[float, str]:
    """Generate (or reuse) one SynthReID per intra-class variation level; level -> folder."""
    from reidlab.data import synth

    knobs = dict(STUDY_SYNTH_KNOBS if knobs is None else knobs)
    roots = {}
    for level in levels:
        root = Path(data_dir) / f"synthreid-variation{level:g}"
        synth.generate(root, seed=seed, **{**knobs, "variation": float(level)})
        roots[float(level)] = str(root.resolve())
    return roots

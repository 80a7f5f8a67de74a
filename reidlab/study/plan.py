"""The ablation plan: the rows of the source tables as override sets, and the SynthReID copies they train on."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .profile import PRETRAIN_SYNTH_SEED, STUDY_SYNTH_SEED, StudyProfile
from .stats import Claim
from .sweep import _slug, point_name, sweep
from .training import as_override_dict, train_run

# Ablation cells: overrides on top of the study's training settings. The AdaSP README rows train the metric
# loss alone (AdaSP's "single" setting), with the batch-hard triplet as the dense baseline they are meant to beat.
ADASP_ROWS: dict[str, dict[str, Any]] = {
    "SP-H": {"loss.metric": "sp-h", "loss.ce_weight": 0.0},
    "SP-LH": {"loss.metric": "sp-lh", "loss.ce_weight": 0.0},
    "AdaSP": {"loss.metric": "adasp", "loss.ce_weight": 0.0},
    "Triplet": {"loss.metric": "triplet", "loss.ce_weight": 0.0, "loss.margin": 0.3},
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
TABLES = ("adasp", "variation", "hbreid2", "hbreid1")


def point_key(overrides: Mapping[str, Any], data_root: str | None = None, rerank: bool = False) -> str:
    """The grid-point name of a set of overrides: identical cells of different tables share one run."""
    return point_name({"o": dict(sorted(overrides.items())), "d": data_root, "r": rerank})


def ablation_plan(
    tables: Sequence[str] = TABLES,
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    variation_roots: Mapping[float, str] | None = None,
    default_variation: float | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
    hbreid_root: str | None = None,
    table_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """The sweep grid of the ablation notebook and, per table, row label -> grid point name.

    Tables: ``adasp`` (SP-H, SP-LH, AdaSP, triplet on ``data_root``), ``variation`` (SP-H / SP-LH / AdaSP on
    SynthReID copies that differ only in the intra-class variation knob; ``variation_roots`` maps level ->
    folder; rows are labelled ``"<loss>@<level>"``), ``hbreid2`` (baseline, +GS, +GS +HM, +GS +HM +SR; also
    evaluated with re-ranking) and ``hbreid1`` (augmentations), both on ``hbreid_root`` (default: ``data_root``).
    ``table_overrides`` adds settings per family of tables: ``{"adasp": {...}, "hbreid": {...}}`` (``adasp``
    covers the variation table). Cells with the same settings and data share one run. ``only`` keeps a subset
    of rows per table (``{"adasp": ["AdaSP", "Triplet"], "variation": ["AdaSP"]}``; variation rows by loss).
    """
    if set(tables) - set(TABLES):
        raise ValueError(f"unknown ablation tables {sorted(set(tables) - set(TABLES))}; choose from {list(TABLES)}")
    unknown_families = set(table_overrides or {}) - {"adasp", "hbreid"}
    if unknown_families:
        raise ValueError(f"table_overrides: unknown keys {sorted(unknown_families)}; use 'adasp' and 'hbreid'")
    base = as_override_dict(overrides)
    family_overrides = {family: as_override_dict((table_overrides or {}).get(family)) for family in ("adasp", "hbreid")}
    hbreid_root = hbreid_root or data_root
    grid: dict[str, dict] = {}
    rows: dict[str, dict[str, str]] = {}

    valid_rows = {"adasp": ADASP_ROWS, "variation": VARIATION_LOSSES, "hbreid2": HBREID_TABLE2_ROWS,
                  "hbreid1": HBREID_TABLE1_ROWS}
    only = {table: set(labels) for table, labels in (only or {}).items()}
    for table, labels in only.items():
        valid = set(valid_rows.get(table, ()))
        if table not in TABLES or labels - valid:
            raise ValueError(f"only={{{table!r}: {sorted(labels)}}}: unknown table or rows; rows of {table!r}: {sorted(valid)}")

    def add(table: str, label: str, cell: Mapping[str, Any], root: str | None, rerank: bool = False) -> None:
        if table in only and label.split("@")[0] not in only[table]:
            return
        family = "hbreid" if table.startswith("hbreid") else "adasp"
        merged = {**base, **family_overrides[family], **cell}
        name = point_key(merged, root, rerank)
        params = {"preset": preset, "overrides": merged, "rerank": rerank}
        if epochs is not None:
            params["epochs"] = epochs
        if root is not None:
            params["data_root"] = root
        grid[name] = params
        rows.setdefault(table, {})[label] = name

    if "adasp" in tables:
        for label, cell in ADASP_ROWS.items():
            add("adasp", label, cell, data_root)
    if "variation" in tables:
        if not variation_roots:
            raise ValueError("the variation table needs variation_roots: {level: SynthReID folder generated with that variation}")
        for level, root in sorted(variation_roots.items()):
            for loss in VARIATION_LOSSES:
                add("variation", f"{loss}@{level:g}", ADASP_ROWS[loss], root)
    hb_rerank = "hbreid2" in tables  # one run serves both tables, so +GS is re-ranked in both or in neither
    for table, cells in (("hbreid2", HBREID_TABLE2_ROWS), ("hbreid1", HBREID_TABLE1_ROWS)):
        if table in tables:
            for label, cell in cells.items():
                add(table, label, cell, hbreid_root, rerank=hb_rerank)
    # Rename points to readable, stable folder names (first table and label that uses them).
    readable: dict[str, str] = {}
    for table, labels in rows.items():
        for label, name in labels.items():
            readable.setdefault(name, _slug(f"{table}-" + label.replace("+", "").strip().replace(" ", "-")))
    grid = {readable[name]: params for name, params in grid.items()}
    rows = {table: {label: readable[name] for label, name in labels.items()} for table, labels in rows.items()}
    return grid, rows


def study_datasets(data_dir: str | os.PathLike, variation_levels: Sequence[float], variation_knobs: Mapping[str, Any],
                   hbreid_knobs: Mapping[str, Any] | None = None, seed: int = STUDY_SYNTH_SEED) -> dict[str, Any]:
    """Generate (or reuse) the study's SynthReID copies: one per intra-class variation level (AdaSP tables) and,
    with ``hbreid_knobs``, one for the HBReID tables. Returns ``{"variation": {level: folder}, "hbreid": folder}``."""
    from reidlab.data import synth

    roots: dict[str, Any] = {"variation": {}, "hbreid": None}
    for level in variation_levels:
        root = Path(data_dir) / f"synthreid-variation{level:g}"
        synth.generate(root, seed=seed, **{**variation_knobs, "variation": float(level)})
        roots["variation"][float(level)] = str(root.resolve())
    if hbreid_knobs is not None:
        root = Path(data_dir) / "synthreid-hbreid"
        synth.generate(root, seed=seed, **hbreid_knobs)
        roots["hbreid"] = str(root.resolve())
    return roots


def study_backbone(profile: StudyProfile, data_dir: str | os.PathLike, threads: int | None = None,
                   print_fn: Callable[[str], None] | None = print, executor: str = "local",
                   cluster: Any = None) -> str | None:
    """The checkpoint of the profile's shared backbone, pretrained once under ``data_dir/pretrain`` (an
    interrupted or finished pretraining is resumed or reused); None when the profile has no ``pretrain``.

    Why: the papers fine-tune ImageNet weights. From random weights, the few hundred steps a CPU affords leave
    every run mid-descent, and the seed-to-seed spread hides the effects the tables ask about. The backbone
    trains on its own SynthReID copy, drawn with another generator seed, so it never sees a test identity.
    ``executor`` / ``cluster``: where it trains, as for :func:`sweep`.
    """
    from reidlab.data import synth

    if profile.pretrain is None:
        return None
    root = Path(data_dir) / "synthreid-pretrain"
    synth.generate(root, seed=profile.pretrain.get("synth_seed", PRETRAIN_SYNTH_SEED), **profile.pretrain_knobs)
    overrides = {**profile.overrides, **profile.pretrain.get("overrides", {})}
    if executor == "local":  # a SLURM job takes its threads from its allocation (cpus_per_task)
        overrides["threads"] = threads or os.cpu_count() or 1
    params = {"preset": profile.preset, "overrides": overrides, "epochs": profile.pretrain["epochs"],
              "data_root": str(root.resolve()), "keep_checkpoints": True}
    runs = Path(data_dir) / "pretrain"
    sweep({"backbone": params}, [0], notebook=train_run, output_root=runs, print_fn=print_fn, executor=executor,
          cluster=cluster)
    checkpoint = runs.resolve() / "backbone" / "seed0" / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"the pretrained backbone {checkpoint} is missing although its run finished; "
                                f"delete {runs} to pretrain it again")
    return str(checkpoint)


def ablation_claims(rows: Mapping[str, Mapping[str, str]], default_variation: float | None = None) -> list[Claim]:
    """The two sources' claims that the planned rows can test, as :class:`Claim` objects over point names.
    A claim whose rows were not planned (``tables`` / ``only``) is left out."""
    claims: list[Claim] = []

    def point(table: str, label: str) -> str | None:
        return rows.get(table, {}).get(label)

    def add(points: Sequence[str | None], **fields: Any) -> None:
        if all(points):
            claims.append(Claim(**fields))

    levels = sorted({float(label.split("@")[1]) for label in rows.get("variation", {})})
    if levels:
        low, high = levels[0], levels[-1]
        sph_lo, splh_lo = point("variation", f"SP-H@{low:g}"), point("variation", f"SP-LH@{low:g}")
        sph_hi, splh_hi = point("variation", f"SP-H@{high:g}"), point("variation", f"SP-LH@{high:g}")
        add([sph_lo, splh_lo], id="sph-beats-splh-low-variation", source="AdaSP",
            statement=f"SP-H beats SP-LH at low intra-class variation ({low:g}; persons in the README)",
            arm=sph_lo, reference=splh_lo)
        add([sph_hi, splh_hi], id="splh-beats-sph-high-variation", source="AdaSP",
            statement=f"SP-LH beats SP-H at high intra-class variation ({high:g}; vehicles in the README)",
            arm=splh_hi, reference=sph_hi)
        if high > low:
            add([sph_lo, splh_lo, sph_hi, splh_hi], id="variation-interaction", source="AdaSP",
                statement=f"SP-LH's advantage over SP-H grows with intra-class variation ({low:g} -> {high:g})",
                arm=[splh_hi, sph_lo], reference=[sph_hi, splh_lo], combine="contrast")
        for level in levels:
            ada = point("variation", f"AdaSP@{level:g}")
            pair = [point("variation", f"SP-H@{level:g}"), point("variation", f"SP-LH@{level:g}")]
            add([ada, *pair], id=f"adasp-within-1-of-better@{level:g}", source="AdaSP",
                statement=f"AdaSP is within 1 mAP point of the better of SP-H / SP-LH at variation {level:g}",
                arm=ada, reference=pair, combine="within", margin=1.0)
    add([point("adasp", "AdaSP"), point("adasp", "Triplet")], id="adasp-beats-triplet", source="AdaSP",
        statement="AdaSP beats the batch-hard triplet loss" + (f" (variation {default_variation:g})" if default_variation is not None else ""),
        arm=point("adasp", "AdaSP"), reference=point("adasp", "Triplet"))
    for arm, reference, claim_id, statement in (
        ("+GS", "baseline", "gs-beats-baseline", "+GS (grayscale patch replacement) beats the baseline"),
        ("+GS +HM", "+GS", "hm-beats-gs", "+GS +HM (hard batch mining) beats +GS"),
        ("+GS +HM +SR", "+GS +HM", "sr-beats-gs-hm", "+GS +HM +SR (scene removal) beats +GS +HM"),
    ):
        add([point("hbreid2", arm), point("hbreid2", reference)], id=claim_id, source="HBReID", statement=statement,
            arm=point("hbreid2", arm), reference=point("hbreid2", reference))
    augmentations = [point("hbreid1", label) for label in ("+CJ", "+GB", "+GT")]
    add([point("hbreid1", "+GS"), *augmentations], id="gs-best-augmentation", source="HBReID",
        statement="GS is the best of the colour augmentations CJ / GB / GT / GS",
        arm=point("hbreid1", "+GS"), reference=augmentations, combine="best-of")
    full = point("hbreid2", "+GS +HM +SR")
    if full:
        claims.append(Claim(id="rerank-raises-map", source="HBReID", statement="k-reciprocal re-ranking raises mAP (+GS +HM +SR)",
                            arm=full, reference=full, metric="mAP_rerank", reference_metric="mAP"))
    return claims

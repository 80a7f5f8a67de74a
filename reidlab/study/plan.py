"""The ablation plan: the rows of the source tables as override sets, and the SynthReID copies they train on."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .io import slug
from .published import hbreid_claim_values
from .records import run_folder
from .profile import PRETRAIN_SYNTH_SEED, STUDY_COPIES, STUDY_SYNTH_SEED, StudyProfile
from .claims import Claim
from .sweep import point_name, sweep
from .training import as_override_dict, train_run, training_config

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
# The HM claim's own table, on the ``hm`` copy: its mechanism (mined batches of alike classes) needs large
# families and mild nuisances, which the scene regime of the Table 2 copy buries (docs/study.md, "Arms and data").
HM_ROWS: dict[str, dict[str, Any]] = {label: HBREID_TABLE2_ROWS[label] for label in ("+GS", "+GS +HM")}
REGIME_LOSSES = ("SP-H", "SP-LH", "AdaSP")
# The AdaSP README reads its table as "SP-H for persons, SP-LH for vehicles": the regime table trains the three
# losses on a person-like and a vehicle-like SynthReID copy (reidlab.data.synth.REGIMES).
ADASP_REGIMES = ("person", "vehicle")
TABLES = ("adasp", "regime", "hbreid2", "hbreid1", "hm")
# Runs whose last checkpoint the manipulation checks read: the HM check mines with the HM table's +GS +HM
# classifier, the SR checks probe a baseline run's features.
CHECKED_RUNS = (("hbreid2", "baseline"), ("hm", "+GS +HM"))


def point_key(overrides: Mapping[str, Any], data_root: str | None = None, rerank: bool = False) -> str:
    """The grid-point name of a set of overrides: identical cells of different tables share one run."""
    return point_name({"o": dict(sorted(overrides.items())), "d": data_root, "r": rerank})


def ablation_plan(
    tables: Sequence[str] = TABLES,
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    regime_roots: Mapping[str, str] | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
    hbreid_root: str | None = None,
    table_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    hm_root: str | None = None,
) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """The sweep grid of the ablation notebook and, per table, row label -> grid point name.

    Tables: ``adasp`` (SP-H, SP-LH, AdaSP, triplet on ``data_root``), ``regime`` (SP-H / SP-LH / AdaSP on the
    person-like and vehicle-like SynthReID copies; ``regime_roots`` maps regime -> folder; rows are labelled
    ``"<loss>@<regime>"``), ``hbreid2`` (baseline, +GS, +GS +HM, +GS +SR, +GS +HM +SR; also evaluated with
    re-ranking) and ``hbreid1`` (augmentations), both on ``hbreid_root`` (default: ``data_root``), and ``hm``
    (+GS, +GS +HM on ``hm_root``, default ``hbreid_root``). ``table_overrides`` adds settings per family of
    tables: ``{"adasp": {...}, "hbreid": {...}, "hm": {...}}`` (``adasp`` covers the regime table; ``hm``
    defaults to ``hbreid``'s). Cells with the same settings and data share one run. ``only`` keeps a subset
    of rows per table (``{"adasp": ["AdaSP", "Triplet"], "regime": ["AdaSP"]}``; regime rows by loss).
    """
    if set(tables) - set(TABLES):
        raise ValueError(f"unknown ablation tables {sorted(set(tables) - set(TABLES))}; choose from {list(TABLES)}")
    table_overrides = dict(table_overrides or {})
    unknown_families = set(table_overrides) - {"adasp", "hbreid", "hm"}
    if unknown_families:
        raise ValueError(f"table_overrides: unknown keys {sorted(unknown_families)}; use 'adasp', 'hbreid' and 'hm'")
    table_overrides.setdefault("hm", table_overrides.get("hbreid"))
    base = as_override_dict(overrides)
    family_overrides = {family: as_override_dict(table_overrides.get(family)) for family in ("adasp", "hbreid", "hm")}
    hbreid_root = hbreid_root or data_root
    hm_root = hm_root or hbreid_root
    grid: dict[str, dict] = {}
    rows: dict[str, dict[str, str]] = {}

    valid_rows = {"adasp": ADASP_ROWS, "regime": REGIME_LOSSES, "hbreid2": HBREID_TABLE2_ROWS,
                  "hbreid1": HBREID_TABLE1_ROWS, "hm": HM_ROWS}
    only = {table: set(labels) for table, labels in (only or {}).items()}
    for table, labels in only.items():
        valid = set(valid_rows.get(table, ()))
        if table not in TABLES or labels - valid:
            raise ValueError(f"only={{{table!r}: {sorted(labels)}}}: unknown table or rows; rows of {table!r}: {sorted(valid)}")

    def add(table: str, label: str, cell: Mapping[str, Any], root: str | None, rerank: bool = False) -> None:
        if table in only and label.split("@")[0] not in only[table]:
            return
        family = "hbreid" if table.startswith("hbreid") else table if table == "hm" else "adasp"
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
    if "regime" in tables:
        if not regime_roots or set(regime_roots) != set(ADASP_REGIMES):
            raise ValueError(f"the regime table needs regime_roots: {{regime: SynthReID folder}} for {list(ADASP_REGIMES)}")
        for regime in ADASP_REGIMES:
            for loss in REGIME_LOSSES:
                add("regime", f"{loss}@{regime}", ADASP_ROWS[loss], regime_roots[regime])
    hb_rerank = "hbreid2" in tables  # one run serves both tables, so +GS is re-ranked in both or in neither
    for table, cells in (("hbreid2", HBREID_TABLE2_ROWS), ("hbreid1", HBREID_TABLE1_ROWS)):
        if table in tables:
            for label, cell in cells.items():
                add(table, label, cell, hbreid_root, rerank=hb_rerank)
    if "hm" in tables:
        for label, cell in HM_ROWS.items():
            add("hm", label, cell, hm_root, rerank=hb_rerank and hm_root == hbreid_root)  # real data: shared runs
    # The manipulation checks read these runs' weights (reidlab.study.mechanisms): keep their checkpoints.
    for table, label in CHECKED_RUNS:
        if label in rows.get(table, {}):
            grid[rows[table][label]]["keep_checkpoints"] = True
    # Rename points to readable, stable folder names (first table and label that uses them).
    readable: dict[str, str] = {}
    for table, labels in rows.items():
        for label, name in labels.items():
            readable.setdefault(name, slug(f"{table}-" + label.replace("+", "").strip().replace(" ", "-")))
    grid = {readable[name]: params for name, params in grid.items()}
    rows = {table: {label: readable[name] for label, name in labels.items()} for table, labels in rows.items()}
    return grid, rows


def study_datasets(data_dir: str | os.PathLike, profile: StudyProfile, copies: Sequence[str] = STUDY_COPIES,
                   seed: int = STUDY_SYNTH_SEED) -> dict[str, str]:
    """Generate (or reuse) the profile's SynthReID copies under ``data_dir`` (``synthreid-<copy>``): the person-like
    and vehicle-like copies of the AdaSP claims and the HBReID tables' copy. Returns ``{copy: folder}``. Another
    generator ``seed`` (a validation copy: the same regimes, other identities) writes ``synthreid-<copy>-seed<seed>``."""
    from reidlab.data import synth

    suffix = "" if seed == STUDY_SYNTH_SEED else f"-seed{seed}"
    roots = {}
    for name in copies:
        root = Path(data_dir) / f"synthreid-{name}{suffix}"
        synth.generate(root, seed=seed, **profile.copy_knobs(name))
        roots[name] = str(root.resolve())
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
    checkpoint = run_folder(runs.resolve() / "backbone" / "seed0").checkpoint("last")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"the pretrained backbone {checkpoint} is missing although its run finished; "
                                f"delete {runs} to pretrain it again")
    return str(checkpoint)


def backbone_record(profile: StudyProfile, checkpoint: str | None) -> dict[str, Any]:
    """What claims.json says of the shared backbone: its checkpoint, its copy's regimes and its training loss
    (cross-entropy alone by default, so that no arm's metric loss is favoured by the starting point)."""
    if profile.pretrain is None or checkpoint is None:
        return {"checkpoint": None, "loss": None, "note": "no shared backbone: every run trains from its own initialisation"}
    loss = training_config(profile.preset, {**profile.overrides, **profile.pretrain.get("overrides", {})}).loss
    terms = ([f"{loss.ce_weight:g} x CE"] if loss.ce_weight > 0 else []) + (
        [f"{loss.metric_weight:g} x {loss.metric}"] if loss.metric != "none" and loss.metric_weight > 0 else [])
    return {"checkpoint": checkpoint, "loss": " + ".join(terms), "regimes": profile.pretrain.get("regimes", []),
            "epochs": profile.pretrain["epochs"]}


# The sources' claims. Margins (points) are the equivalence margins of "no-effect" (non-inferiority for "within"):
# for each HBReID claim no larger than the gain the source claims (HBReID Table 1 and 2: GS +0.8 over the
# baseline and 1.1 over the best other augmentation, HM +0.5, SR +0.2; re-ranking +14.3), so that no-effect
# excludes the claimed effect; for the AdaSP claims 1 point (the README's SP-H / SP-LH gaps are 1.4-3.7).
# Controls name the manipulation checks (reidlab.study.mechanisms) without which a claim is untestable.
_ADASP_CONTRAST = ("hard-positive-rise",)
_GS_CONTROLS = ("colour-unreliable-across-cameras", "texture-beats-colour-across-cameras")


def ablation_claims(rows: Mapping[str, Mapping[str, str]], checked: bool = True,
                    not_run: list[dict[str, str]] | None = None) -> list[Claim]:
    """The two sources' claims that the planned rows can test, as :class:`Claim` objects over point names.
    A claim whose rows were not planned (``tables`` / ``only``) is left out, and listed in ``not_run`` (when
    given) as ``{id, source, statement, reason}``, so that a study says which claims it did not test.
    ``checked=False`` drops the manipulation checks: on a real benchmark the mechanisms are the sources' own
    premises, not measured here."""
    claims: list[Claim] = []
    published = hbreid_claim_values()  # the source's MSMT17 numbers; the AdaSP claims here are about regimes

    def point(table: str, label: str) -> str | None:
        return rows.get(table, {}).get(label)

    def add(points: Sequence[str | None], **fields: Any) -> None:
        if all(points):
            claims.append(Claim(**{**fields, "controls": fields.get("controls", ()) if checked else (),
                                   "published": published.get(fields["id"])}))
        elif not_run is not None:
            not_run.append({"id": fields["id"], "source": fields["source"], "statement": fields["statement"],
                            "reason": "its arms are not in this study's plan (tables / only)"})

    def regime(loss: str, name: str) -> str | None:
        return point("regime", f"{loss}@{name}")

    sph_p, splh_p, sph_v, splh_v = regime("SP-H", "person"), regime("SP-LH", "person"), regime("SP-H", "vehicle"), regime("SP-LH", "vehicle")
    add([sph_p, splh_p], id="sph-beats-splh-person", source="AdaSP", arm=sph_p, reference=splh_p, controls=_ADASP_CONTRAST,
        statement="SP-H beats SP-LH on the person-like regime (persons in the README)")
    add([sph_v, splh_v], id="splh-beats-sph-vehicle", source="AdaSP", arm=splh_v, reference=sph_v, controls=_ADASP_CONTRAST,
        statement="SP-LH beats SP-H on the vehicle-like regime (vehicles in the README)")
    add([sph_p, splh_p, sph_v, splh_v], id="person-vehicle-interaction", source="AdaSP", combine="contrast",
        arm=[sph_p, splh_v], reference=[splh_p, sph_v], controls=_ADASP_CONTRAST,
        statement="SP-H's advantage over SP-LH is larger on persons than on vehicles (the person-vs-vehicle interaction)")
    for name in ADASP_REGIMES:
        ada, pair = regime("AdaSP", name), [regime("SP-H", name), regime("SP-LH", name)]
        add([ada, *pair], id=f"adasp-within-1-of-better@{name}", source="AdaSP", arm=ada, reference=pair,
            combine="within", margin=1.0, controls=_ADASP_CONTRAST,
            statement=f"AdaSP is within 1 mAP point of both SP-H and SP-LH on the {name}-like regime")
    add([point("adasp", "AdaSP"), point("adasp", "Triplet")], id="adasp-beats-triplet", source="AdaSP",
        arm=point("adasp", "AdaSP"), reference=point("adasp", "Triplet"), controls=("hard-positives@person",),
        statement="AdaSP beats the batch-hard triplet loss (person-like regime)")
    for arm, reference, claim_id, margin, controls, statement in (
        ("+GS", "baseline", "gs-beats-baseline", 0.5, _GS_CONTROLS,
         "+GS (grayscale patch replacement) beats the baseline (source: +0.8)"),
        ("+GS +SR", "+GS", "sr-beats-gs", 0.2, ("scene-decodable", "scene-hurts-retrieval"),
         "+GS +SR (scene removal) beats +GS (source: +0.2, the text's SR gain)"),
        ("+GS +HM +SR", "+GS +HM", "sr-beats-gs-hm", 0.2, ("scene-decodable", "scene-hurts-retrieval"),
         "+GS +HM +SR beats +GS +HM (source: 70.1 for both rows, no gain)"),
    ):
        add([point("hbreid2", arm), point("hbreid2", reference)], id=claim_id, source="HBReID", statement=statement,
            arm=point("hbreid2", arm), reference=point("hbreid2", reference), margin=margin, controls=controls)
    hm = "hm" if checked else "hbreid2"  # on a real benchmark the source's own Table 2 rows
    add([point(hm, "+GS +HM"), point(hm, "+GS")], id="hm-beats-gs", source="HBReID",
        arm=point(hm, "+GS +HM"), reference=point(hm, "+GS"), margin=0.5,
        controls=("batch-class-ratio", "hm-harder-negatives"),
        statement="+GS +HM (hard batch mining) beats +GS" + (", on the HM copy" if checked else "") + " (source: +0.5)")
    augmentations = [point("hbreid1", label) for label in ("+CJ", "+GB", "+GT")]
    add([point("hbreid1", "+GS"), *augmentations], id="gs-best-augmentation", source="HBReID",
        statement="GS beats each of the colour augmentations CJ / GB / GT (source: +0.8 against -0.3 at best)",
        arm=point("hbreid1", "+GS"), reference=augmentations, combine="best-of", margin=0.5, controls=_GS_CONTROLS)
    full = point("hbreid2", "+GS +HM +SR")
    add([full], id="rerank-raises-map", source="HBReID", arm=full, reference=full, metric="mAP_rerank",
        reference_metric="mAP", margin=1.0, controls=("gallery-true-matches",),
        statement="k-reciprocal re-ranking raises mAP (+GS +HM +SR; source: +14.3)")
    return claims

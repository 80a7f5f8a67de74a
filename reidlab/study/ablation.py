"""The ablation study as the ablation notebook runs it: the plan from a profile (copies, shared backbone, grid,
claims), then, once the sweep is done, the manipulation checks and the verdicts for ``claims.json``. The notebook
keeps only its parameters, the sweep call and the displays."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidlab.utils import atomic_write

from .claims import Claim, arm_summary, claims_json, evaluate_claims
from .mechanisms import measure_controls
from .plan import ADASP_REGIMES, CHECKED_RUNS, TABLES, ablation_claims, ablation_plan, backbone_record, study_backbone, study_datasets
from .profile import STUDY_COPIES, STUDY_SYNTH_SEED, StudyProfile, load_profile
from .records import source_revisions, write_page_metrics
from .stats import arm_values
from .sweep import check_seeds
from .training import training_config

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class AblationSetup:
    """What a study's sweep and verdicts need: the profile, the seeds, every run's overrides, the SynthReID copies
    (empty on a real dataset), the shared backbone's checkpoint, the grid, the rows per table, the claims and
    the claims left out of the plan."""

    settings: StudyProfile
    seeds: list[int]
    preset: str
    overrides: dict[str, Any]
    roots: dict[str, str]
    backbone: str | None
    tables: list[str]
    grid: dict[str, dict]
    rows: dict[str, dict[str, str]]
    claims: list[Claim]
    claims_not_run: list[dict[str, str]]
    runs_root: Path
    workers: int


def prepare_ablation(
    profile: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
    preset: str | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    data_dir: str | os.PathLike | None = None,
    tables: Sequence[str] = TABLES,
    only: Mapping[str, Sequence[str]] | None = None,
    runs_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    executor: str = "local",
    cluster: Any = None,
    synth_seed: int = STUDY_SYNTH_SEED,
    print_fn: Callable[[str], None] = print,
) -> AblationSetup:
    """Generate (or reuse) the profile's SynthReID copies and shared backbone and plan the study's grid and claims.
    ``synth_seed``: the copies' generator seed (another one draws validation copies: ``reidlab.study.validation``).

    With ``data_root`` (a real dataset) the tables train there with ``preset`` and ``overrides`` only: no copies,
    no backbone, no regime table (a real dataset is one regime), and claims without manipulation checks."""
    settings = load_profile(profile)
    seeds = check_seeds(settings.seeds if seeds is None else seeds)
    output_dir, overrides, tables = Path(output_dir), dict(overrides or {}), list(tables)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir) if data_dir else output_dir / "data"
    preset = preset or settings.preset
    roots: dict[str, str] = {}
    backbone = regime_roots = hbreid_root = hm_root = table_overrides = None
    if data_root is not None:
        base_overrides = overrides
        if "regime" in tables:
            tables.remove("regime")
            print_fn("a real dataset is one regime: the person-vs-vehicle regime table needs SynthReID; skipped")
        if "hm" in tables:  # the HM claim takes Table 2's rows there
            tables.remove("hm")
    else:
        base_overrides, table_overrides = {**settings.overrides, **overrides}, settings.table_overrides
        needed = {"hbreid": any(t.startswith("hbreid") for t in tables),
                  "hm": "hm" in tables and (only or {}).get("hm") != []}
        copies = [c for c in STUDY_COPIES if needed.get(c, True)]
        roots = study_datasets(data_dir, settings, copies, seed=synth_seed)
        regime_roots, hbreid_root = {name: roots[name] for name in ADASP_REGIMES}, roots.get("hbreid")
        hm_root = roots.get("hm")
        data_root = roots["person"]
        backbone = study_backbone(settings, data_dir, print_fn=print_fn, executor=executor, cluster=cluster)
        if backbone and "model.pretrained" not in overrides:  # every run fine-tunes it, unless overrides name weights
            base_overrides["model.pretrained"] = backbone
    grid, rows = ablation_plan(tables, preset, base_overrides, epochs, data_root, regime_roots, only, hbreid_root,
                               table_overrides, hm_root)
    not_run: list[dict[str, str]] = []
    claims = ablation_claims(rows, checked=bool(roots), not_run=not_run)
    return AblationSetup(settings, seeds, preset, base_overrides, roots, backbone, tables, grid, rows, claims, not_run,
                         Path(runs_dir) if runs_dir else output_dir / "runs" / settings.name,  # profiles never mix runs
                         workers or settings.workers)


def study_verdicts(frame: pd.DataFrame, setup: AblationSetup, confidence: float = 0.95) -> dict[str, Any]:
    """The manipulation checks (on the copies, the backbone and the first seed's HM-table +GS +HM and Table 2
    baseline runs) and
    every claim's verdict, for a frame flagged by ``with_untrained_flags``. Returns ``{"controls", "results",
    "claims_json", "summary"}``: ``claims_json`` ready for ``json.dumps(allow_nan=False)``, ``summary`` the
    headline numbers of the notebook's metrics.json (runs, failed, untrained, reference mAP, median AdaSP
    half-width, chance mAP per split, verdict counts)."""
    import pandas as pd

    controls: dict[str, dict[str, Any]] = {}
    if setup.roots:
        sampler = training_config(setup.preset, setup.overrides).sampler
        first = {label: setup.runs_root / setup.rows[table][label] / f"seed{setup.seeds[0]}"
                 for table, label in CHECKED_RUNS if label in setup.rows.get(table, {})}
        controls = measure_controls(setup.roots, Path(setup.backbone).parents[1] if setup.backbone else None,
                                    first.get("+GS +HM"), first.get("baseline"), sampler.p, sampler.k)
    results = evaluate_claims(frame, setup.claims, controls=controls, seeds=setup.seeds, confidence=confidence)
    reference = setup.rows.get("adasp", {}).get("AdaSP")
    reference_mAP = float(arm_values(frame, reference, "mAP", 100).mean()) if reference else math.nan
    points = [point for labels in setup.rows.values() for point in labels.values()]
    payload = claims_json(setup.seeds, reference_mAP, results, profile=setup.settings.name,
                          source=source_revisions(frame), arms=arm_summary(frame, points, setup.seeds),
                          controls=controls, not_run=setup.claims_not_run,
                          backbone=backbone_record(setup.settings, setup.backbone) if setup.roots else None)
    claims = pd.DataFrame(results, columns=["source", "ci_low", "ci_high", "verdict"])
    half_widths = ((claims["ci_high"] - claims["ci_low"]) / 2)[claims["source"] == "AdaSP"]
    ok = frame["status"] == "ok"
    chance = frame[ok].groupby("param.data_root")["chance_mAP"].first()
    summary = {"controls_failed": sorted(name for name, check in controls.items() if not check["passed"]),
               "runs": int(len(frame)), "runs_failed": int((~ok).sum()),
               "runs_untrained": int((ok & frame["untrained"].eq(True)).sum()), "reference_mAP": reference_mAP,
               "median_ci_half_width_adasp": float(half_widths.median()),
               "chance_mAP": {Path(root).name: float(c) for root, c in chance.items()},
               "verdicts": {k: int(v) for k, v in claims["verdict"].value_counts().items()}}
    return {"controls": controls, "results": results, "claims_json": payload, "summary": summary}


# --------------------------------------------------------------------------------------------------------------
# The notebook's pages: each returns what the notebook displays; the files go into ``out``


@dataclass
class RunsOverview:
    """The sweep's runs as the page shows them: flagged (``untrained``), the chance level per test split (%), the
    runs that failed and those that did not learn, and a one-line summary."""

    frame: pd.DataFrame
    chance: pd.DataFrame
    failed: pd.DataFrame
    untrained: pd.DataFrame
    summary: str

    @property
    def problems(self) -> list[pd.DataFrame]:
        """The failed runs and the runs that did not learn, where there are any."""
        return [table for table in (self.failed, self.untrained) if len(table)]


def runs_overview(frame: pd.DataFrame, out: str | os.PathLike, untrained_margin: float) -> RunsOverview:
    """Flag the runs within ``untrained_margin`` mAP points of their split's chance level (they still count, with
    their value) and write ``runs.csv``."""
    from .stats import with_untrained_flags

    chance = frame[frame["status"] == "ok"].groupby("param.data_root")[["chance_mAP", "chance_rank1"]].first()
    chance = (100 * chance.rename(index=lambda root: Path(root).name, columns={
        "chance_mAP": "chance mAP (%)", "chance_rank1": "chance rank-1 (%)"})).rename_axis("test split")
    frame = with_untrained_flags(frame, frame["chance_mAP"], margin_points=untrained_margin)
    atomic_write(Path(out) / "runs.csv", frame.to_csv(index=False))
    ok = frame["status"] == "ok"
    failed, untrained = frame[~ok][["run", "error"]], frame[ok & frame["untrained"]][["run", "mAP", "untrained_reason"]]
    minutes = frame["duration_s"].fillna(0).sum() / 60
    summary = (f"{len(frame)} runs: {int(ok.sum())} ok, {len(failed)} failed, {len(untrained)} did not learn; "
               f"{minutes:.1f} min of training in total (per-run results: {Path(out) / 'runs.csv'})"
               + ("\nfailed runs (below) cannot be paired; each claim that needs one lists it with a sensitivity line "
                  "at chance" if len(failed) else "")
               + ("\nruns that did not learn (below) count against their arm, with their value" if len(untrained) else ""))
    return RunsOverview(frame, chance, failed, untrained, summary)


def verdict_page(frame: pd.DataFrame, setup: AblationSetup, out: str | os.PathLike,
                 confidence: float = 0.95) -> dict[str, Any]:
    """:func:`study_verdicts`, with ``claims.json`` written to ``out`` and what the page shows beside it: the claims
    and the manipulation checks as tables (``claims``, ``checks``: None without checks), the lines on lost runs and
    claims not run (``notes``) and the headline (``headline``, Markdown)."""
    import json

    import pandas as pd

    verdicts = study_verdicts(frame, setup, confidence)
    atomic_write(Path(out) / "claims.json", json.dumps(verdicts["claims_json"], indent=2, allow_nan=False) + "\n")
    claims = pd.DataFrame(verdicts["results"], columns=[
        "id", "source", "statement", "delta", "ci_low", "ci_high", "margin", "n_pairs", "p", "p_holm",
        "p_holm_equivalence", "controls", "verdict"]).set_index("id")
    notes = []
    for record in verdicts["results"]:
        if record.get("lost"):
            s = record["sensitivity"]
            notes.append(f"{record['id']}: lost runs {record['lost']}; with them at chance: Δ {s['delta']:+.2f} "
                         f"[{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] over {s['n_pairs']} pairs")
    notes += [f"not run: {claim['statement']} ({claim['reason']})" for claim in setup.claims_not_run]
    summary = verdicts["summary"]
    headline = (f"**{len(claims)} claims:** " + ", ".join(f"{v} {k}" for k, v in summary["verdicts"].items())
                + f". Reference model (AdaSP on the person-like copy): **{summary['reference_mAP']:.1f} mAP** against a "
                + "chance level of " + ", ".join(f"{100 * c:.1f}" for c in summary["chance_mAP"].values())
                + " mAP on the study's splits. Median 95% CI half-width of the AdaSP claims: "
                + f"**{summary['median_ci_half_width_adasp']:.2f} points**.")
    checks = pd.DataFrame(verdicts["controls"].values()).set_index("name") if verdicts["controls"] else None
    return {**verdicts, "claims": claims, "checks": checks, "notes": notes, "headline": headline}


# Per source table: the row every other is paired against, the metrics shown (re-ranked ones where measured) and
# the caption's start.
TABLE_PAGES = {
    "adasp": ("Triplet", ("mAP", "rank1"), "AdaSP README shape"),
    "hbreid2": ("baseline", ("mAP", "rank1", "mAP_rerank", "rank1_rerank"), "HBReID Table 2 shape"),
    "hbreid1": ("Default", ("mAP",), "HBReID Table 1 shape"),
    "hm": ("+GS", ("mAP", "rank1"), "Hard batch mining on the HM copy"),
}


def table_page(frame: pd.DataFrame, rows: Mapping[str, Mapping[str, str]], table: str, out: str | os.PathLike,
               confidence: float = 0.95, print_fn: Callable[[str], None] = print) -> tuple[pd.DataFrame, tuple, str]:
    """One source table as paired differences to its reference row (the first row when ``only`` left it out),
    written to ``table_<table>.csv``: (the table, its metrics, its caption). A warning goes to ``print_fn`` when
    its runs differ in provenance."""
    from .records import provenance_differences
    from .stats import paired_table

    reference, metrics, title = TABLE_PAGES[table]
    metrics = tuple(m for m in metrics if m in frame.columns)
    labels = rows[table]
    reference = reference if reference in labels else next(iter(labels))
    differing = provenance_differences(frame[frame["point"].isin(list(labels.values()))])
    if differing:
        print_fn("warning: the runs of this table differ in " + "; ".join(f"{k}: {v}" for k, v in differing.items()))
    result = paired_table(frame, labels, reference, metrics=metrics, confidence=confidence)
    atomic_write(Path(out) / f"table_{table}.csv", result.to_csv())
    seeds = frame["seed"].nunique()
    caption = (f"{title}: mean ± {confidence:.0%} CI over {seeds} seeds; Δ paired vs {reference}"
               + (" (†: re-ranked)" if any(m.endswith("_rerank") for m in metrics) else ""))
    return result, metrics, caption


def regime_page(frame: pd.DataFrame, rows: Mapping[str, Mapping[str, str]],
                confidence: float = 0.95) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The regime table: mAP per (loss, regime, seed) for the plot, and per regime the losses paired against
    SP-LH (regimes without SP-LH and another loss are left out)."""
    import pandas as pd

    from .plan import ADASP_REGIMES, REGIME_LOSSES
    from .stats import paired_table

    records = []
    for label, point in rows.get("regime", {}).items():
        loss, regime = label.split("@")
        for seed, value in arm_values(frame, point, "mAP", 100).items():
            records.append({"loss": loss, "regime": regime, "seed": seed, "mAP": value / 100})
    by_regime = pd.DataFrame(records, columns=["loss", "regime", "seed", "mAP"]).assign(status="ok")
    tables = {}
    for regime in ADASP_REGIMES:
        labels = {loss: rows["regime"][f"{loss}@{regime}"] for loss in REGIME_LOSSES
                  if f"{loss}@{regime}" in rows.get("regime", {})}
        if "SP-LH" in labels and len(labels) > 1:
            tables[regime] = paired_table(frame, labels, "SP-LH", metrics=("mAP",), confidence=confidence)
    return by_regime, tables


def write_ablation_metrics(out: str | os.PathLike, summary: Mapping[str, Any], setup: AblationSetup) -> dict[str, Any]:
    """The page's final record (the summary, seeds, tables, profile, runs folder and the figures it drew)."""
    return write_page_metrics(out, {**summary, "seeds": setup.seeds, "tables": setup.tables,
                                    "profile": setup.settings.name, "runs_dir": str(setup.runs_root)})

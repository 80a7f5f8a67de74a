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

from .claims import Claim, arm_summary, claims_json, evaluate_claims
from .mechanisms import measure_controls
from .plan import ADASP_REGIMES, TABLES, ablation_claims, ablation_plan, backbone_record, study_backbone, study_datasets
from .profile import STUDY_COPIES, STUDY_SYNTH_SEED, StudyProfile, load_profile
from .records import source_revisions
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
    data_dir = Path(data_dir) if data_dir else output_dir / "data"
    preset = preset or settings.preset
    roots: dict[str, str] = {}
    backbone = regime_roots = hbreid_root = table_overrides = None
    if data_root is not None:
        base_overrides = overrides
        if "regime" in tables:
            tables.remove("regime")
            print_fn("a real dataset is one regime: the person-vs-vehicle regime table needs SynthReID; skipped")
    else:
        base_overrides, table_overrides = {**settings.overrides, **overrides}, settings.table_overrides
        copies = [c for c in STUDY_COPIES if c != "hbreid" or any(t.startswith("hbreid") for t in tables)]
        roots = study_datasets(data_dir, settings, copies, seed=synth_seed)
        regime_roots, hbreid_root = {name: roots[name] for name in ADASP_REGIMES}, roots.get("hbreid")
        data_root = roots["person"]
        backbone = study_backbone(settings, data_dir, print_fn=print_fn, executor=executor, cluster=cluster)
        if backbone and "model.pretrained" not in overrides:  # every run fine-tunes it, unless overrides name weights
            base_overrides["model.pretrained"] = backbone
    grid, rows = ablation_plan(tables, preset, base_overrides, epochs, data_root, regime_roots, only, hbreid_root,
                               table_overrides)
    not_run: list[dict[str, str]] = []
    claims = ablation_claims(rows, checked=bool(roots), not_run=not_run)
    return AblationSetup(settings, seeds, preset, base_overrides, roots, backbone, tables, grid, rows, claims, not_run,
                         Path(runs_dir) if runs_dir else output_dir / "runs" / settings.name,  # profiles never mix runs
                         workers or settings.workers)


def study_verdicts(frame: pd.DataFrame, setup: AblationSetup, confidence: float = 0.95) -> dict[str, Any]:
    """The manipulation checks (on the copies, the backbone and the first seed's +GS +HM and baseline runs) and
    every claim's verdict, for a frame flagged by ``with_untrained_flags``. Returns ``{"controls", "results",
    "claims_json", "summary"}``: ``claims_json`` ready for ``json.dumps(allow_nan=False)``, ``summary`` the
    headline numbers of the notebook's metrics.json (runs, failed, untrained, reference mAP, median AdaSP
    half-width, chance mAP per split, verdict counts)."""
    import pandas as pd

    controls: dict[str, dict[str, Any]] = {}
    if setup.roots:
        sampler = training_config(setup.preset, setup.overrides).sampler
        hbreid = setup.rows.get("hbreid2", {})
        first = {label: setup.runs_root / hbreid[label] / f"seed{setup.seeds[0]}" for label in ("+GS +HM", "baseline")
                 if label in hbreid}
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

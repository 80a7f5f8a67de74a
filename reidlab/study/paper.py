"""The papers' studies on the real benchmarks (``reidlab report --profile paper --datasets datasets.yaml``).

The AdaSP README table (SP-H, SP-LH, AdaSP) on every given dataset, each with that dataset's paper recipe (the
``adasp_<dataset>`` presets), and HBReID Tables 1 and 2 on MSMT17 (``hbreid_msmt17``); their claims under the
SynthReID study's verdict rule, with the published numbers beside the measured ones; and the cost in GPU-hours,
from a short timed calibration, before anything is submitted. The mechanisms are the sources' own premises about
their benchmarks here, so the claims carry no manipulation checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidlab.utils import atomic_write
from reidlab.utils.stats import mean_ci

from .io import slug
from .claims import Claim, arm_summary, claims_json, evaluate_claims
from .plan import ablation_claims, ablation_plan
from .profile import load_profile_data, load_typed_profile
from .published import published, published_difference, published_metric, published_tables
from .records import source_revisions
from .stats import arm_values
from .sweep import check_seeds, sweep
from .training import train_run, training_config

if TYPE_CHECKING:
    import pandas as pd

# Registry name -> (the AdaSP preset with that dataset's paper recipe, person or vehicle).
PAPER_DATASETS: dict[str, tuple[str, str]] = {
    "market1501": ("adasp_market1501", "person"),
    "dukemtmc": ("adasp_dukemtmc", "person"),
    "msmt17": ("adasp_msmt17", "person"),
    "veri776": ("adasp_veri776", "vehicle"),
    "vehicleid": ("adasp_vehicleid", "vehicle"),
}
# The README table's columns: column -> (dataset, the runs' metric). VehicleID's two columns score the same runs on
# its 800-vehicle ("small", the preset's) and 1,600-vehicle ("medium") test sets.
ADASP_COLUMNS: dict[str, tuple[str, str]] = {
    "msmt17": ("msmt17", "mAP"), "market1501": ("market1501", "mAP"), "dukemtmc": ("dukemtmc", "mAP"),
    "veri776": ("veri776", "mAP"), "vehicleid": ("vehicleid", "rank1"), "vehicleid_medium": ("vehicleid", "rank1_medium"),
}
# Evaluations of a dataset's runs beyond their preset's (training.train_run's ``evaluations``).
EXTRA_EVALUATIONS = {"vehicleid": {"medium": {"data.dataset_kwargs.test_size": 1600}}}
HBREID_DATASET, HBREID_PRESET = "msmt17", "hbreid_msmt17"
PAPER_LOSSES = {"SP-H": "sp-h", "SP-LH": "sp-lh", "AdaSP": "adasp"}
PAPER_TABLES = ("adasp", "hbreid2", "hbreid1")
# The HBReID rows switch GS on where the source does, and re-rank its final row only (†): the preset does both in
# every run, so the rows start from neither.
_HBREID_BASE = {"data.aug.gray_patch_p": 0.0, "eval.rerank": False}


@dataclass
class PaperProfile:
    """What ``reidlab report --profile paper`` runs (``reidlab/configs/study/paper.yaml``; ``--set key=value``
    changes one field, ``--set overrides.epochs=1`` one training setting of every run).

    ``overrides`` apply to every run, ``adasp_overrides`` / ``hbreid_overrides`` on top of them to one source's
    tables. ``calibration_steps``: training steps per recipe of the timed calibration behind the cost estimate.
    """

    name: str
    kind: str = "paper"
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    workers: int = 1
    tables: list[str] = field(default_factory=lambda: list(PAPER_TABLES))
    overrides: dict[str, Any] = field(default_factory=dict)
    adasp_overrides: dict[str, Any] = field(default_factory=dict)
    hbreid_overrides: dict[str, Any] = field(default_factory=dict)
    calibration_steps: int = 200

    def __post_init__(self) -> None:
        self.seeds = check_seeds(self.seeds, f"paper profile {self.name!r}: seeds")
        unknown = sorted(set(self.tables) - set(PAPER_TABLES))
        if unknown or not self.tables:
            raise ValueError(f"paper profile {self.name!r}: tables must be a non-empty subset of {list(PAPER_TABLES)}"
                             + (f"; unknown {unknown}" if unknown else ""))
        if self.workers < 1 or self.calibration_steps < 1:
            raise ValueError(f"paper profile {self.name!r}: workers and calibration_steps must be >= 1")

    @property
    def device(self) -> str:
        return str(self.overrides.get("device", "cpu"))


def load_paper_profile(name: str | os.PathLike = "paper", sets: Sequence[str] = ()) -> PaperProfile:
    """A paper profile by name or YAML path, with ``sets`` (``["seeds=[0,1]", "overrides.epochs=1"]``) applied."""
    path, data = load_profile_data(name, sets, PaperProfile, mapping_fields=("overrides", "adasp_overrides",
                                                                             "hbreid_overrides"))
    return load_typed_profile(PaperProfile, path, data)


@dataclass
class DatasetsFile:
    """``datasets.yaml``: where the benchmarks are and where the presets' pretrained weights are.

    ``datasets``: registry name -> folder (any subset of :data:`PAPER_DATASETS`). ``weights``: the file name a
    preset's ``model.pretrained`` names (e.g. ``resnet50_ibn_a-d9d0bb7b.pth``) -> its local path."""

    datasets: dict[str, Path]
    weights: dict[str, Path]


def load_datasets_file(path: str | os.PathLike) -> DatasetsFile:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"datasets file {path} not found; write one: datasets: {{market1501: /data/Market-1501, ...}}, "
                         "weights: {resnet50_ibn_a-d9d0bb7b.pth: /weights/...}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - {"datasets", "weights"})
    if unknown or not isinstance(data.get("datasets"), dict) or not data["datasets"]:
        raise ValueError(f"{path}: needs 'datasets' (a mapping of dataset names to folders) and takes only 'datasets' "
                         "and 'weights'" + (f"; unknown keys {unknown}" if unknown else ""))
    names = sorted(set(data["datasets"]) - set(PAPER_DATASETS))
    if names:
        raise ValueError(f"{path}: unknown dataset(s) {names}; the papers' datasets are {list(PAPER_DATASETS)}")
    datasets = {name: (path.parent / str(folder)).resolve() for name, folder in data["datasets"].items()}
    weights = {str(name): (path.parent / str(file)).resolve() for name, file in (data.get("weights") or {}).items()}
    for kind, entries in (("dataset folder", datasets), ("weight file", weights)):
        for name, location in entries.items():
            if not location.exists():
                raise ValueError(f"{path}: {kind} of {name!r} does not exist: {location}")
    return DatasetsFile(datasets, weights)


@dataclass
class PaperSetup:
    """The planned study: every run's parameters (``grid``), the rows of each table (``rows[table][label]`` ->
    point; AdaSP labels are ``"<loss>@<dataset>"``), the claims, those left out with their reason, and the
    recipe of each point (what the calibration times)."""

    profile: PaperProfile
    datasets: DatasetsFile
    grid: dict[str, dict]
    rows: dict[str, dict[str, str]]
    claims: list[Claim]
    not_run: list[dict[str, str]]
    recipes: dict[str, str]
    runs_root: Path

    def table_points(self, table: str) -> list[str]:
        return list(dict.fromkeys(self.rows.get(table, {}).values()))


def _with_weights(preset: str, overrides: dict[str, Any], weights: Mapping[str, Path],
                  needed: dict[str, list[str]]) -> dict[str, Any]:
    """``overrides`` with ``model.pretrained`` pointing at the local copy of the file the preset names."""
    pretrained = training_config(preset, overrides).model.pretrained
    if not pretrained or Path(pretrained).is_file():
        return overrides
    name = Path(pretrained).name
    if name in weights:
        return {**overrides, "model.pretrained": str(weights[name])}
    needed.setdefault(name, []).append(preset)
    return overrides


def prepare_paper(profile: PaperProfile, datasets: DatasetsFile, output_dir: str | os.PathLike) -> PaperSetup:
    """Plan the study on the given datasets: every run's config is built (so a bad setting fails here, before any
    submission) and every dataset is read once (so a wrong folder does too)."""
    from reidlab.data import build_dataset

    grid: dict[str, dict] = {}
    rows: dict[str, dict[str, str]] = {}
    recipes: dict[str, str] = {}
    needed: dict[str, list[str]] = {}
    given = [name for name in PAPER_DATASETS if name in datasets.datasets]
    if "adasp" in profile.tables:
        for dataset in given:
            preset = PAPER_DATASETS[dataset][0]
            for label, loss in PAPER_LOSSES.items():
                overrides = _with_weights(preset, {**profile.overrides, **profile.adasp_overrides, "loss.metric": loss},
                                          datasets.weights, needed)
                point = slug(f"adasp-{dataset}-{label}")
                grid[point] = {"preset": preset, "overrides": overrides, "data_root": str(datasets.datasets[dataset])}
                if dataset in EXTRA_EVALUATIONS:
                    grid[point]["evaluations"] = EXTRA_EVALUATIONS[dataset]
                rows.setdefault("adasp", {})[f"{label}@{dataset}"] = point
                recipes[point] = f"adasp@{dataset}"
    hbreid_tables = [t for t in ("hbreid2", "hbreid1") if t in profile.tables]
    if hbreid_tables and HBREID_DATASET in datasets.datasets:
        base = _with_weights(HBREID_PRESET, {**profile.overrides, **profile.hbreid_overrides, **_HBREID_BASE},
                             datasets.weights, needed)
        hb_grid, hb_rows = ablation_plan(hbreid_tables, HBREID_PRESET, base,
                                         data_root=str(datasets.datasets[HBREID_DATASET]))
        final = hb_rows.get("hbreid2", {}).get("+GS +HM +SR")
        for point, params in hb_grid.items():
            params.pop("keep_checkpoints", None)  # SynthReID's manipulation checks read them; nothing does here
            params["rerank"] = point == final  # the source re-ranks its final row only
            recipes[point] = f"hbreid@{HBREID_DATASET}"
        grid.update(hb_grid)
        rows.update(hb_rows)
    if needed:
        listing = ", ".join(f"{name} (for {', '.join(sorted(set(presets)))})" for name, presets in needed.items())
        raise ValueError(f"datasets file: weights: no local path for {listing}; add e.g. "
                         f"'{next(iter(needed))}: /path/to/it' under weights, or set overrides.model.pretrained=null")
    if not grid:
        raise ValueError(f"nothing to run: tables {profile.tables} need "
                         + ("any of " + ", ".join(PAPER_DATASETS) if "adasp" in profile.tables else HBREID_DATASET)
                         + f" in the datasets file, which gives {list(datasets.datasets)}")
    for params in grid.values():
        training_config(params["preset"], params["overrides"], data_root=params["data_root"])
    for dataset in given:
        kwargs = training_config(PAPER_DATASETS[dataset][0], profile.overrides).data.dataset_kwargs
        build_dataset(dataset, str(datasets.datasets[dataset]), **kwargs)
    not_run: list[dict[str, str]] = []
    claims = paper_claims(rows, given, not_run)
    return PaperSetup(profile, datasets, grid, rows, claims, not_run, recipes,
                      Path(output_dir) / "runs" / profile.name)


def paper_claims(rows: Mapping[str, Mapping[str, str]], datasets: Sequence[str],
                 not_run: list[dict[str, str]]) -> list[Claim]:
    """The claims the planned rows can test, each with its published value; the others go to ``not_run`` with
    the reason (a dataset not given, a table not run)."""
    claims: list[Claim] = []
    adasp = rows.get("adasp", {})

    def point(loss: str, dataset: str) -> str | None:
        return adasp.get(f"{loss}@{dataset}")

    def skip(claim_id: str, source: str, statement: str, reason: str) -> None:
        not_run.append({"id": claim_id, "source": source, "statement": statement, "reason": reason})

    for column, (dataset, metric) in ADASP_COLUMNS.items():
        kind = PAPER_DATASETS[dataset][1]
        better, worse = ("SP-H", "SP-LH") if kind == "person" else ("SP-LH", "SP-H")
        reason = f"{dataset} is not in the datasets file" if dataset not in datasets else "the adasp table is not run"
        statement = f"{better} beats {worse} on {column} ({kind}s in the README)"
        claim_id = f"{better.lower()}-beats-{worse.lower()}@{column}"
        if point(better, dataset):
            claims.append(Claim(id=claim_id, source="AdaSP", statement=statement, arm=point(better, dataset),
                                reference=point(worse, dataset), metric=metric,
                                published=published_difference("adasp", better, worse, column)))
        else:
            skip(claim_id, "AdaSP", statement, reason)
        statement = f"AdaSP is within 1 {published_metric('adasp', column)} point of both SP-H and SP-LH on {column}"
        if point("AdaSP", dataset):
            competitors = [point("SP-H", dataset), point("SP-LH", dataset)]
            gaps = [published("adasp", "AdaSP", column) - published("adasp", loss, column) for loss in ("SP-H", "SP-LH")]
            claims.append(Claim(id=f"adasp-within-1-of-better@{column}", source="AdaSP", statement=statement,
                                arm=point("AdaSP", dataset), reference=competitors, combine="within", margin=1.0,
                                metric=metric, published=round(min(gaps) + 1.0, 1)))
        else:
            skip(f"adasp-within-1-of-better@{column}", "AdaSP", statement, reason)
    interaction = _interaction(adasp, datasets)
    if isinstance(interaction, Claim):
        claims.append(interaction)
    else:
        skip("person-vehicle-interaction", "AdaSP", _INTERACTION_STATEMENT, interaction)
    hbreid_not_run: list[dict[str, str]] = []
    claims += [claim for claim in ablation_claims(rows, checked=False, not_run=hbreid_not_run)
               if claim.source == "HBReID"]
    reason = (f"{HBREID_DATASET} is not in the datasets file" if HBREID_DATASET not in datasets
              else "its table is not run (tables)")
    not_run += [{**entry, "reason": reason} for entry in hbreid_not_run if entry["source"] == "HBReID"]
    return claims


_INTERACTION_STATEMENT = ("SP-H's advantage over SP-LH is larger on persons than on vehicles: the mean over person "
                          "datasets of (SP-H - SP-LH) minus the same mean over vehicle datasets (VehicleID by its "
                          "small test set)")


def _interaction(adasp: Mapping[str, str], datasets: Sequence[str]) -> Claim | str:
    """The person-vs-vehicle interaction over the given datasets (each in its published metric), or why not."""
    kinds = {kind: [d for d in datasets if PAPER_DATASETS[d][1] == kind and f"SP-H@{d}" in adasp]
             for kind in ("person", "vehicle")}
    if not kinds["person"] or not kinds["vehicle"]:
        return "needs at least one person and one vehicle dataset in the adasp table"
    arm, reference, weights, metrics = [], [], {}, {}
    published_value = 0.0
    for kind, sign in (("person", 1), ("vehicle", -1)):
        for dataset in kinds[kind]:
            sph, splh = adasp[f"SP-H@{dataset}"], adasp[f"SP-LH@{dataset}"]
            arm.append(sph if sign > 0 else splh)
            reference.append(splh if sign > 0 else sph)
            weights.update({sph: 1 / len(kinds[kind]), splh: 1 / len(kinds[kind])})
            metrics.update({sph: ADASP_COLUMNS[dataset][1], splh: ADASP_COLUMNS[dataset][1]})
            published_value += sign * published_difference("adasp", "SP-H", "SP-LH", dataset) / len(kinds[kind])
    return Claim(id="person-vehicle-interaction", source="AdaSP", statement=_INTERACTION_STATEMENT, arm=arm,
                 reference=reference, combine="contrast", term_metrics=metrics, weights=weights,
                 published=round(published_value, 2))


# --------------------------------------------------------------------------------------------------------------
# Cost before work

_CALIBRATION_KEYS = ("seconds_per_step", "steps_per_epoch", "eval_seconds", "images_per_second", "peak_gpu_memory_mb")


def calibrate(setup: PaperSetup, output_dir: str | os.PathLike, executor: str = "local", cluster: Any = None,
              print_fn: Callable[[str], None] | None = print) -> dict[str, dict[str, Any]]:
    """Time each recipe (dataset x preset): ``calibration_steps`` training steps of its most expensive row and one
    evaluation, through the study's executor (so on a cluster, on its nodes). Finished calibrations are reused.
    Returns recipe -> the run's cost records (``seconds_per_step``, ``steps_per_epoch``, ``eval_seconds``, ...)."""
    from .records import collect

    chosen: dict[str, str] = {}
    for point, recipe in setup.recipes.items():  # the last row of each recipe: AdaSP, +GS +HM +SR (or the last planned)
        chosen[recipe] = point
    grid, names = {}, {}
    for recipe, point in chosen.items():
        params = setup.grid[point]
        params = {"preset": params["preset"], "data_root": params["data_root"],
                  "overrides": {**params["overrides"], "epochs": 1, "eval.every": 0,
                                "max_iters_per_epoch": setup.profile.calibration_steps}}
        # one folder per recipe and setting: a changed setting calibrates afresh, an unchanged one is reused
        digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
        names[recipe] = slug(f"{recipe.replace('@', '-')}-{digest}")
        grid[names[recipe]] = params
    root = Path(output_dir) / "calibration"
    sweep(grid, [0], notebook=train_run, output_root=root, print_fn=print_fn, executor=executor, cluster=cluster,
          progress=False)
    frame = collect(root)
    by_point = {row["point"]: row for _, row in frame.iterrows()}
    result = {}
    for recipe in chosen:
        row = by_point.get(names[recipe])
        if row is None or row["status"] != "ok":
            error = "" if row is None else str(row.get("error") or "").splitlines()[-1:]
            raise ValueError(f"the calibration run of {recipe} failed ({''.join(error) or 'no record'}); fix the "
                             f"setting and run again (its folder: {root / names[recipe]})")
        result[recipe] = {key: None if _missing(row.get(key)) else float(row[key]) for key in _CALIBRATION_KEYS}
        result[recipe]["device"] = row.get("prov.device")
    return result


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def estimate_cost(setup: PaperSetup, calibration: Mapping[str, Mapping[str, Any]], gpus_per_run: int = 1) -> dict:
    """Per table and in total: runs and hours, from each run's epochs and evaluations and its recipe's timed step
    and evaluation (a re-ranked run evaluates twice). ``gpu_hours`` = hours x ``gpus_per_run``."""
    tables: dict[str, dict[str, float]] = {}
    seeds, counted = len(setup.profile.seeds), set()
    for table in setup.rows:
        hours, points = 0.0, [p for p in setup.table_points(table) if p not in counted]  # shared rows train once
        counted.update(points)
        for point in points:
            params, cost = setup.grid[point], calibration[setup.recipes[point]]
            config = training_config(params["preset"], params["overrides"], data_root=params["data_root"])
            every = config.eval.every
            evaluations = 1 + (config.epochs // every - (config.epochs % every == 0) if every else 0)
            evaluations += (1 if params.get("rerank") else 0) + len(params.get("evaluations", {}))
            seconds = (cost["steps_per_epoch"] * config.epochs * cost["seconds_per_step"]
                       + evaluations * (cost["eval_seconds"] or 0.0))
            hours += seconds * seeds / 3600
        tables[table] = {"runs": len(points) * seeds, "hours": hours}
    total = sum(t["hours"] for t in tables.values())
    return {"tables": tables, "runs": sum(t["runs"] for t in tables.values()), "hours": total,
            "gpus_per_run": gpus_per_run, "gpu_hours": total * gpus_per_run, "calibration": dict(calibration)}


def cost_lines(setup: PaperSetup, cost: Mapping[str, Any]) -> list[str]:
    """The estimate as printed before any study run starts."""
    lines = [f"{cost['runs']} runs over {len(setup.profile.seeds)} seeds:"]
    for table, t in cost["tables"].items():
        shared = " (besides the rows it shares with hbreid2)" if table == "hbreid1" and "hbreid2" in cost["tables"] else ""
        lines.append(f"  {table}: {t['runs']} runs, {_duration(t['hours'])}{shared}")
    for recipe, c in cost["calibration"].items():
        memory = "" if c["peak_gpu_memory_mb"] is None else f", peak {c['peak_gpu_memory_mb'] / 1024:.1f} GiB"
        lines.append(f"  calibration {recipe} on {c['device']}: {c['seconds_per_step']:.3f} s/step, "
                     f"{c['steps_per_epoch']:.0f} steps/epoch, evaluation {c['eval_seconds'] or 0:.1f} s{memory}")
    lines.append(f"estimate: {_duration(cost['hours'])} of runs x {cost['gpus_per_run']} GPU(s) each = "
                 f"{cost['gpu_hours']:.2f} GPU-hours")
    for claim in setup.not_run:
        lines.append(f"not run: {claim['id']} ({claim['reason']})")
    return lines


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


# --------------------------------------------------------------------------------------------------------------
# Running it and reading it


def run_paper(setup: PaperSetup, executor: str = "local", cluster: Any = None,
              print_fn: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Every table's runs: one job array per table on SLURM (all submitted, then followed), one table after the
    other here. Finished runs are skipped, so running again resumes."""
    import pandas as pd

    tables = [table for table in setup.rows if setup.table_points(table)]
    frames, done = [], set()
    for wait in ([False, True] if executor == "slurm" else [True]):
        for table in tables:
            points = [p for p in setup.table_points(table) if p not in done or not wait]
            if wait:
                done.update(points)
            if not points:
                continue
            frame = sweep({p: setup.grid[p] for p in points}, setup.profile.seeds, notebook=train_run,
                          output_root=setup.runs_root, workers=setup.profile.workers, print_fn=print_fn,
                          executor=executor, cluster=cluster, wait=wait, progress=False)
            if wait:
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def paper_verdicts(frame: pd.DataFrame, setup: PaperSetup, confidence: float = 0.95) -> dict[str, Any]:
    """Every claim's verdict (the SynthReID study's rule, no manipulation checks) with its published value, for
    ``claims.json``: ``{"results", "claims_json"}``."""
    results = evaluate_claims(frame, setup.claims, seeds=setup.profile.seeds, confidence=confidence)
    points = [point for labels in setup.rows.values() for point in labels.values()]
    sources = {name: table["source"] for name, table in published_tables().items()}
    payload = claims_json(setup.profile.seeds, math.nan, results, profile=setup.profile.name,
                          source=source_revisions(frame), arms=arm_summary(frame, points, setup.profile.seeds),
                          datasets={name: str(path) for name, path in setup.datasets.datasets.items()},
                          published_sources=sources, not_run=setup.not_run, controls={})
    return {"results": results, "claims_json": payload}


def published_table(frame: pd.DataFrame, setup: PaperSetup, table: str, confidence: float = 0.95) -> pd.DataFrame:
    """One table of the paper report: per row (and dataset), the source's number, the measured mean with its
    interval over seeds and the difference to the source, in the metric the source reports."""
    import pandas as pd

    records = []

    def record(column: str, row: str, point: str, metric: str, source: float | None) -> None:
        mean, half, n = mean_ci(arm_values(frame, point, metric, 100).tolist(), confidence)
        records.append({"dataset": column, "row": row, "metric": published_metric(table, column), "published": source,
                        "measured": mean, "ci_half_width": half, "n": n,
                        "delta_to_published": math.nan if source is None else mean - source})

    for label, point in setup.rows.get(table, {}).items():
        row, _, dataset = label.partition("@")
        if table == "adasp":  # one line per README column of this dataset (VehicleID: small and medium)
            for column, (of, metric) in ADASP_COLUMNS.items():
                if of == dataset:
                    record(column, row, point, metric, published(table, row, column))
            continue
        record(HBREID_DATASET, row, point, "mAP", published(table, row, HBREID_DATASET))
        if setup.grid[point].get("rerank"):
            record(HBREID_DATASET, f"{row} †", point, "mAP_rerank",
                   published_tables()["hbreid2"]["rerank"][HBREID_DATASET])
    return pd.DataFrame(records, columns=["dataset", "row", "metric", "published", "measured", "ci_half_width", "n",
                                          "delta_to_published"])


def paper_report(output_root: str | os.PathLike = "reports", profile: str | os.PathLike = "paper",
                 datasets: str | os.PathLike = "datasets.yaml", sets: Sequence[str] = (), dry_run: bool = False,
                 executor: str = "local", cluster: str | os.PathLike | None = None, kernel_name: str | None = None,
                 timeout: float | None = None, print_fn: Callable[[str], None] = print) -> Path:
    """What ``reidlab report --profile paper --datasets FILE`` runs: plan (every setting and folder checked),
    calibrate and print the runs and the GPU-hour estimate (``OUTPUT/paper/estimate.json``; ``dry_run`` stops
    here), then execute ``notebooks/paper.ipynb`` (the runs, the claims, the tables beside the published numbers)
    and render the report. Returns the index path (the estimate's path with ``dry_run``)."""
    import html
    import time

    from .notebooks import resolve_kernel_name, run_notebook
    from .render import render
    from .slurm import load_cluster

    started = time.perf_counter()
    settings = load_paper_profile(profile, sets)
    files = load_datasets_file(datasets)
    cluster_config = load_cluster(cluster) if executor == "slurm" else None
    cluster = str(Path(cluster).resolve()) if cluster_config is not None and cluster is not None else None
    root = Path(output_root).resolve()
    out = root / "paper"
    out.mkdir(parents=True, exist_ok=True)
    setup = prepare_paper(settings, files, out)
    print_fn(f"reidlab paper study, profile {settings.name!r} on {', '.join(files.datasets)} -> {root}")
    print_fn(f"calibrating: {settings.calibration_steps} steps and one evaluation per recipe ...")
    gpus = cluster_config.nodes * max(1, cluster_config.gpus_per_node) if cluster_config else 1
    cost = estimate_cost(setup, calibrate(setup, out, executor, cluster, print_fn=None), gpus)
    for line in cost_lines(setup, cost):
        print_fn(line)
    estimate = out / "estimate.json"
    atomic_write(estimate, json.dumps(cost, indent=2, default=str) + "\n")
    if dry_run:
        print_fn(f"dry run: nothing submitted; the estimate is in {estimate}")
        return estimate
    parameters = {"profile": str(profile), "datasets": str(Path(datasets).resolve()), "sets": list(sets),
                  "executor": executor, "cluster": cluster}
    kernel = resolve_kernel_name(kernel_name)
    print_fn("[paper] running notebooks/paper.ipynb ...")
    result = run_notebook("paper", parameters, out, kernel_name=kernel, timeout=timeout)
    print_fn(f"[paper] ok in {result['duration_s']:.0f} s")
    notes = (f"The papers' studies on {', '.join(files.datasets)} ({len(settings.seeds)} seeds), estimated at "
             f"{cost['gpu_hours']:.1f} GPU-hours; this invocation took {(time.perf_counter() - started) / 60:.1f} min "
             "(finished runs are reused).")
    index = render(root, title="reidlab paper study", notes=html.escape(notes))
    print_fn(f"report: {index}")
    return index

"""Run the study: papermill notebooks, seeded sweeps, paired statistics, the ablation plan and rendered reports.

A *run* is a folder holding ``params.json`` (what was asked), ``status.json`` (ok / failed with the
error) and, when it succeeded, ``metrics.json`` (what came out) plus figures. Sweeps skip runs whose
``metrics.json`` exists with an ok status, so an interrupted sweep resumes where it stopped; a failed run
is recorded as failed and the sweep goes on. :func:`collect` turns a folder of runs into a DataFrame,
:func:`render` turns executed notebooks into HTML without code and writes ``index.html``.

Modules, bottom up: ``records`` (run folders), ``stats`` (paired comparisons), ``claims`` (the verdict rule), ``controls`` and ``mechanisms`` (manipulation checks), ``ablation`` (the ablation notebook's plan and verdicts), ``notebooks`` (papermill),
``slurm`` (the SLURM executor), ``sweep``, ``training`` (the training runner), ``plan`` (ablation rows), ``render``, ``default`` (``reidlab report``).
"""

from .ablation import (
    AblationSetup,
    RunsOverview,
    prepare_ablation,
    regime_page,
    runs_overview,
    study_verdicts,
    table_page,
    verdict_page,
    write_ablation_metrics,
)
from .default import STUDY_NOTEBOOKS, report
from .notebooks import (
    check_parameters,
    default_output_dir,
    notebook_arguments,
    notebook_parameters,
    notebook_path,
    resolve_kernel_name,
    run_notebook,
)
from .plan import (
    ADASP_ROWS,
    HBREID_TABLE1_ROWS,
    HBREID_TABLE2_ROWS,
    ADASP_REGIMES,
    REGIME_LOSSES,
    TABLES,
    ablation_claims,
    ablation_plan,
    backbone_record,
    study_backbone,
    study_datasets,
)
from .mechanisms import measure_controls
from .paper import (
    PAPER_DATASETS,
    DatasetsFile,
    PaperProfile,
    PaperSetup,
    calibrate,
    estimate_cost,
    load_datasets_file,
    load_paper_profile,
    paper_report,
    paper_verdicts,
    prepare_paper,
    published_table,
    run_paper,
)
from .profile import STUDY_CONFIG_DIR, STUDY_COPIES, STUDY_DATA_DIR, StudyProfile, available_profiles, load_profile
from .records import (
    HEADLINE_METRICS,
    saved_figures,
    write_page_metrics,
    collect,
    find_runs,
    is_complete,
    parameter_changes,
    provenance_differences,
    run_params,
    source_revisions,
)
from .render import render, render_notebook, write_index
from .claims import VERDICTS, Claim, arm_summary, claims_json, evaluate_claims, verdict
from .stats import (
    PairedResult,
    arm_values,
    holm,
    mean_ci,
    paired_table,
    paired_test,
    paired_values,
    untrained_runs,
    with_untrained_flags,
)
from .slurm import ClusterConfig, load_cluster
from .sweep import check_seeds, expand_grid, parse_grid, point_name, runs_table, summary_table, sweep
from .training import as_override_dict, finished_run, notebook_config, train_here, train_run, training_config

__all__ = [
    "ADASP_ROWS", "HBREID_TABLE1_ROWS", "HBREID_TABLE2_ROWS", "HEADLINE_METRICS", "STUDY_CONFIG_DIR", "STUDY_NOTEBOOKS", "TABLES",
    "check_seeds", "saved_figures", "write_page_metrics", "notebook_config", "train_here", "RunsOverview", "regime_page", "runs_overview", "table_page", "verdict_page", "write_ablation_metrics",
    "PAPER_DATASETS", "DatasetsFile", "PaperProfile", "PaperSetup", "calibrate", "estimate_cost", "load_datasets_file",
    "load_paper_profile", "paper_report", "paper_verdicts", "prepare_paper", "published_table", "run_paper",
    "ADASP_REGIMES", "AblationSetup", "prepare_ablation", "study_verdicts", "REGIME_LOSSES", "STUDY_COPIES", "STUDY_DATA_DIR", "VERDICTS", "measure_controls", "Claim", "arm_summary", "ClusterConfig", "load_cluster", "parse_grid", "runs_table", "summary_table", "PairedResult", "StudyProfile", "ablation_claims", "ablation_plan", "backbone_record", "arm_values",
    "available_profiles", "load_profile", "study_backbone", "study_datasets", "as_override_dict", "check_parameters", "claims_json", "collect", "default_output_dir", "evaluate_claims",
    "expand_grid", "find_runs", "holm", "is_complete", "mean_ci", "notebook_arguments", "notebook_parameters", "notebook_path",
    "paired_table", "paired_test", "paired_values", "parameter_changes", "provenance_differences", "point_name", "render", "render_notebook",
    "report", "resolve_kernel_name", "run_notebook", "run_params", "source_revisions", "sweep", "train_run",
    "training_config", "finished_run", "untrained_runs", "verdict", "with_untrained_flags", "write_index",
]

"""Run the study: papermill notebooks, seeded sweeps, paired statistics, the ablation plan and rendered reports.

A *run* is a folder holding ``params.json`` (what was asked), ``status.json`` (ok / failed with the
error) and, when it succeeded, ``metrics.json`` (what came out) plus figures. Sweeps skip runs whose
``metrics.json`` exists with an ok status, so an interrupted sweep resumes where it stopped; a failed run
is recorded as failed and the sweep goes on. :func:`collect` turns a folder of runs into a DataFrame,
:func:`render` turns executed notebooks into HTML without code and writes ``index.html``.

Modules, bottom up: ``records`` (run folders), ``stats`` (paired comparisons), ``notebooks`` (papermill),
``sweep``, ``training`` (the training runner), ``plan`` (ablation rows), ``render``, ``default`` (``reidlab report``).
"""

from .default import STUDY_NOTEBOOKS, report, study_overrides
from .notebooks import check_parameters, notebook_parameters, notebook_path, resolve_kernel_name, run_notebook
from .plan import (
    ADASP_ROWS,
    HBREID_TABLE1_ROWS,
    HBREID_TABLE2_ROWS,
    STUDY_OVERRIDES,
    STUDY_SEEDS,
    STUDY_SYNTH_KNOBS,
    VARIATION_LEVELS,
    VARIATION_LOSSES,
    ablation_plan,
    variation_datasets,
)
from .records import HEADLINE_METRICS, collect, find_runs, is_complete, parameter_changes, run_params
from .render import render, render_notebook, write_index
from .stats import compare_to_baseline, mean_ci, welch_p
from .sweep import expand_grid, point_name, sweep
from .training import as_override_dict, train_run, training_config

__all__ = [
    "ADASP_ROWS", "HBREID_TABLE1_ROWS", "HBREID_TABLE2_ROWS", "HEADLINE_METRICS", "STUDY_NOTEBOOKS", "STUDY_OVERRIDES",
    "STUDY_SEEDS", "STUDY_SYNTH_KNOBS", "VARIATION_LEVELS", "VARIATION_LOSSES", "ablation_plan", "as_override_dict",
    "check_parameters", "collect", "compare_to_baseline", "expand_grid", "find_runs", "is_complete", "mean_ci",
    "notebook_parameters", "notebook_path", "parameter_changes", "point_name", "render", "render_notebook", "report",
    "resolve_kernel_name", "run_notebook", "run_params", "study_overrides", "sweep", "train_run", "training_config",
    "variation_datasets", "welch_p", "write_index",
]

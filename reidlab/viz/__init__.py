"""Plotting helpers used by the notebooks: plain arrays and paths in, matplotlib figures out."""

from reidlab.evaluation.probe import linear_probe_accuracy

from .embedding import cosine_similarity, scatter_groups, similarity_clustermap, umap_2d
from .images import pair_strip, ranked_results, read_image
from .plots import (
    figure_path,
    ci_table_view,
    source_table_view,
    cmc_curve,
    format_ci_table,
    format_p,
    metric_vs_knob,
    regime_figure,
    save_figure,
    style_ci_table,
    style_claims_table,
    style_controls_table,
    style_published_table,
    training_curves,
)

__all__ = [
    "figure_path",
    "ci_table_view",
    "source_table_view",
    "cmc_curve",
    "cosine_similarity",
    "format_ci_table",
    "format_p",
    "linear_probe_accuracy",
    "metric_vs_knob",
    "pair_strip",
    "ranked_results",
    "read_image",
    "regime_figure",
    "save_figure",
    "scatter_groups",
    "similarity_clustermap",
    "style_ci_table",
    "style_claims_table",
    "style_controls_table",
    "style_published_table",
    "training_curves",
    "umap_2d",
]

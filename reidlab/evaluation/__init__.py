"""Ranking metrics, re-ranking, search and feature extraction."""

from reidlab.evaluation.chance import chance_level, split_chance_level
from reidlab.evaluation.extract import extract_features
from reidlab.evaluation.query_expansion import average_query_expansion
from reidlab.evaluation.rank import evaluate_rank, evaluate_retrieved
from reidlab.evaluation.rerank import KReciprocalReranker, re_ranking
from reidlab.evaluation.distractors import fitted_distractors
from reidlab.evaluation.index import INDEX_KINDS, GalleryIndex, operating_points
from reidlab.evaluation.probe import linear_probe_accuracy
from reidlab.evaluation.search import evaluate
from reidlab.evaluation.vehicleid import draw_gallery, evaluate_vehicleid, evaluate_vehicleid_sizes
from reidlab.evaluation.verification import pairwise_tar_at_far, tar_at_far

__all__ = [
    "average_query_expansion", "chance_level", "draw_gallery", "evaluate", "evaluate_rank", "evaluate_retrieved", "evaluate_vehicleid",
    "evaluate_vehicleid_sizes", "extract_features", "fitted_distractors", "GalleryIndex", "INDEX_KINDS", "KReciprocalReranker", "linear_probe_accuracy", "operating_points", "pairwise_tar_at_far", "re_ranking",
    "split_chance_level", "tar_at_far",
]

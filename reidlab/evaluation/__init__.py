"""Ranking metrics, re-ranking, search and feature extraction."""

from reidlab.evaluation.query_expansion import average_query_expansion
from reidlab.evaluation.rank import evaluate_rank
from reidlab.evaluation.rerank import KReciprocalReranker, re_ranking
from reidlab.evaluation.search import evaluate

__all__ = ["average_query_expansion", "evaluate", "evaluate_rank", "KReciprocalReranker", "re_ranking"]

"""Ranking metrics, re-ranking, search and feature extraction."""

from reidlab.evaluation.rank import evaluate_rank

__all__ = ["evaluate_rank"]

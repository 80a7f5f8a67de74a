"""Ranking metrics, re-ranking, search and feature extraction."""

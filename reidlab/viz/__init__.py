"""Plotting helpers used by the notebooks."""

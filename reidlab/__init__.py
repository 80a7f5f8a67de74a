"""reidlab: a study kit for object re-identification (AdaSP sparse pairwise losses, HBReID tricks)."""

__version__ = "0.1.0"

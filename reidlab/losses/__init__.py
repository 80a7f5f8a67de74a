"""Classification and pairwise losses, one small object per loss."""

"""Summary statistics any layer reports with (the study's tables, the plots): the mean and its t-interval.
numpy and scipy only inside the function."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["mean_ci"]


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the two-sided Student-t confidence interval (nan half-width for n < 2)."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    n = x.size
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(x.mean()), math.nan, 1
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n

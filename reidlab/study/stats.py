"""Statistics of study results."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


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


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided Welch t-test p-value (unequal variances); nan when it is undefined (n < 2 or no spread)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def compare_to_baseline(
    frame: "pandas.DataFrame",  # noqa: F821
    rows: Mapping[str, str],
    baseline: str,
    metrics: Sequence[str] = ("mAP", "rank1"),
    confidence: float = 0.95,
    alpha: float = 0.05,
    scale: float = 100.0,
) -> "pandas.DataFrame":  # noqa: F821
    """A results table: per row label (``rows`` maps label -> grid point name), per metric the mean and
    t-interval over seeds, the delta of the means against ``baseline`` and Welch's two-sided p-value.
    A delta "exceeds the noise" when p < alpha. Values are multiplied by ``scale`` (percent)."""
    import pandas as pd

    def values(point: str, metric: str) -> list[float]:
        sel = frame[(frame["point"] == point) & (frame["status"] == "ok")]
        return [] if metric not in sel else [float(v) * scale for v in sel[metric].dropna()]

    records = []
    for label, point in rows.items():
        record: dict[str, Any] = {"row": label, "runs": len(values(point, metrics[0]))}
        for metric in metrics:
            mean, half, _ = mean_ci(values(point, metric), confidence)
            base = values(baseline, metric)
            record[f"{metric} mean"] = mean
            record[f"{metric} ±CI"] = half
            if point == baseline:
                record[f"{metric} Δ"], record[f"{metric} p"], record[f"{metric} sig"] = math.nan, math.nan, ""
                continue
            base_mean = mean_ci(base, confidence)[0]
            p = welch_p(values(point, metric), base)
            record[f"{metric} Δ"] = mean - base_mean
            record[f"{metric} p"] = p
            record[f"{metric} sig"] = "" if math.isnan(p) else ("yes" if p < alpha else "no")
        records.append(record)
    return pd.DataFrame(records).set_index("row")

"""Statistics of study results: paired comparisons by seed, Holm correction, tables, runs that did not learn.

The input is a results frame as :func:`reidlab.study.collect` makes it: one row per run with ``point`` (the
arm), ``seed``, ``status`` and metric columns stored as fractions (0-1). What this module reports is in points
(``scale=100``). A run counts when its status is ok and its value finite; a run flagged ``untrained`` counts
too, with its measured value (leaving it out would flatter the arm that failed). Claims and verdicts: ``claims``.

Arms are compared *paired by seed*: runs of the same seed share the initialisation and the batch plan, so the
per-seed difference removes that shared noise and the test is on the differences (a paired t-test, plus an exact
sign-flip permutation test when there are enough seeds to make one meaningful).

It imports only ``reidlab.utils`` (``mean_ci``), and numpy / pandas / scipy only inside the functions
(``import reidlab.study`` stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reidlab.utils.stats import mean_ci

if TYPE_CHECKING:  # imported inside the functions, so that importing reidlab.study stays light
    import numpy as np
    import pandas as pd

# Below this many pairs the sign-flip test cannot reach p < 0.05 (its smallest p is 2 / 2**n), so it is not run.
MIN_PERMUTATION_PAIRS = 6
# A run "did not learn" when its mAP stays within this many points of chance, or its embeddings collapsed.
UNTRAINED_MARGIN_POINTS = 2.0
COLLAPSED_SPREAD = 1e-3


# --------------------------------------------------------------------------------------------------------------
# Selecting and pairing runs


def _counted_runs(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that count for ``metric``: status ok, a finite value and a seed. A run that did not learn counts
    with its measured value: leaving it out would flatter the arm that failed."""
    import numpy as np
    import pandas as pd

    if metric not in frame.columns or frame.empty:
        return frame.iloc[0:0]
    values = pd.to_numeric(frame[metric], errors="coerce")
    keep = (frame["status"] == "ok") & np.isfinite(values) & frame["seed"].notna()
    return frame[keep]


def _seed_means(runs: pd.DataFrame, metric: str, scale: float) -> pd.Series:
    """The values of counted ``runs`` multiplied by ``scale``, indexed by (point, seed) and sorted; two runs of
    the same seed (a re-run kept twice) are averaged so that a seed appears once per point."""
    import pandas as pd

    values = pd.to_numeric(runs[metric]).astype(float) * scale
    return values.groupby([runs["point"].to_numpy(), runs["seed"].to_numpy()]).mean()


def arm_values(frame: pd.DataFrame, point: str, metric: str, scale: float = 1.0) -> pd.Series:
    """The counted values of one arm, indexed by seed and multiplied by ``scale``. Two runs with the same seed
    (a re-run kept twice) are averaged so that a seed appears once."""
    import pandas as pd

    runs = _counted_runs(frame, metric)
    runs = runs[runs["point"] == point]
    if runs.empty:
        return pd.Series([], dtype=float, index=pd.Index([], name="seed"))
    return _seed_means(runs, metric, scale).droplevel(0).rename_axis("seed")


def term_label(point: str, metric: str) -> str:
    """How a (point, metric) term is named in columns and formulas: ``mAP[SP-H@0.9]``."""
    return f"{metric}[{point}]"


def paired_values(
    frame: pd.DataFrame,
    points_metrics: Sequence[tuple[str, str]],
    scale: float = 1.0,
) -> pd.DataFrame:
    """One column per (point, metric) term (named by :func:`term_label`), indexed by seed, keeping only the seeds
    counted in every term: the join by seed that every comparison uses (same seed = same init and batch plan).
    Values are multiplied by ``scale``; a repeated term gives one column."""
    import pandas as pd

    terms = list(dict.fromkeys((point, metric) for point, metric in points_metrics))
    if not terms:
        return pd.DataFrame(index=pd.Index([], name="seed"))
    columns = {term_label(p, m): arm_values(frame, p, m, scale) for p, m in terms}
    table = pd.concat(columns, axis=1, join="inner").sort_index()
    table.index.name = "seed"
    return table


# --------------------------------------------------------------------------------------------------------------
# Tests on paired differences


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison in points: the mean per-seed difference, its t interval and two p-values."""

    delta: float  # mean of the per-seed differences
    ci_low: float  # two-sided Student-t interval of that mean (nan when n < 2)
    ci_high: float
    n_pairs: int
    p: float  # paired t-test of the differences against 0 (nan when n < 2)
    p_perm: float  # exact sign-flip permutation p (nan when n < MIN_PERMUTATION_PAIRS)
    sd: float  # sd of the differences (ddof=1; nan when n < 2)


NO_PAIRS = PairedResult(math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan)  # nothing to compare


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """All 2**n sums ±v1 ± v2 ... ± vn (one per sign pattern)."""
    import numpy as np

    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate([sums + v, sums - v])
    return sums


def sign_flip_p(differences: Iterable[float]) -> float:
    """Exact two-sided sign-flip permutation p: the fraction of the 2**n sign patterns whose |mean| is at least
    the observed |mean| (with a small tolerance so that ties from rounding count). Under "no effect" each
    difference is as likely to have either sign, so this needs no normality assumption. The patterns are
    enumerated in two halves (meet in the middle) so that 2**n stays cheap for the seed counts a study has."""
    import numpy as np

    d = np.asarray(list(differences), float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan
    # Means over the same n compare as sums do.
    threshold = abs(d.sum()) - 1e-9 * max(1.0, float(np.abs(d).sum()))
    if threshold <= 0:
        return 1.0
    left = _signed_sums(d[: d.size // 2])
    right = np.sort(_signed_sums(d[d.size // 2:]))
    # For each left sum a: patterns with a + b >= threshold or a + b <= -threshold (disjoint since threshold > 0).
    at_least = right.size - np.searchsorted(right, threshold - left, side="left")
    at_most = np.searchsorted(right, -threshold - left, side="right")
    return float((at_least + at_most).sum() / 2.0 ** d.size)


def paired_test(differences: Iterable[float], confidence: float = 0.95) -> PairedResult:
    """The paired comparison of per-seed differences (arm - reference, in points): mean, t interval, the
    ``ttest_rel`` p-value and the exact sign-flip p. Non-finite differences are dropped. When all differences are
    equal the t statistic is undefined; then p is 0 if they are nonzero (every seed moved by the same amount) and
    1 if they are all zero, and the interval shrinks to the point."""
    import numpy as np

    d = np.asarray(list(differences), float)
    return _paired_tests(d[np.isfinite(d)][np.newaxis], confidence)[0]


def _paired_tests(differences: np.ndarray, confidence: float) -> list[PairedResult]:
    """:func:`paired_test` of each row of ``differences`` (finite values, as many per row): numpy along the rows
    and one scipy call for the whole matrix instead of one per row, with the same arithmetic per row, so the same
    bits."""
    import numpy as np
    from scipy import stats

    rows, n = differences.shape
    if n == 0:
        return [NO_PAIRS] * rows
    delta = differences.mean(axis=1)
    p_perm = [sign_flip_p(d) for d in differences] if n >= MIN_PERMUTATION_PAIRS else [math.nan] * rows
    if n < 2:
        return [PairedResult(float(delta[i]), math.nan, math.nan, n, math.nan, p_perm[i], math.nan)
                for i in range(rows)]
    sd = differences.std(axis=1, ddof=1)
    constant = np.ptp(differences, axis=1) <= 1e-12 * np.maximum(1.0, np.abs(differences).max(axis=1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    with np.errstate(divide="ignore", invalid="ignore"):  # constant rows (se = 0) are answered below
        p = 2 * stats.t.sf(np.abs(delta / se), n - 1)
    results = []
    for i in range(rows):
        if constant[i]:
            p_constant = 1.0 if abs(delta[i]) <= 1e-12 else 0.0
            results.append(PairedResult(float(delta[i]), float(delta[i]), float(delta[i]), n, p_constant,
                                        p_perm[i], 0.0))
        else:
            results.append(PairedResult(float(delta[i]), float(delta[i] - half[i]), float(delta[i] + half[i]), n,
                                        float(p[i]), p_perm[i], float(sd[i])))
    return results


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values: the k-th smallest of m is multiplied by (m - k + 1), then made
    non-decreasing in that order and capped at 1. Controls the family-wise error without assuming independence.
    nan entries are passed through and do not count in m."""
    import numpy as np

    p = np.asarray(list(pvalues), float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


# --------------------------------------------------------------------------------------------------------------
# Tables


def paired_table(
    frame: pd.DataFrame,
    rows: Mapping[str, str],
    reference: str,
    metrics: Sequence[str] = ("mAP", "rank1"),
    primary: str = "mAP",
    confidence: float = 0.95,
    scale: float = 100.0,
) -> pd.DataFrame:
    """A results table indexed by row label (``rows`` maps label -> point; ``reference`` is one of the labels).

    Columns: ``runs`` (counted runs of the arm on ``primary``) and ``pairs`` (seeds paired with the reference on
    ``primary``; nan on the reference row); per metric ``<m> mean`` and ``<m> ±CI`` (the arm's own mean and t
    half-width over its runs, for reading), then, paired by seed against the reference, ``<m> Δ``, ``<m> Δ low``,
    ``<m> Δ high``, ``<m> p`` and ``<m> p_perm`` (nan on the reference row); and ``<primary> p_holm``, the primary
    p-values Holm-adjusted across the table's non-reference rows. Values in points (``scale``)."""
    import pandas as pd

    if reference not in rows:
        raise ValueError(f"reference {reference!r} is not one of the rows {list(rows)}")
    if primary not in metrics:
        raise ValueError(f"primary metric {primary!r} is not one of the metrics {list(metrics)}")
    # one grouping of the frame per metric, not one per row: a table of thousands of points stays fast
    arms = {metric: _arms_against(frame, rows[reference], metric, scale, confidence) for metric in metrics}
    records = []
    for label, point in rows.items():
        record: dict[str, Any] = {"row": label, "runs": len(arms[primary][0].get(point, ())), "pairs": math.nan}
        for metric in metrics:
            values, tests = arms[metric]
            record[f"{metric} mean"], record[f"{metric} ±CI"], _ = mean_ci(values.get(point, ()), confidence)
            result = NO_PAIRS if label == reference else tests.get(point, NO_PAIRS)
            if metric == primary and label != reference:
                record["pairs"] = result.n_pairs
            record[f"{metric} Δ"], record[f"{metric} Δ low"], record[f"{metric} Δ high"] = (
                result.delta, result.ci_low, result.ci_high)
            record[f"{metric} p"], record[f"{metric} p_perm"] = result.p, result.p_perm
        records.append(record)
    table = pd.DataFrame(records).set_index("row")
    table[f"{primary} p_holm"] = holm(table[f"{primary} p"])
    return table


def _arms_against(
    frame: pd.DataFrame, reference_point: str, metric: str, scale: float, confidence: float,
) -> tuple[dict[str, np.ndarray], dict[str, PairedResult]]:
    """Every arm's :func:`arm_values` (point -> values in seed order) and its :func:`paired_test` against the
    reference point, paired by seed (point -> result; missing where no seed pairs). One grouping of the frame, the
    per-seed differences of all arms in one subtraction and one test call per pair count, instead of pandas
    work per arm."""
    import numpy as np

    runs = _counted_runs(frame, metric)
    if runs.empty:
        return {}, {}
    means = _seed_means(runs, metric, scale)
    points, seeds = (means.index.get_level_values(level).to_numpy() for level in (0, 1))
    values = means.to_numpy()
    starts = _run_starts(points)
    arm_values_by_point = dict(zip(points[starts], np.split(values, starts[1:]), strict=True))
    reference = np.flatnonzero(points == reference_point)  # its rows, in seed order
    same_seed, paired = np.zeros(len(seeds), int), np.zeros(len(seeds), bool)  # the reference's row of each seed
    if reference.size:
        same_seed = reference[np.minimum(np.searchsorted(seeds[reference], seeds), reference.size - 1)]
        paired = seeds[same_seed] == seeds
    differences = values[paired] - values[same_seed[paired]]
    finite = np.isfinite(differences)  # paired_test drops the others
    pair_points, differences = points[paired][finite], differences[finite]
    if not pair_points.size:
        return arm_values_by_point, {}
    starts = _run_starts(pair_points)
    counts = np.diff(np.r_[starts, pair_points.size])
    tests = {}
    for n in np.unique(counts):
        arms = starts[counts == n]
        results = _paired_tests(differences[arms[:, np.newaxis] + np.arange(n)], confidence)
        tests.update(zip(pair_points[arms], results, strict=True))
    return arm_values_by_point, tests


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal consecutive ``keys`` begins (``keys`` grouped, as a sorted index leaves them)."""
    import numpy as np

    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


# --------------------------------------------------------------------------------------------------------------
# Runs that did not learn


def untrained_runs(
    frame: pd.DataFrame,
    chance_mAP: float | pd.Series,
    metric: str = "mAP",
    margin_points: float = UNTRAINED_MARGIN_POINTS,
    min_spread: float = COLLAPSED_SPREAD,
) -> pd.Series:
    """Why each run "did not learn" ("" for a fine run), aligned with ``frame``: its ``metric`` (a fraction) is
    below ``chance_mAP`` (a fraction, or a Series aligned with ``frame`` when datasets differ) plus an ABSOLUTE
    margin of ``margin_points`` points (2 by default: an absolute margin because chance mAP is tiny, so 1.5x
    chance would flag almost nothing), or its ``embedding_spread`` column (if present) is below ``min_spread``
    (embeddings nearly constant: collapsed). Only ok runs are judged; reasons are joined with "; "."""
    import numpy as np
    import pandas as pd

    chance = pd.Series(chance_mAP, index=frame.index, dtype=float).to_numpy()
    ok = (frame["status"] == "ok").to_numpy() if "status" in frame.columns else np.ones(len(frame), bool)
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    if metric in frame.columns:
        values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)
        for i in np.flatnonzero(ok & np.isfinite(values) & (values < chance + margin_points / 100)):
            reasons[i].append(f"{metric} {values[i] * 100:.2f} < chance {chance[i] * 100:.2f} "
                              f"+ {margin_points:g} points")
    if "embedding_spread" in frame.columns:
        spread = pd.to_numeric(frame["embedding_spread"], errors="coerce").to_numpy(float)
        for i in np.flatnonzero(ok & np.isfinite(spread) & (spread < min_spread)):
            reasons[i].append(f"embedding_spread {spread[i]:.2g} < {min_spread:g} (collapsed)")
    return pd.Series(["; ".join(r) for r in reasons], index=frame.index, name="untrained_reason", dtype=object)


def with_untrained_flags(frame: pd.DataFrame, chance_mAP: float | pd.Series, **kwargs: Any) -> pd.DataFrame:
    """A copy of ``frame`` with ``untrained`` (bool) and ``untrained_reason`` columns from :func:`untrained_runs`,
    for the tables and the index to flag those runs (they still count, with their value)."""
    reasons = untrained_runs(frame, chance_mAP, **kwargs)
    return frame.assign(untrained=reasons.ne(""), untrained_reason=reasons)

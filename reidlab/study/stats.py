"""Statistics of study results: paired comparisons by seed, Holm correction, verdicts and a claims engine.

The input is a results frame as :func:`reidlab.study.collect` makes it: one row per run with ``point`` (the
arm), ``seed``, ``status`` and metric columns stored as fractions (0-1). What this module reports is in points
(``scale=100``). A run counts when its status is ok, its value finite and it is not flagged ``untrained``.

Arms are compared *paired by seed*: runs of the same seed share the initialisation and the batch plan, so the
per-seed difference removes that shared noise and the test is on the differences (a paired t-test, plus an exact
sign-flip permutation test when there are enough seeds to make one meaningful).

This module is a leaf: it imports nothing from reidlab, and numpy / pandas / scipy only inside the functions
(``import reidlab.study`` stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported inside the functions, so that importing reidlab.study stays light
    import numpy as np
    import pandas as pd

# Below this many pairs the sign-flip test cannot reach p < 0.05 (its smallest p is 2 / 2**n), so it is not run.
MIN_PERMUTATION_PAIRS = 6
CLAIM_SOURCES = ("AdaSP", "HBReID")
COMBINE_KINDS = ("difference", "contrast", "best-of", "within")
# A run "did not learn" when its mAP stays within this many points of chance, or its embeddings collapsed.
UNTRAINED_MARGIN_POINTS = 2.0
COLLAPSED_SPREAD = 1e-3


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


# --------------------------------------------------------------------------------------------------------------
# Selecting and pairing runs


def _counted_runs(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that count for ``metric``: status ok, a finite value, a seed, and not flagged untrained."""
    import numpy as np
    import pandas as pd

    if metric not in frame.columns or frame.empty:
        return frame.iloc[0:0]
    values = pd.to_numeric(frame[metric], errors="coerce")
    keep = (frame["status"] == "ok") & np.isfinite(values) & frame["seed"].notna()
    if "untrained" in frame.columns:
        keep &= ~frame["untrained"].eq(True)
    return frame[keep]


def arm_values(frame: pd.DataFrame, point: str, metric: str, scale: float = 1.0) -> pd.Series:
    """The counted values of one arm, indexed by seed and multiplied by ``scale``. Two runs with the same seed
    (a re-run kept twice) are averaged so that a seed appears once."""
    import pandas as pd

    runs = _counted_runs(frame, metric)
    runs = runs[runs["point"] == point]
    if runs.empty:
        return pd.Series([], dtype=float, index=pd.Index([], name="seed"))
    values = pd.to_numeric(runs[metric]).astype(float) * scale
    return values.groupby(runs["seed"].to_numpy()).mean().rename_axis("seed")


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
    from scipy import stats

    d = np.asarray(list(differences), float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return PairedResult(math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan)
    delta = float(d.mean())
    p_perm = sign_flip_p(d) if n >= MIN_PERMUTATION_PAIRS else math.nan
    if n < 2:
        return PairedResult(delta, math.nan, math.nan, n, math.nan, p_perm, math.nan)
    sd = float(d.std(ddof=1))
    if float(np.ptp(d)) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        p = 1.0 if abs(delta) <= 1e-12 else 0.0
        return PairedResult(delta, delta, delta, n, p, p_perm, 0.0)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(delta / se), n - 1))
    return PairedResult(delta, delta - half, delta + half, n, p, p_perm, sd)


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


def verdict(ci_low: float, ci_high: float, equivalence: float = 1.0, p_adjusted: float = math.nan,
            alpha: float = 0.05) -> str:
    """What an interval of a difference (points) says: "supported" when it lies above 0, "contradicted" when below,
    "no-effect" when it lies within ±``equivalence`` (any effect is too small to matter), else "inconclusive"
    (also when the interval is undefined). With ``p_adjusted`` (the claim's multiplicity-corrected p), an interval
    that excludes 0 only counts when that p is below ``alpha`` too: otherwise the family of claims could owe
    its "supported" to the number of claims tested."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "inconclusive"
    survives = math.isnan(p_adjusted) or p_adjusted < alpha
    if ci_low > 0 and survives:
        return "supported"
    if ci_high < 0 and survives:
        return "contradicted"
    if -equivalence < ci_low and ci_high < equivalence:
        return "no-effect"
    return "inconclusive"


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
    reference_point = rows[reference]
    records = []
    for label, point in rows.items():
        record: dict[str, Any] = {"row": label, "runs": len(arm_values(frame, point, primary)), "pairs": math.nan}
        for metric in metrics:
            mean, half, _ = mean_ci(arm_values(frame, point, metric, scale), confidence)
            record[f"{metric} mean"], record[f"{metric} ±CI"] = mean, half
            result = PairedResult(math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan)
            if label != reference:
                pairs = paired_values(frame, [(point, metric), (reference_point, metric)], scale)
                result = paired_test(pairs.iloc[:, 0] - pairs.iloc[:, -1], confidence)
                if metric == primary:
                    record["pairs"] = result.n_pairs
            record[f"{metric} Δ"], record[f"{metric} Δ low"], record[f"{metric} Δ high"] = (
                result.delta, result.ci_low, result.ci_high)
            record[f"{metric} p"], record[f"{metric} p_perm"] = result.p, result.p_perm
        records.append(record)
    table = pd.DataFrame(records).set_index("row")
    table[f"{primary} p_holm"] = holm(table[f"{primary} p"])
    return table


# --------------------------------------------------------------------------------------------------------------
# Claims


def _as_list(points: str | Sequence[str]) -> list[str]:
    return [points] if isinstance(points, str) else list(points)


@dataclass(frozen=True)
class Claim:
    """A statement from a paper, tested on the study's runs as a per-seed combination of arms (in points):

    - ``difference``: arm - reference (one point each);
    - ``contrast``: sum(arm values) - sum(reference values), e.g. an interaction
      (SP-LH@high + SP-H@low) - (SP-H@high + SP-LH@low);
    - ``best-of``: arm - the reference point with the highest mean over the paired seeds ("X is the best of ...";
      the arm itself is left out of the competitors);
    - ``within``: arm - (reference point with the highest mean) + ``margin`` ("X is within 1 point of the
      better of ..."; positive supports).

    ``reference_metric`` (default ``metric``) lets the two sides use different metrics, e.g. ``mAP_rerank`` of a
    point against its own ``mAP`` for "re-ranking raises mAP"."""

    id: str
    source: str  # one of CLAIM_SOURCES; Holm's family
    statement: str
    arm: str | Sequence[str]
    reference: str | Sequence[str]
    metric: str = "mAP"
    reference_metric: str | None = None
    combine: str = "difference"
    margin: float = 1.0  # points; used by "within" only

    def __post_init__(self) -> None:
        if self.source not in CLAIM_SOURCES:
            raise ValueError(f"claim {self.id}: source {self.source!r} is not one of {CLAIM_SOURCES}")
        if self.combine not in COMBINE_KINDS:
            raise ValueError(f"claim {self.id}: combine {self.combine!r} is not one of {COMBINE_KINDS}")
        arms, references = _as_list(self.arm), _as_list(self.reference)
        if not arms or not references:
            raise ValueError(f"claim {self.id}: arm and reference must name at least one point")
        if self.combine != "contrast" and len(arms) != 1:
            raise ValueError(f"claim {self.id}: combine {self.combine!r} takes one arm point, got {arms}")
        if self.combine == "difference" and len(references) != 1:
            raise ValueError(f"claim {self.id}: combine 'difference' takes one reference point, got {references}")
        if self.combine in ("best-of", "within") and not self.competitor_terms:
            raise ValueError(f"claim {self.id}: no competitor left once the arm is removed from {references}")

    @property
    def arm_terms(self) -> list[tuple[str, str]]:
        return [(point, self.metric) for point in _as_list(self.arm)]

    @property
    def reference_terms(self) -> list[tuple[str, str]]:
        return [(point, self.reference_metric or self.metric) for point in _as_list(self.reference)]

    @property
    def competitor_terms(self) -> list[tuple[str, str]]:
        """For best-of / within: the reference terms other than the arm itself."""
        return [term for term in self.reference_terms if term not in self.arm_terms]

    @property
    def formula(self) -> str:
        """What is computed per seed, e.g. ``mAP[AdaSP@0.9] - max_by_mean(mAP[SP-H@0.9], mAP[SP-LH@0.9]) + 1``."""

        def total(terms: list[tuple[str, str]]) -> str:
            text = " + ".join(term_label(*term) for term in terms)
            return f"({text})" if len(terms) > 1 else text

        arm = total(self.arm_terms)
        if self.combine in ("difference", "contrast"):
            return f"{arm} - {total(self.reference_terms)}"
        best = "max_by_mean(" + ", ".join(term_label(*term) for term in self.competitor_terms) + ")"
        return f"{arm} - {best}" + (f" + {self.margin:g}" if self.combine == "within" else "")

    def differences(self, frame: pd.DataFrame, scale: float = 100.0) -> tuple[pd.Series, str | None]:
        """The per-seed values of the formula (points) over the seeds counted in every term, and for best-of /
        within the competitor point chosen (highest mean over those seeds; the first listed on a tie)."""
        sides = self.competitor_terms if self.combine in ("best-of", "within") else self.reference_terms
        values = paired_values(frame, self.arm_terms + sides, scale)
        arm = values[[term_label(*t) for t in self.arm_terms]].sum(axis=1)
        reference = values[[term_label(*t) for t in sides]]
        if self.combine in ("difference", "contrast"):
            return arm - reference.sum(axis=1), None
        if values.empty:
            return arm, None
        best = reference.mean().idxmax()
        chosen = sides[list(reference.columns).index(best)][0]
        margin = self.margin if self.combine == "within" else 0.0
        return arm - reference[best] + margin, chosen


def evaluate_claims(
    frame: pd.DataFrame,
    claims: Sequence[Claim],
    confidence: float = 0.95,
    equivalence: float = 1.0,
    scale: float = 100.0,
) -> list[dict[str, Any]]:
    """One dict per claim: ``id, source, statement, metric, arm, reference, delta, ci_low, ci_high, n_pairs, p,
    p_holm, verdict`` plus ``formula`` (with its value, and the chosen competitor for best-of / within) and
    ``p_perm``. Numbers in points, unrounded; ``p_holm`` is Holm across the claims of the same source; the verdict
    comes from the interval and the Holm p (:func:`verdict`). A claim whose points have no runs gets n_pairs 0, nan numbers and
    "inconclusive"."""
    results = []
    for claim in claims:
        differences, chosen = claim.differences(frame, scale)
        result = paired_test(differences, confidence)
        formula = f"{claim.formula} = " + ("n/a" if math.isnan(result.delta) else f"{result.delta:+.2f}")
        if claim.combine in ("best-of", "within"):
            formula += f" (better: {chosen or 'none'})"
        results.append({
            "id": claim.id, "source": claim.source, "statement": claim.statement, "metric": claim.metric,
            "arm": claim.arm if isinstance(claim.arm, str) else list(claim.arm),
            "reference": claim.reference if isinstance(claim.reference, str) else list(claim.reference),
            "delta": result.delta, "ci_low": result.ci_low, "ci_high": result.ci_high, "n_pairs": result.n_pairs,
            "p": result.p, "p_holm": math.nan, "verdict": "inconclusive",
            "formula": formula, "p_perm": result.p_perm,
        })
    for source in dict.fromkeys(r["source"] for r in results):
        family = [r for r in results if r["source"] == source]
        for record, adjusted in zip(family, holm([r["p"] for r in family]), strict=True):
            record["p_holm"] = float(adjusted)
            record["verdict"] = verdict(record["ci_low"], record["ci_high"], equivalence, record["p_holm"])
    return results


def _json_safe(value: Any) -> Any:
    """Plain Python for json.dumps(allow_nan=False): numpy scalars unwrapped, nan / inf -> None."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def claims_json(seeds: Iterable[int], reference_mAP: float, claims_results: Sequence[Mapping[str, Any]]) -> dict:
    """``{"seeds": [...], "reference_mAP": x, "claims": [...]}`` ready for json.dumps(allow_nan=False): nan -> None,
    numpy scalars as Python numbers, delta / ci_low / ci_high rounded to 2 decimals (points); p-values unrounded."""
    claims = []
    for result in claims_results:
        record = dict(result)
        for key in ("delta", "ci_low", "ci_high"):
            if isinstance(record.get(key), float) and math.isfinite(record[key]):
                record[key] = round(record[key], 2)
        claims.append(_json_safe(record))
    return {"seeds": _json_safe(list(seeds)), "reference_mAP": _json_safe(reference_mAP), "claims": claims}


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
    """A copy of ``frame`` with ``untrained`` (bool) and ``untrained_reason`` columns from :func:`untrained_runs`;
    the statistics here then leave those runs out."""
    reasons = untrained_runs(frame, chance_mAP, **kwargs)
    return frame.assign(untrained=reasons.ne(""), untrained_reason=reasons)

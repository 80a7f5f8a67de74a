"""Claims of the two sources tested on a study's runs, and the verdict rule (docs/study.md, "The verdict rule").

A :class:`Claim` is a per-seed combination of arms in points, oriented so that a positive value supports it. Its
tests, each reported as a two-sided-equivalent p (twice the one-sided p, capped at 1, so that every test is read
at the same alpha = 0.05 as a 95% interval):

- **direction** (every claim): does the value lie on the claimed side of 0? For a claim with one comparison
  (``difference``, ``contrast``) this is the paired t-test. For a claim against several competitors (``best-of``,
  ``within``) it is the *intersection-union* test: the claim holds only if it holds against every competitor, so
  its support p is the largest of the per-competitor ones; it fails if it fails against any competitor, so its
  contradiction p is the smallest per-competitor one times the number of competitors (Bonferroni). The claim's
  ``p`` is the smaller of the two, and its interval is that of the least favourable competitor.
- **equivalence** (superiority claims: ``difference``, ``contrast``, ``best-of``): two one-sided tests (TOST)
  that the value lies within ±``margin`` points, against every competitor for best-of. ``within`` claims
  (non-inferiority: "within ``margin`` points of the better") have none: they are supported or contradicted.

Holm's correction runs over all the tests of one source's testable claims (direction and equivalence alike).
A claim whose manipulation check failed is **untestable** and leaves the family; otherwise **supported** /
**contradicted** when its Holm-corrected direction p is below alpha (by the side), **no-effect** when its
Holm-corrected equivalence p is, and **inconclusive** otherwise.

Runs that did not learn count with their measured value against their arm. Runs that are missing (failed, never
run) cannot be paired; a claim that lost any says so per point, with a sensitivity line that scores the lost runs
at their split's chance level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .stats import arm_values, holm, paired_test, paired_values, term_label

if TYPE_CHECKING:
    import pandas as pd

CLAIM_SOURCES = ("AdaSP", "HBReID")
COMBINE_KINDS = ("difference", "contrast", "best-of", "within")
VERDICTS = ("supported", "contradicted", "no-effect", "inconclusive", "untestable")
ALPHA = 0.05


def _as_list(points: str | Sequence[str]) -> list[str]:
    return [points] if isinstance(points, str) else list(points)


@dataclass(frozen=True)
class Claim:
    """A statement from a paper as a per-seed combination of arms (points of ``runs.csv``), in points:

    - ``difference``: arm - reference;
    - ``contrast``: sum(arm values) - sum(reference values), e.g. an interaction;
    - ``best-of``: arm - each competitor ("X is the best of ..."; the arm is left out of its competitors);
    - ``within``: arm - each competitor + ``margin`` ("X is within ``margin`` points of the better of ...").

    ``margin`` (points): the equivalence margin of ``no-effect`` (for the HBReID claims no larger than the gain
    the source claims, so that no-effect excludes the claimed effect), or the non-inferiority margin of
    ``within``. ``controls``: names of the manipulation checks the claim's mechanism needs; the study measures
    them, and a failed one makes the claim untestable. ``reference_metric`` lets the sides use other metrics
    (``mAP_rerank`` of a point against its own ``mAP``); ``term_metrics`` gives single points their own metric
    (VehicleID is scored by rank-1), and ``weights`` the weight of a point in a ``contrast`` (default 1: a mean
    over datasets weighs each by 1 / their number). ``published``: the claim's value in the source's numbers,
    when it states them."""

    id: str
    source: str  # one of CLAIM_SOURCES; Holm's family
    statement: str
    arm: str | Sequence[str]
    reference: str | Sequence[str]
    metric: str = "mAP"
    reference_metric: str | None = None
    combine: str = "difference"
    margin: float = 1.0
    controls: tuple[str, ...] = field(default=())
    term_metrics: Mapping[str, str] | None = None
    weights: Mapping[str, float] | None = None
    published: float | None = None

    def __post_init__(self) -> None:
        if self.source not in CLAIM_SOURCES:
            raise ValueError(f"claim {self.id}: source {self.source!r} is not one of {CLAIM_SOURCES}")
        if self.combine not in COMBINE_KINDS:
            raise ValueError(f"claim {self.id}: combine {self.combine!r} is not one of {COMBINE_KINDS}")
        if not self.margin > 0:
            raise ValueError(f"claim {self.id}: margin must be > 0 points, got {self.margin}")
        arms, references = _as_list(self.arm), _as_list(self.reference)
        if not arms or not references:
            raise ValueError(f"claim {self.id}: arm and reference must name at least one point")
        if self.combine != "contrast" and len(arms) != 1:
            raise ValueError(f"claim {self.id}: combine {self.combine!r} takes one arm point, got {arms}")
        if self.combine == "difference" and len(references) != 1:
            raise ValueError(f"claim {self.id}: combine 'difference' takes one reference point, got {references}")
        if self.weights is not None and self.combine != "contrast":
            raise ValueError(f"claim {self.id}: weights apply to combine 'contrast' only")
        if self.is_iut and not self.competitor_terms:
            raise ValueError(f"claim {self.id}: no competitor left once the arm is removed from {references}")

    @property
    def is_iut(self) -> bool:
        """Tested against several competitors at once (intersection-union)."""
        return self.combine in ("best-of", "within")

    @property
    def has_equivalence(self) -> bool:
        return self.combine != "within"

    @property
    def points(self) -> list[str]:
        return list(dict.fromkeys(_as_list(self.arm) + _as_list(self.reference)))

    @property
    def arm_terms(self) -> list[tuple[str, str]]:
        own = self.term_metrics or {}
        return [(point, own.get(point, self.metric)) for point in _as_list(self.arm)]

    @property
    def reference_terms(self) -> list[tuple[str, str]]:
        own = self.term_metrics or {}
        return [(point, own.get(point, self.reference_metric or self.metric)) for point in _as_list(self.reference)]

    @property
    def metrics(self) -> set[str]:
        """Every metric the claim reads."""
        return {metric for _, metric in self.arm_terms + self.reference_terms}

    def weight(self, point: str) -> float:
        return 1.0 if self.weights is None else float(self.weights.get(point, 1.0))

    @property
    def competitor_terms(self) -> list[tuple[str, str]]:
        """For best-of / within: the reference terms other than the arm itself."""
        return [term for term in self.reference_terms if term not in self.arm_terms]

    @property
    def formula(self) -> str:
        """What is computed per seed, e.g. ``mAP[AdaSP@v] - each(mAP[SP-H@v], mAP[SP-LH@v]) + 1``."""

        def total(terms: list[tuple[str, str]]) -> str:
            text = " + ".join(("" if self.weight(term[0]) == 1 else f"{self.weight(term[0]):.3g} x ") + term_label(*term)
                              for term in terms)
            return f"({text})" if len(terms) > 1 else text

        arm = total(self.arm_terms)
        if not self.is_iut:
            return f"{arm} - {total(self.reference_terms)}"
        each = "each(" + ", ".join(term_label(*term) for term in self.competitor_terms) + ")"
        return f"{arm} - {each}" + (f" + {self.margin:g}" if self.combine == "within" else "")

    def comparisons(self, frame: pd.DataFrame, scale: float = 100.0) -> dict[str | None, pd.Series]:
        """The per-seed values (points) over the seeds counted in every term: one series, keyed None, for
        difference / contrast; one per competitor point for best-of / within."""
        sides = self.competitor_terms if self.is_iut else self.reference_terms
        values = paired_values(frame, self.arm_terms + sides, scale)
        def total(terms: list[tuple[str, str]]) -> pd.Series:
            return sum((values[term_label(*term)] * self.weight(term[0]) for term in terms),
                       start=values.iloc[:, :0].sum(axis=1))

        arm = total(self.arm_terms)
        if not self.is_iut:
            return {None: arm - total(sides)}
        shift = self.margin if self.combine == "within" else 0.0
        return {point: arm - values[term_label(point, metric)] + shift for point, metric in sides}


# --------------------------------------------------------------------------------------------------------------
# Tests


@dataclass(frozen=True)
class DirectionalResult:
    """One comparison's paired test, split by side, plus its equivalence test at ``margin``."""

    delta: float
    ci_low: float
    ci_high: float
    n_pairs: int
    p_perm: float
    p_support: float  # 2 x one-sided p of "value > 0", capped at 1
    p_contradict: float  # 2 x one-sided p of "value < 0", capped at 1
    p_equivalence: float  # TOST at ±margin: 2 x the larger one-sided p, capped at 1


def directional_test(values: Iterable[float], margin: float, confidence: float = 0.95) -> DirectionalResult:
    """The paired t-test of per-seed values against 0 by side, and the TOST of |mean| < ``margin``. With all
    values equal (no spread) the sides and the equivalence are decided exactly; with fewer than 2, nothing is."""
    from scipy import stats

    paired = paired_test(values, confidence)
    n, delta = paired.n_pairs, paired.delta
    nan = math.nan
    if n < 2:
        return DirectionalResult(delta, nan, nan, n, paired.p_perm, nan, nan, nan)
    if paired.sd == 0.0:
        p_support = 0.0 if delta > 0 else 1.0
        p_contradict = 0.0 if delta < 0 else 1.0
        p_equivalence = 0.0 if abs(delta) < margin else 1.0
    else:
        se, df = paired.sd / math.sqrt(n), n - 1
        p_support = float(stats.t.sf(delta / se, df))
        p_contradict = float(stats.t.cdf(delta / se, df))
        p_equivalence = max(float(stats.t.sf((delta + margin) / se, df)), float(stats.t.cdf((delta - margin) / se, df)))
        p_support, p_contradict, p_equivalence = (min(1.0, 2 * p) for p in (p_support, p_contradict, p_equivalence))
    return DirectionalResult(delta, paired.ci_low, paired.ci_high, n, paired.p_perm, p_support, p_contradict,
                             p_equivalence)


def verdict(direction: str, p_holm: float, p_holm_equivalence: float | None = None, testable: bool = True,
            alpha: float = ALPHA) -> str:
    """The verdict rule, once: untestable when the claim's manipulation check failed; supported / contradicted
    when the Holm-corrected direction p is below ``alpha`` (``direction``: "support" or "contradict", the side
    with the smaller p); no-effect when the Holm-corrected equivalence p is; inconclusive otherwise (also when a p
    is undefined)."""
    if not testable:
        return "untestable"
    if p_holm < alpha:  # False for nan
        return "supported" if direction == "support" else "contradicted"
    if p_holm_equivalence is not None and p_holm_equivalence < alpha:
        return "no-effect"
    return "inconclusive"


def _claim_tests(comparisons: Mapping[str | None, Any], claim: Claim, confidence: float) -> dict[str, Any]:
    """Direction and equivalence p of a claim from its comparisons, with the least favourable one's numbers."""
    results = {point: directional_test(values, claim.margin, confidence) for point, values in comparisons.items()}
    worst = max(results, key=lambda k: (_finite_or(results[k].p_support, math.inf), -_finite_or(results[k].delta, 0.0)))
    p_support = max(r.p_support for r in results.values())
    p_contradict = min(1.0, len(results) * min(r.p_contradict for r in results.values()))
    if any(math.isnan(r.p_support) for r in results.values()):
        p_support = p_contradict = math.nan
    chosen = results[worst]
    record = {
        "delta": chosen.delta, "ci_low": chosen.ci_low, "ci_high": chosen.ci_high, "n_pairs": chosen.n_pairs,
        "p_perm": chosen.p_perm, "p_support": p_support, "p_contradict": p_contradict,
        "direction": "support" if not p_contradict < p_support else "contradict",
        "p": min(p_support, p_contradict) if not math.isnan(p_support) else math.nan,
        "p_equivalence": (max(r.p_equivalence for r in results.values()) if claim.has_equivalence else None),
    }
    if claim.is_iut:
        record["least_favourable"] = worst
        record["competitors"] = [{"point": point, "delta": r.delta, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                  "p_support": r.p_support, "p_contradict": r.p_contradict}
                                 for point, r in results.items()]
    return record


def _finite_or(value: float, default: float) -> float:
    return default if math.isnan(value) else value


# --------------------------------------------------------------------------------------------------------------
# Lost runs


def lost_seeds(frame: pd.DataFrame, claim: Claim, seeds: Sequence[int]) -> dict[str, list[int]]:
    """Per point of ``claim``, the planned ``seeds`` without a counted value (failed or missing runs)."""
    lost = {}
    for point, metric in claim.arm_terms + claim.reference_terms:
        counted = set(arm_values(frame, point, metric).index)
        missing = [int(s) for s in seeds if s not in counted]
        if missing:
            lost[point] = sorted(set(lost.get(point, [])) | set(missing))
    return lost


def chance_by_point(frame: pd.DataFrame) -> dict[str, float]:
    """The chance mAP (a fraction) of each point's test split: from its own runs, else from any run on the same
    data root (a point whose every run failed recorded none)."""
    import pandas as pd

    if "chance_mAP" not in frame.columns:
        return {}
    chance = pd.to_numeric(frame["chance_mAP"], errors="coerce")
    by_point = chance.groupby(frame["point"]).median().dropna().to_dict()
    if "param.data_root" in frame.columns:
        by_root = chance.groupby(frame["param.data_root"]).median().dropna().to_dict()
        for point, root in frame.groupby("point")["param.data_root"].first().items():
            if point not in by_point and root in by_root:
                by_point[point] = by_root[root]
    return {str(k): float(v) for k, v in by_point.items()}


def _at_chance(frame: pd.DataFrame, lost: Mapping[str, Sequence[int]], claim: Claim,
               chance: Mapping[str, float]) -> pd.DataFrame:
    """``frame`` with every lost (point, seed) run scored at its split's chance level, on the claim's metrics."""
    import pandas as pd

    metrics = claim.metrics
    rows = [{"point": point, "seed": seed, "status": "ok", **{m: chance.get(point, math.nan) for m in metrics}}
            for point, seeds in lost.items() for seed in seeds]
    lost_runs = [point in lost and pd.notna(seed) and int(seed) in lost[point]
                 for point, seed in zip(frame["point"], frame["seed"], strict=True)]
    kept = frame[~pd.Series(lost_runs, index=frame.index, dtype=bool)]
    return pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# Evaluating a set of claims


def evaluate_claims(
    frame: pd.DataFrame,
    claims: Sequence[Claim],
    controls: Mapping[str, Mapping[str, Any]] | None = None,
    seeds: Sequence[int] | None = None,
    confidence: float = 0.95,
    alpha: float = ALPHA,
    scale: float = 100.0,
) -> list[dict[str, Any]]:
    """One dict per claim, in points: ``id, source, statement, metric, arm, reference, margin, delta, ci_low,
    ci_high, n_pairs, p, p_holm, p_equivalence, p_holm_equivalence, verdict, controls, formula, p_perm,
    p_support, p_contradict`` (IUT claims add ``least_favourable`` and per-``competitors`` numbers), and
    ``lost`` / ``sensitivity`` when a planned seed has no counted run.

    ``controls``: measured manipulation checks by name (``{name, value, threshold, passed, ...}``); a claim that
    names a check that failed or was not measured is untestable. ``seeds``: the planned seeds (default: every
    seed in ``frame``), to find lost runs."""
    import pandas as pd

    controls = controls or {}
    if seeds is None:
        seeds = frame["seed"].dropna() if len(frame) else []
    planned = sorted({int(s) for s in seeds})
    chance = chance_by_point(frame)
    results = []
    for claim in claims:
        comparisons = claim.comparisons(frame, scale)
        tests = _claim_tests(comparisons, claim, confidence)
        checks = [dict(controls.get(name) or {"name": name, "value": None, "threshold": None, "passed": False,
                                               "description": "not measured"}) for name in claim.controls]
        record: dict[str, Any] = {
            "id": claim.id, "source": claim.source, "statement": claim.statement, "metric": claim.metric,
            "arm": claim.arm if isinstance(claim.arm, str) else list(claim.arm),
            "reference": claim.reference if isinstance(claim.reference, str) else list(claim.reference),
            "combine": claim.combine, "margin": claim.margin, "published": claim.published, **tests,
            "p_holm": math.nan, "p_holm_equivalence": None if tests["p_equivalence"] is None else math.nan,
            "verdict": "inconclusive", "controls": checks,
            "testable": all(check.get("passed") is True for check in checks),
            "formula": f"{claim.formula} = " + ("n/a" if math.isnan(tests["delta"]) else f"{tests['delta']:+.2f}")
                       + (f" (least favourable: {tests['least_favourable']})" if claim.is_iut else ""),
        }
        lost = lost_seeds(frame, claim, planned)
        if lost:
            record["lost"] = lost
            scored = _at_chance(frame, lost, claim, chance) if len(frame) else pd.DataFrame()
            sensitivity = _claim_tests(claim.comparisons(scored, scale), claim, confidence) if len(scored) else {}
            record["sensitivity"] = {"note": "lost runs scored at their split's chance mAP",
                                     **{k: sensitivity.get(k, math.nan) for k in
                                        ("delta", "ci_low", "ci_high", "n_pairs", "p")}}
        results.append(record)
    for source in dict.fromkeys(r["source"] for r in results):
        family = [r for r in results if r["source"] == source and r["testable"]]
        tests = [(r, "p") for r in family] + [(r, "p_equivalence") for r in family if r["p_equivalence"] is not None]
        adjusted = holm([r[key] for r, key in tests])
        for (record, key), value in zip(tests, adjusted, strict=True):
            record["p_holm" if key == "p" else "p_holm_equivalence"] = float(value)
        for record in (r for r in results if r["source"] == source):
            record["verdict"] = verdict(record["direction"], record["p_holm"], record["p_holm_equivalence"],
                                        record["testable"], alpha)
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


def _rounded(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if k in ("delta", "ci_low", "ci_high") and isinstance(v, float) and math.isfinite(v)
            else v for k, v in record.items()}


def claims_json(seeds: Iterable[int], reference_mAP: float, claims_results: Sequence[Mapping[str, Any]],
                **extra: Any) -> dict:
    """``{"seeds", "reference_mAP", "claims", **extra}`` ready for json.dumps(allow_nan=False): nan -> None, numpy
    scalars as Python numbers, delta / ci_low / ci_high rounded to 2 decimals (points, also per competitor and in
    the sensitivity line); p-values unrounded. ``extra``: e.g. the backbone's pretraining loss, per-arm counts."""
    claims = []
    for result in claims_results:
        record = _rounded(result)
        if "competitors" in record:
            record["competitors"] = [_rounded(c) for c in record["competitors"]]
        if "sensitivity" in record:
            record["sensitivity"] = _rounded(record["sensitivity"])
        claims.append(_json_safe(record))
    return {"seeds": _json_safe(list(seeds)), "reference_mAP": _json_safe(reference_mAP), "claims": claims,
            **_json_safe(dict(extra))}


def arm_summary(frame: pd.DataFrame, points: Iterable[str], seeds: Sequence[int], metric: str = "mAP") -> dict:
    """Per point: planned seeds, counted runs, runs that did not learn (counted against the arm) and lost seeds."""
    summary = {}
    for point in dict.fromkeys(points):
        runs = frame[frame["point"] == point] if len(frame) else frame
        counted = set(arm_values(frame, point, metric).index)
        untrained = int(runs["untrained"].eq(True).sum()) if "untrained" in runs.columns else 0
        summary[point] = {"planned": len(seeds), "counted": len(counted), "untrained": untrained,
                          "lost": [int(s) for s in seeds if s not in counted]}
    return summary

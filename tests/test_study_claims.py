"""reidlab.study.claims: the verdict rule (direction, intersection-union, non-inferiority, TOST equivalence, one Holm
family per source, untestable claims), lost runs and claims.json. Expected numbers are worked out in the test from
scipy's t distribution or by brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reidlab.study import claims as cl
from reidlab.study import stats


def frame_of(arms: dict[str, list[float]], metric: str = "mAP", **extra: dict[str, list[float]]) -> pd.DataFrame:
    """A collect()-shaped frame: arm -> per-seed values IN POINTS (seed = position; nan = a failed run), stored
    as fractions; ``extra`` adds other metric columns (metric -> {arm: values})."""
    rows = []
    for point, values in arms.items():
        for seed, value in enumerate(values):
            failed = math.isnan(value)
            row = {"point": point, "seed": seed, "status": "failed" if failed else "ok", metric: value / 100,
                   "chance_mAP": 0.02}
            for other, by_arm in extra.items():
                row[other] = by_arm[point][seed] / 100 if point in by_arm else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def two_sided_by_side(d: np.ndarray) -> tuple[float, float]:
    """2 x the one-sided t p-values (support: mean > 0; contradict: mean < 0), capped at 1."""
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    return min(1.0, 2 * sps.t.sf(t, d.size - 1)), min(1.0, 2 * sps.t.cdf(t, d.size - 1))


# ---------------------------------------------------------------------------------------------------------------
# the verdict rule


@pytest.mark.parametrize("direction, p_holm, p_eq, testable, expected", [
    ("support", 0.01, None, True, "supported"),
    ("contradict", 0.01, 0.5, True, "contradicted"),
    ("support", 0.20, 0.01, True, "no-effect"),
    ("support", 0.20, 0.20, True, "inconclusive"),
    ("support", 0.20, None, True, "inconclusive"),  # non-inferiority: never no-effect
    ("support", 0.001, 0.001, False, "untestable"),  # a failed manipulation check overrides everything
    ("support", math.nan, math.nan, True, "inconclusive"),
])
def test_verdict_rule(direction, p_holm, p_eq, testable, expected):
    assert cl.verdict(direction, p_holm, p_eq, testable) == expected


def test_directional_test_sides_and_tost_against_scipy():
    d = np.array([0.3, 0.5, -0.1, 0.4, 0.2])
    result = cl.directional_test(d, margin=1.0)
    support, contradict = two_sided_by_side(d)
    assert result.p_support == pytest.approx(support) and result.p_contradict == pytest.approx(contradict)
    assert min(result.p_support, result.p_contradict) == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    se = d.std(ddof=1) / math.sqrt(5)
    tost = max(sps.t.sf((d.mean() + 1) / se, 4), sps.t.cdf((d.mean() - 1) / se, 4))
    assert result.p_equivalence == pytest.approx(min(1.0, 2 * tost))
    # TOST below 0.05 exactly when the 95% interval lies inside ±margin.
    for margin in (0.4, 0.6, 1.0):
        inside = -margin < result.ci_low and result.ci_high < margin
        assert (cl.directional_test(d, margin).p_equivalence < 0.05) == inside
    constant = cl.directional_test([0.5, 0.5, 0.5], margin=1.0)
    assert (constant.p_support, constant.p_contradict, constant.p_equivalence) == (0.0, 1.0, 0.0)
    single = cl.directional_test([0.5], margin=1.0)
    assert single.n_pairs == 1 and math.isnan(single.p_support)


# ---------------------------------------------------------------------------------------------------------------
# claims on hand-made runs


def test_adasp_108_points_below_the_better_is_never_no_effect():
    # The case: AdaSP 1.08 points below the better arm; AdaSP - better + 1 has CI about [-0.22, +0.06].
    better = np.array([80.0, 81.0, 79.0, 80.5, 79.5])
    below = np.array([1.20, 0.95, 1.13, 1.00, 1.12])  # mean 1.08, tight
    frame = frame_of({"SP-H": list(better), "SP-LH": list(better - 3), "AdaSP": list(better - below)})
    claim = cl.Claim("within", "AdaSP", "AdaSP within 1 of the better", arm="AdaSP", reference=["SP-H", "SP-LH"],
                     combine="within", margin=1.0)
    result = cl.evaluate_claims(frame, [claim])[0]
    assert result["delta"] == pytest.approx(-0.08) and result["least_favourable"] == "SP-H"
    assert result["ci_low"] == pytest.approx(-0.22, abs=0.02) and result["ci_high"] == pytest.approx(0.06, abs=0.02)
    assert result["p_equivalence"] is None and result["p_holm_equivalence"] is None
    assert result["verdict"] == "inconclusive"  # the old ±1 band called this no-effect
    far = frame_of({"SP-H": list(better), "SP-LH": list(better - 3), "AdaSP": list(better - below - 1)})
    assert cl.evaluate_claims(far, [claim])[0]["verdict"] == "contradicted"
    close = frame_of({"SP-H": list(better), "SP-LH": list(better - 3), "AdaSP": list(better - below + 1.5)})
    assert cl.evaluate_claims(close, [claim])[0]["verdict"] == "supported"


IUT_ARMS = {
    "CJ": [45.0, 46.0, 44.0, 45.0, 46.0, 44.0],
    "GB": [55.0, 56.0, 54.0, 55.0, 56.0, 54.0],
    "GT": [56.0, 57.5, 55.0, 56.0, 57.5, 56.0],
    "GS": [56.5, 58.0, 55.5, 57.0, 57.5, 56.5],
}


def test_best_of_is_an_intersection_union_test():
    claim = cl.Claim("best", "HBReID", "GS is the best", arm="GS", reference=["CJ", "GB", "GT", "GS"],
                     combine="best-of", margin=0.5)
    result = cl.evaluate_claims(frame_of(IUT_ARMS), [claim])[0]
    per = {k: two_sided_by_side(np.subtract(IUT_ARMS["GS"], IUT_ARMS[k])) for k in ("CJ", "GB", "GT")}
    assert result["p_support"] == pytest.approx(max(s for s, _ in per.values()))  # the largest of theirs
    assert result["p_contradict"] == pytest.approx(min(1.0, 3 * min(c for _, c in per.values())))
    assert result["p"] == pytest.approx(result["p_support"])
    # The reported interval is the least favourable competitor's: GT, not the highest-mean pick alone.
    assert result["least_favourable"] == "GT"
    assert result["delta"] == pytest.approx(np.mean(np.subtract(IUT_ARMS["GS"], IUT_ARMS["GT"])))
    assert [c["point"] for c in result["competitors"]] == ["CJ", "GB", "GT"]
    assert result["formula"].startswith("mAP[GS] - each(mAP[CJ], mAP[GB], mAP[GT]) = ")
    assert result["formula"].endswith("(least favourable: GT)")


def test_best_of_contradiction_keeps_its_level_under_the_global_null():
    # Four equal arms, 5 seeds: the old rule (test only the highest-mean competitor) said "contradicted" 5.5-5.9%
    # of the time; the intersection-union rule stays at or below the nominal 2.5% of one side.
    rng = np.random.default_rng(0)
    claim = cl.Claim("best", "HBReID", "s", arm="GS", reference=["CJ", "GB", "GT"], combine="best-of", margin=0.5)
    contradicted = 0
    reps = 2000
    for _ in range(reps):
        seed_effect = rng.normal(0, 1, 5)
        arms = {k: pd.Series(seed_effect + rng.normal(0, 1, 5)) for k in ("GS", "CJ", "GB", "GT")}
        tests = cl._claim_tests({k: arms["GS"] - arms[k] for k in ("CJ", "GB", "GT")}, claim, 0.95)
        contradicted += tests["direction"] == "contradict" and tests["p"] < 0.05
    assert contradicted / reps <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / reps)


def test_no_effect_is_a_tost_in_the_same_holm_family():
    base = [50.0, 51.0, 49.0, 52.0, 48.0, 50.0]
    arms = {"A": base, "B": [v + d for v, d in zip(base, [0.1, -0.1, 0.05, 0.0, -0.05, 0.1])],
            "C": [v + d for v, d in zip(base, [3, 3, 3, 4, 3, 3])]}
    claims = [cl.Claim("tiny", "HBReID", "B beats A", arm="B", reference="A", margin=0.5),
              cl.Claim("big", "HBReID", "C beats A", arm="C", reference="A", margin=0.5),
              cl.Claim("narrow", "HBReID", "B beats A (margin 0.01)", arm="B", reference="A", margin=0.01)]
    results = {r["id"]: r for r in cl.evaluate_claims(frame_of(arms), claims)}
    assert results["tiny"]["verdict"] == "no-effect" and results["big"]["verdict"] == "supported"
    assert results["narrow"]["verdict"] == "inconclusive"  # a margin the interval cannot fit inside
    family = [results[k]["p"] for k in ("tiny", "big", "narrow")] + [results[k]["p_equivalence"] for k in ("tiny", "big", "narrow")]
    adjusted = stats.holm(family)
    got = [results[k]["p_holm"] for k in ("tiny", "big", "narrow")] + [results[k]["p_holm_equivalence"] for k in ("tiny", "big", "narrow")]
    assert got == pytest.approx(list(adjusted))


def test_untestable_claims_leave_the_family():
    arms = {"A": [50.0, 51.0, 49.0, 52.0, 48.0], "B": [53.0, 54.0, 52.0, 56.0, 51.0]}
    claims = [cl.Claim("ok", "AdaSP", "B beats A", arm="B", reference="A", controls=("mechanism",)),
              cl.Claim("missing", "AdaSP", "B beats A", arm="B", reference="A", controls=("unmeasured",)),
              cl.Claim("failed", "AdaSP", "B beats A", arm="B", reference="A", controls=("broken",))]
    controls = {"mechanism": {"name": "mechanism", "value": 0.4, "threshold": 0.2, "passed": True},
                "broken": {"name": "broken", "value": 0.1, "threshold": 0.2, "passed": False}}
    results = {r["id"]: r for r in cl.evaluate_claims(frame_of(arms), claims, controls=controls)}
    assert results["ok"]["verdict"] == "supported" and results["ok"]["controls"] == [controls["mechanism"]]
    assert results["failed"]["verdict"] == "untestable" and results["missing"]["verdict"] == "untestable"
    assert results["missing"]["controls"][0]["description"] == "not measured"
    assert results["ok"]["p_holm"] == pytest.approx(min(1.0, 2 * results["ok"]["p"]))  # its p and its TOST p
    assert math.isnan(results["failed"]["p_holm"])


def test_contrast_difference_and_reference_metric():
    arms = {"X@h": [60.0, 61.0, 59.0, 60.0], "Y@l": [50.0, 51.0, 50.0, 51.0], "Y@h": [58.0] * 4,
            "X@l": [49.0, 50.0, 48.0, 49.0]}
    contrast = cl.Claim("c", "AdaSP", "interaction", arm=["X@h", "Y@l"], reference=["Y@h", "X@l"], combine="contrast")
    result = cl.evaluate_claims(frame_of(arms), [contrast])[0]
    assert result["delta"] == pytest.approx(3.5) and result["n_pairs"] == 4
    assert result["formula"] == "(mAP[X@h] + mAP[Y@l]) - (mAP[Y@h] + mAP[X@l]) = +3.50"
    rerank = cl.Claim("r", "HBReID", "re-ranking", arm="A", reference="A", metric="mAP_rerank", reference_metric="mAP")
    frame = frame_of({"A": [50.0, 51.0, 49.0]}, mAP_rerank={"A": [52.0, 54.0, 51.0]})
    result = cl.evaluate_claims(frame, [rerank])[0]
    assert result["delta"] == pytest.approx(7 / 3) and result["formula"] == "mAP_rerank[A] - mAP[A] = +2.33"


def test_lost_runs_are_reported_with_a_sensitivity_line_at_chance():
    arms = {"A": [50.0, 51.0, 49.0, 52.0, 48.0], "B": [53.0, 54.0, math.nan, 56.0, 51.0]}  # B's seed 2 failed
    claim = cl.Claim("d", "AdaSP", "B beats A", arm="B", reference="A")
    result = cl.evaluate_claims(frame_of(arms), [claim], seeds=[0, 1, 2, 3, 4])[0]
    assert result["n_pairs"] == 4 and result["lost"] == {"B": [2]}
    d = np.array([3.0, 3.0, 2.0 - 49.0, 4.0, 3.0])  # the lost run at chance (2 mAP)
    assert result["sensitivity"]["delta"] == pytest.approx(d.mean()) and result["sensitivity"]["n_pairs"] == 5
    # A seed never run at all is lost too.
    assert cl.evaluate_claims(frame_of(arms), [claim], seeds=[0, 1, 2, 3, 4, 5])[0]["lost"] == {"A": [5], "B": [2, 5]}
    summary = cl.arm_summary(frame_of(arms), ["A", "B"], [0, 1, 2, 3, 4])
    assert summary["B"] == {"planned": 5, "counted": 4, "untrained": 0, "lost": [2]}


def test_claim_without_runs_is_inconclusive():
    claim = cl.Claim("missing", "HBReID", "a point never run", arm="nope", reference="A")
    result = cl.evaluate_claims(frame_of({"A": [50.0, 51.0]}), [claim], seeds=[0, 1])[0]
    assert result["n_pairs"] == 0 and result["verdict"] == "inconclusive"
    assert result["formula"] == "mAP[nope] - mAP[A] = n/a" and result["lost"] == {"nope": [0, 1]}


def test_claim_validation():
    with pytest.raises(ValueError, match="combine"):
        cl.Claim("x", "AdaSP", "s", arm="A", reference="B", combine="ratio")
    with pytest.raises(ValueError, match="source"):
        cl.Claim("x", "Other", "s", arm="A", reference="B")
    with pytest.raises(ValueError, match="one reference point"):
        cl.Claim("x", "AdaSP", "s", arm="A", reference=["B", "C"])
    with pytest.raises(ValueError, match="one arm point"):
        cl.Claim("x", "AdaSP", "s", arm=["A", "B"], reference=["C"], combine="best-of")
    with pytest.raises(ValueError, match="no competitor"):
        cl.Claim("x", "AdaSP", "s", arm="A", reference=["A"], combine="best-of")
    with pytest.raises(ValueError, match="margin"):
        cl.Claim("x", "AdaSP", "s", arm="A", reference="B", margin=0)


def test_claims_json_is_strict_json():
    frame = frame_of({**IUT_ARMS, "A": [50.0] * 6})
    claims = [cl.Claim("best", "HBReID", "s", arm="GS", reference=["CJ", "GB", "GT"], combine="best-of", margin=0.5),
              cl.Claim("missing", "HBReID", "s", arm="nope", reference="A")]
    results = cl.evaluate_claims(frame, claims)
    payload = cl.claims_json(np.array([0, 1, 2]), math.nan, results, backbone={"loss": "ce"})
    back = json.loads(json.dumps(payload, allow_nan=False))
    assert set(back) == {"seeds", "reference_mAP", "claims", "backbone"} and back["backbone"] == {"loss": "ce"}
    assert back["seeds"] == [0, 1, 2] and back["reference_mAP"] is None
    best, missing = back["claims"]
    assert best["delta"] == round(results[0]["delta"], 2) and best["p"] == results[0]["p"]
    assert all(c["delta"] == round(c["delta"], 2) for c in best["competitors"])
    assert missing["delta"] is None and missing["p"] is None and missing["n_pairs"] == 0
    for key in ("controls", "margin", "n_pairs", "p", "p_holm", "verdict"):
        assert key in best

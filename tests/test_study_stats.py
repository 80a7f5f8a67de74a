"""reidlab.study.stats: paired tests by seed, the exact sign-flip p, Holm, the paired table and untrained-run
flags. Every expected number is worked out by hand (or by brute force) in the test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reidlab.study import stats


def frame_of(arms: dict[str, list[float]], metric: str = "mAP", **extra: dict[str, list[float]]) -> pd.DataFrame:
    """A collect()-shaped frame: arm -> per-seed values IN POINTS (seed = position), stored as fractions;
    ``extra`` adds other metric columns (metric -> {arm: values}) on the same rows."""
    rows = []
    for point, values in arms.items():
        for seed, value in enumerate(values):
            row = {"point": point, "seed": seed, "status": "ok", metric: value / 100}
            for other, by_arm in extra.items():
                row[other] = by_arm[point][seed] / 100 if point in by_arm else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# paired_test


def test_paired_t_by_hand_and_against_ttest_rel():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    mean, sd = 3.5, math.sqrt(17.5 / 5)  # sum of squared deviations 17.5, n - 1 = 5
    assert sd == pytest.approx(1.8708, abs=1e-4)
    t = mean / (sd / math.sqrt(6))
    assert t == pytest.approx(4.583, abs=1e-3)
    half = sps.t.ppf(0.975, 5) * sd / math.sqrt(6)
    result = stats.paired_test(d)
    assert result.n_pairs == 6 and result.delta == pytest.approx(mean) and result.sd == pytest.approx(sd)
    assert result.p == pytest.approx(2 * sps.t.sf(t, 5))
    assert (result.ci_low, result.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    # The same p as scipy's paired test on two columns whose difference is d.
    reference = np.array([50.0, 48.0, 53.0, 51.0, 47.0, 52.0])
    assert result.p == pytest.approx(sps.ttest_rel(reference + d, reference).pvalue)
    # Six positive differences: only the all-plus and all-minus patterns reach |sum| = 21, so p_perm = 2 / 64.
    assert result.p_perm == pytest.approx(2 / 64)


def test_paired_test_small_and_degenerate_samples():
    one = stats.paired_test([2.0])
    assert one.n_pairs == 1 and one.delta == 2.0 and math.isnan(one.ci_low) and math.isnan(one.p)
    empty = stats.paired_test([])
    assert empty.n_pairs == 0 and math.isnan(empty.delta) and math.isnan(empty.p)
    assert math.isnan(stats.paired_test([1.0, 2.0, 4.0, 3.0, 5.0]).p_perm)  # n < 6: no permutation p
    same = stats.paired_test([2.0, 2.0, 2.0])  # every seed moved by the same amount
    assert same.p == 0.0 and (same.ci_low, same.ci_high) == (2.0, 2.0) and same.sd == 0.0
    assert stats.paired_test([0.0, 0.0, 0.0]).p == 1.0
    assert stats.paired_test([1.0, math.nan, 3.0]).n_pairs == 2  # non-finite differences are dropped


@pytest.mark.parametrize("d", [
    [0.5, -1.2, 2.0, 3.1, -0.4, 1.7, 0.9],
    [1.0, 1.0, 1.0, 1.0, 1.0, -1.0],  # ties: many patterns share the observed |sum|
    [0.3, -0.3, 0.2, -0.2, 0.1, -0.1, 0.05, 2.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
])
def test_sign_flip_p_matches_brute_force(d):
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-9
               for signs in itertools.product((1, -1), repeat=len(d)))
    expected = hits / 2 ** len(d)
    assert stats.sign_flip_p(d) == pytest.approx(expected)
    assert stats.paired_test(d).p_perm == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------------
# holm


def test_holm_by_hand_monotone_and_nan_passthrough():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    p = np.array([0.2, 0.01, 0.5, 0.03, 0.04])
    adjusted = stats.holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0) and np.all(adjusted >= p)
    assert stats.holm([0.6, 0.7])[1] == 1.0  # capped: 0.6 * 2 = 1.2
    with_nan = stats.holm([0.01, math.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])  # m = 2, not 3
    assert np.isnan(stats.holm([math.nan])).all() and stats.holm([]).size == 0


# ---------------------------------------------------------------------------------------------------------------
# pairing and the paired table


def test_paired_values_keeps_only_common_counted_seeds():
    rows = [{"point": "A", "seed": s, "status": "ok", "mAP": 0.50 + s / 100} for s in range(5)]
    rows[4]["mAP"] = math.nan  # A seed 4: no value
    rows += [{"point": "B", "seed": s, "status": "ok", "mAP": 0.60 + s / 100} for s in range(1, 6)]
    rows[5 + 1]["status"] = "failed"  # B seed 2 failed (its value must not count)
    frame = pd.DataFrame(rows)
    pairs = stats.paired_values(frame, [("A", "mAP"), ("B", "mAP")], scale=100)
    assert list(pairs.columns) == ["mAP[A]", "mAP[B]"] and list(pairs.index) == [1, 3]
    assert pairs.loc[3].tolist() == pytest.approx([53.0, 63.0])
    # A run flagged untrained stays in the pairing, with its value (a failure of its arm).
    flagged = frame.assign(untrained=(frame["point"] == "A") & (frame["seed"] == 3))
    assert list(stats.paired_values(flagged, [("A", "mAP"), ("B", "mAP")]).index) == [1, 3]
    # An unknown point or metric pairs nothing; a repeated term is one column.
    assert stats.paired_values(frame, [("A", "mAP"), ("C", "mAP")]).empty
    assert stats.paired_values(frame, [("A", "mAP"), ("B", "rank1")]).empty
    assert list(stats.paired_values(frame, [("A", "mAP"), ("A", "mAP")]).columns) == ["mAP[A]"]


def test_paired_table_pairs_by_seed():
    base, big, same = [50.0, 51.0, 49.0], [70.0, 72.0, 69.0], [50.0, 52.0, 48.0]
    frame = frame_of({"base": base, "big": big, "same": same}, rank1={"base": base, "big": big, "same": same})
    failed = {"point": "big", "seed": 3, "status": "failed", "mAP": math.nan, "rank1": math.nan}
    frame = pd.concat([frame, pd.DataFrame([failed])], ignore_index=True)
    table = stats.paired_table(frame, {"Baseline": "base", "+Big": "big", "+Same": "same"}, reference="Baseline")
    assert list(table.index) == ["Baseline", "+Big", "+Same"]
    assert table.loc["+Big", "runs"] == 3 and table.loc["+Big", "pairs"] == 3  # the failed run does not count
    assert table.loc["+Big", "mAP mean"] == pytest.approx(70.333333)
    assert table.loc["+Big", "mAP ±CI"] == pytest.approx(stats.mean_ci(big)[1])
    d = np.subtract(big, base)  # 20, 21, 20
    assert table.loc["+Big", "mAP Δ"] == pytest.approx(61 / 3)
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert table.loc["+Big", "mAP Δ low"] == pytest.approx(61 / 3 - half)
    assert table.loc["+Big", "mAP Δ high"] == pytest.approx(61 / 3 + half)
    assert table.loc["+Big", "mAP p"] == pytest.approx(sps.ttest_rel(big, base).pvalue)
    assert table.loc["+Same", "mAP p"] == pytest.approx(sps.ttest_rel(same, base).pvalue)
    assert table.loc["+Same", "mAP Δ"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(table.loc["+Big", "mAP p_perm"])  # 3 pairs: too few for a permutation p
    assert table.loc["+Big", "rank1 Δ"] == pytest.approx(61 / 3)
    p = table.loc[["+Big", "+Same"], "mAP p"].to_numpy()
    assert table.loc[["+Big", "+Same"], "mAP p_holm"].to_numpy() == pytest.approx(stats.holm(p))
    reference_row = table.loc["Baseline"]
    assert all(math.isnan(reference_row[c]) for c in ("mAP Δ", "mAP p", "mAP p_holm", "pairs"))
    assert reference_row["runs"] == 3


def test_paired_table_differs_from_unpaired_when_seeds_differ():
    # The reference has an extra seed the arm lacks: Δ is over the common seeds, not the difference of means.
    frame = frame_of({"ref": [50.0, 51.0, 40.0], "arm": [52.0, 53.0]})
    table = stats.paired_table(frame, {"ref": "ref", "arm": "arm"}, reference="ref", metrics=("mAP",))
    assert table.loc["arm", "pairs"] == 2 and table.loc["arm", "mAP Δ"] == pytest.approx(2.0)
    assert table.loc["ref", "mAP mean"] == pytest.approx(47.0)
    with pytest.raises(ValueError, match="reference 'nope'"):
        stats.paired_table(frame, {"ref": "ref"}, reference="nope")
    with pytest.raises(ValueError, match="primary metric"):
        stats.paired_table(frame, {"ref": "ref"}, reference="ref", metrics=("rank1",))


# ---------------------------------------------------------------------------------------------------------------
# untrained runs


def test_untrained_runs_flags_near_chance_and_collapsed():
    frame = pd.DataFrame([
        {"point": "p", "seed": 0, "status": "ok", "mAP": 0.020, "embedding_spread": 0.5},  # < 1% + 2 points
        {"point": "p", "seed": 1, "status": "ok", "mAP": 0.050, "embedding_spread": 0.5},  # fine
        {"point": "p", "seed": 2, "status": "ok", "mAP": 0.031, "embedding_spread": 0.5},  # just above 3%
        {"point": "p", "seed": 3, "status": "ok", "mAP": 0.600, "embedding_spread": 1e-4},  # collapsed
        {"point": "p", "seed": 4, "status": "ok", "mAP": 0.010, "embedding_spread": 0.0},  # both
        {"point": "p", "seed": 5, "status": "failed", "mAP": math.nan, "embedding_spread": math.nan},
    ], index=[10, 11, 12, 13, 14, 15])
    reasons = stats.untrained_runs(frame, chance_mAP=0.01)
    assert list(reasons.index) == [10, 11, 12, 13, 14, 15]
    assert reasons[10] == "mAP 2.00 < chance 1.00 + 2 points"
    assert reasons[11] == "" and reasons[12] == "" and reasons[15] == ""
    assert reasons[13] == "embedding_spread 0.0001 < 0.001 (collapsed)"
    assert reasons[14].startswith("mAP 1.00 < chance") and reasons[14].endswith("(collapsed)")
    flagged = stats.with_untrained_flags(frame, 0.01)
    assert flagged["untrained"].tolist() == [True, False, False, True, True, False]
    assert "untrained" not in frame  # a copy
    # Runs that did not learn still count, with their value: leaving them out would flatter their arm.
    assert stats.arm_values(flagged, "p", "mAP", 100).tolist() == pytest.approx([2.0, 5.0, 3.1, 60.0, 1.0])
    # Without an embedding_spread column only the chance margin applies.
    assert stats.untrained_runs(frame.drop(columns="embedding_spread"), 0.01)[13] == ""


# ---------------------------------------------------------------------------------------------------------------
# the paired table against a straightforward reference


def random_study(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, str], str]:
    """Points with missing seeds, re-runs of a seed (averaged), failed runs, nan values, a label without runs and
    a label that names the reference's point again."""
    rows = []
    for p in range(int(rng.integers(2, 6))):
        for seed in range(int(rng.integers(5, 14))):
            for _ in range(int(rng.choice([0, 1, 1, 1, 1, 1, 1, 2]))):
                rows.append({"point": f"p{p}", "seed": seed, "status": rng.choice(["ok"] * 12 + ["failed", "unreadable"]),
                             "mAP": rng.normal(0.5, 0.1) if rng.random() > 0.05 else math.nan,
                             "rank1": round(rng.uniform(0.4, 0.8), 2) if rng.random() > 0.05 else math.nan})
    frame = pd.DataFrame(rows, columns=["point", "seed", "status", "mAP", "rank1"])
    labels = {f"arm {p}": p for p in sorted({*frame["point"], "p9"})}
    reference = str(rng.choice(list(labels)))
    return frame, {**labels, "again": labels[reference]}, reference


def reference_row(frame: pd.DataFrame, point: str, reference_point: str, metric: str) -> dict[str, float]:
    """One row worked out on its own: pandas pairing by seed, scipy's t-test and interval, every sign pattern."""
    counted = frame[(frame["status"] == "ok") & frame[metric].notna() & (frame["point"] == point)]
    arm = counted.groupby("seed")[metric].mean() * 100
    ref_counted = frame[(frame["status"] == "ok") & frame[metric].notna() & (frame["point"] == reference_point)]
    ref = ref_counted.groupby("seed")[metric].mean() * 100
    row = {"runs": len(arm), "mean": arm.mean() if len(arm) else math.nan,
           "ci": sps.t.ppf(0.975, len(arm) - 1) * arm.std(ddof=1) / math.sqrt(len(arm)) if len(arm) > 1 else math.nan}
    both = pd.merge(arm.rename("arm"), ref.rename("ref"), left_index=True, right_index=True)
    d = (both["arm"] - both["ref"]).to_numpy()
    row.update(pairs=len(d), delta=d.mean() if len(d) else math.nan, low=math.nan, high=math.nan, p=math.nan,
               p_perm=math.nan)
    if len(d) >= 2:
        if np.ptp(d) <= 1e-12 * max(1.0, np.abs(d).max()):  # constant differences: no t statistic
            row.update(low=d.mean(), high=d.mean(), p=0.0 if abs(d.mean()) > 1e-12 else 1.0)
        else:
            half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
            row.update(low=d.mean() - half, high=d.mean() + half, p=sps.ttest_rel(both["arm"], both["ref"]).pvalue)
    if len(d) >= stats.MIN_PERMUTATION_PAIRS:
        observed = abs(d.sum()) - 1e-9 * max(1.0, np.abs(d).sum())
        hits = sum(abs(np.dot(signs, d)) >= observed for signs in itertools.product((1, -1), repeat=len(d)))
        row["p_perm"] = hits / 2 ** len(d) if observed > 0 else 1.0
    return row


def same_bits(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or np.float64(a).tobytes() == np.float64(b).tobytes()


@pytest.mark.parametrize("seed", range(12))
def test_paired_table_matches_a_row_by_row_reference(seed):
    frame, labels, reference = random_study(np.random.default_rng(seed))
    table = stats.paired_table(frame, labels, reference)
    expected_p = []
    for label, point in labels.items():
        row = table.loc[label]
        assert row["runs"] == reference_row(frame, point, labels[reference], "mAP")["runs"]
        for metric in ("mAP", "rank1"):
            # to the last bit, as arm by arm through the public pieces (pandas pairing, one paired_test per row)
            mean, half, _ = stats.mean_ci(stats.arm_values(frame, point, metric, 100), 0.95)
            assert same_bits(row[f"{metric} mean"], mean) and same_bits(row[f"{metric} ±CI"], half)
            if label == reference:
                assert all(math.isnan(row[f"{metric} {c}"]) for c in ("Δ", "Δ low", "Δ high", "p", "p_perm"))
                continue
            pairs = stats.paired_values(frame, [(point, metric), (labels[reference], metric)], 100)
            result = stats.paired_test(pairs.iloc[:, 0] - pairs.iloc[:, -1])
            for column, value in (("Δ", result.delta), ("Δ low", result.ci_low), ("Δ high", result.ci_high),
                                  ("p", result.p), ("p_perm", result.p_perm)):
                assert same_bits(row[f"{metric} {column}"], value), (label, metric, column)
            # and the same numbers as worked out from scratch
            brute = reference_row(frame, point, labels[reference], metric)
            for column, key in (("mean", "mean"), ("±CI", "ci"), ("Δ", "delta"), ("Δ low", "low"),
                                ("Δ high", "high"), ("p", "p"), ("p_perm", "p_perm")):
                assert row[f"{metric} {column}"] == pytest.approx(brute[key], rel=1e-9, abs=1e-9, nan_ok=True), (
                    label, metric, column)
            if metric == "mAP":
                assert row["pairs"] == brute["pairs"]
                expected_p.append(brute["p"])
    not_reference = [label for label in labels if label != reference]
    assert table.loc[not_reference, "mAP p_holm"].to_numpy() == pytest.approx(stats.holm(expected_p), nan_ok=True)

"""The study's plan: profiles, the ablation grid (shared cells, per-table data and settings), the claims it
can test, and the chance level and collapse measure that decide which runs count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab import study
from reidlab.engine.evaluator import embedding_spread
from reidlab.evaluation import chance_level

ROOTS = {0.1: "/d/v0.1", 0.9: "/d/v0.9"}


def plan(**kwargs):
    args = dict(tables=study.TABLES, preset="synth_cpu", overrides={"epochs": 3}, data_root=ROOTS[0.1],
                variation_roots=ROOTS, default_variation=0.1, hbreid_root="/d/hb",
                table_overrides={"adasp": {"optim.lr": 0.01}, "hbreid": {"epochs": 2}})
    return study.ablation_plan(**{**args, **kwargs})


@pytest.mark.parametrize("name", ["quick", "full", "gpu"])
def test_shipped_profiles_load(name):
    profile = study.load_profile(name)
    assert len(profile.seeds) >= 5 and profile.default_variation in profile.variation_levels
    assert profile.variation_knobs["num_test_ids"] >= 100
    assert name in study.available_profiles()
    if profile.pretrain is not None:  # the backbone's copy is big enough to pretrain on, and other identities
        assert profile.pretrain_knobs["num_train_ids"] >= profile.variation_knobs["num_train_ids"]


def test_profile_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no study profile 'nope'.*quick"):
        study.load_profile("nope")
    bad = tmp_path / "bad.yaml"
    for text, message in (
        ("seed: [0]\n", r"unknown keys \['seed'\]"),
        ("variation_levels: [0.1, 0.9]\ndefault_variation: 0.5\n", "default_variation 0.5 is not one of"),
        ("pretrain: {epochs: 2, lr: 0.1}\n", r"pretrain needs 'epochs' and takes only .*unknown keys \['lr'\]"),
        ("pretrain: {epochs: 2, synth_seed: 0}\n", "would see the test identities"),
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            study.load_profile(bad)


def test_plan_shares_cells_and_applies_per_table_settings():
    grid, rows = plan()
    # The AdaSP table at the default level and the variation rows at that level are the same runs.
    assert rows["variation"]["SP-H@0.1"] == rows["adasp"]["SP-H"] == "adasp-SP-H"
    assert rows["hbreid1"]["Default"] == rows["hbreid2"]["baseline"] and rows["hbreid1"]["+GS"] == rows["hbreid2"]["+GS"]
    assert len(grid) == 4 + 3 + 4 + 3  # adasp, variation at 0.9, hbreid2, hbreid1's CJ/GB/GT
    sp_h_high = grid[rows["variation"]["SP-H@0.9"]]
    assert sp_h_high["data_root"] == "/d/v0.9" and sp_h_high["overrides"]["optim.lr"] == 0.01
    hb = grid[rows["hbreid2"]["+GS +HM"]]
    assert hb["data_root"] == "/d/hb" and hb["rerank"] and hb["overrides"]["epochs"] == 2
    assert hb["overrides"]["sampler.name"] == "hard" and "optim.lr" not in hb["overrides"]


def test_plan_only_and_errors():
    grid, rows = plan(only={"adasp": ["AdaSP"], "variation": [], "hbreid2": [], "hbreid1": []})
    assert list(grid) == ["adasp-AdaSP"] and rows == {"adasp": {"AdaSP": "adasp-AdaSP"}}
    with pytest.raises(ValueError, match="rows of 'adasp'"):
        plan(only={"adasp": ["CE"]})
    with pytest.raises(ValueError, match="unknown ablation tables"):
        plan(tables=["adasp", "table9"])
    with pytest.raises(ValueError, match="table_overrides: unknown keys"):
        plan(table_overrides={"hbreid1": {}})


def test_claims_cover_both_sources_with_point_names():
    _, rows = plan()
    claims = {c.id: c for c in study.ablation_claims(rows, 0.1)}
    assert {c.source for c in claims.values()} == {"AdaSP", "HBReID"}
    inter = claims["variation-interaction"]
    assert inter.combine == "contrast"
    assert inter.arm == ["variation-SP-LH_0.9", "adasp-SP-H"] and inter.reference == ["variation-SP-H_0.9", "adasp-SP-LH"]
    within = claims["adasp-within-1-of-better@0.9"]
    assert within.combine == "within" and within.margin == 1.0 and within.arm == "variation-AdaSP_0.9"
    assert claims["adasp-beats-triplet"].reference == "adasp-Triplet"
    assert claims["gs-best-augmentation"].reference == ["hbreid1-CJ", "hbreid1-GB", "hbreid1-GT"]
    rerank = claims["rerank-raises-map"]
    assert rerank.metric == "mAP_rerank" and rerank.reference_metric == "mAP" and rerank.arm == rerank.reference
    assert {"sph-beats-splh-low-variation", "splh-beats-sph-high-variation", "adasp-within-1-of-better@0.1",
            "gs-beats-baseline", "hm-beats-gs", "sr-beats-gs-hm"} <= set(claims)
    # Rows that were not planned drop their claims instead of failing.
    _, few = plan(tables=["adasp"], only={"adasp": ["AdaSP", "Triplet"]})
    assert [c.id for c in study.ablation_claims(few)] == ["adasp-beats-triplet"]


def test_chance_level_matches_the_expected_average_precision():
    # One query, one match among 5 gallery images in another camera: the match's rank is uniform on 1..5,
    # so E[AP] = E[1/rank] = H_5 / 5 and P(rank-1) = 1/5.
    q_pids, g_pids = np.array([1]), np.array([1, 2, 3, 4, 5])
    q_cams, g_cams = np.array([0]), np.array([1, 1, 1, 1, 1])
    result = chance_level(q_pids, g_pids, q_cams, g_cams, draws=4000, seed=0)
    assert result["mAP"] == pytest.approx(sum(1 / k for k in range(1, 6)) / 5, abs=0.02)
    assert result["rank1"] == pytest.approx(0.2, abs=0.02)
    assert chance_level(q_pids, g_pids, q_cams, g_cams, draws=5, seed=3) == chance_level(q_pids, g_pids, q_cams, g_cams, draws=5, seed=3)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        chance_level(q_pids, g_pids, q_cams, g_cams, draws=0)


def test_embedding_spread_is_zero_for_a_collapsed_embedding():
    assert embedding_spread(torch.ones(10, 4) * 3) == pytest.approx(0.0, abs=1e-12)
    assert embedding_spread(torch.eye(8)) == pytest.approx(1 - 1 / 8)
    assert embedding_spread(torch.randn(2000, 64, generator=torch.Generator().manual_seed(0))) > 0.95

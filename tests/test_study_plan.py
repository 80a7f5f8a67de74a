"""The study's plan: profiles, the ablation grid (shared cells, per-table data and settings), the claims it
can test, and the chance level and collapse measure that decide which runs count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab import study
from reidlab.engine.evaluator import embedding_spread
from reidlab.evaluation import chance_level

ROOTS = {"person": "/d/person", "vehicle": "/d/vehicle"}


def plan(**kwargs):
    args = dict(tables=study.TABLES, preset="synth_cpu", overrides={"epochs": 3}, data_root=ROOTS["person"],
                regime_roots=ROOTS, hbreid_root="/d/hb", hm_root="/d/hm",
                table_overrides={"adasp": {"optim.lr": 0.01}, "hbreid": {"epochs": 2}})
    return study.ablation_plan(**{**args, **kwargs})


@pytest.mark.parametrize("name", ["quick", "full", "gpu"])
def test_shipped_profiles_load(name):
    profile = study.load_profile(name)
    assert len(profile.seeds) >= 5 and set(profile.copies) == set(study.STUDY_COPIES)
    assert all(profile.copy_knobs(copy)["num_test_ids"] >= 100 for copy in study.STUDY_COPIES)
    # The HM mechanism: a batch of P classes is at most 2% of the HBReID and HM copies' training identities.
    p = study.training_config(profile.preset, {**profile.overrides, **profile.table_overrides["hm"]}).sampler.p
    assert all(p / profile.copy_knobs(copy)["num_train_ids"] <= 0.02 for copy in ("hbreid", "hm"))
    assert name in study.available_profiles()
    if profile.pretrain is not None:  # the backbone's copy is big enough to pretrain on, and other identities
        assert profile.pretrain_knobs["num_train_ids"] >= profile.copy_knobs("person")["num_train_ids"]
        assert study.backbone_record(profile, "x.pt")["loss"] == "1 x CE"  # no arm's metric loss is favoured


SYNTH_PROFILES = ("quick", "full", "gpu")


@pytest.mark.parametrize("name", SYNTH_PROFILES)
def test_profile_device_reaches_every_notebook(name, tmp_path):
    """The gpu profile once trained its visual notebooks on the CPU: their own `device` parameter won."""
    from reidlab.study.default import notebook_plans
    from reidlab.study.profile import STUDY_COPIES

    profile = study.load_profile(name)
    roots = {copy: f"/d/{copy}" for copy in STUDY_COPIES}
    plans = notebook_plans(profile, name, tmp_path, tmp_path / "data", profile.seeds, 1, roots, {}, 2)
    assert set(plans) == set(study.STUDY_NOTEBOOKS)
    for notebook, plan in plans.items():
        if "device" in study.notebook_parameters(notebook):
            assert plan["device"] == profile.device, notebook
        if "overrides" in plan:
            assert plan["overrides"].get("device", "cpu") == profile.device, notebook
    assert profile.device == ("cuda" if name == "gpu" else "cpu")


def test_adasp_overrides_are_the_same_in_every_profile():
    """The gpu profile once lacked `model.kwargs.metric_feature: after`, which keeps the triplet from collapsing."""
    from reidlab.study.profile import PROFILE_ADASP_KEYS

    shared = [{k: v for k, v in study.load_profile(name).adasp_overrides.items() if k not in PROFILE_ADASP_KEYS}
              for name in SYNTH_PROFILES]
    assert all(overrides == shared[0] for overrides in shared), dict(zip(SYNTH_PROFILES, shared))
    assert shared[0]["model.kwargs.metric_feature"] == "after"


@pytest.mark.parametrize("copy", ["person", "vehicle", "hbreid", "hm"])
def test_copies_differ_between_profiles_only_in_scale(copy):
    """The gpu profile's HBReID copy once took the default variation 0.5 where the others used 0.1."""
    from reidlab.study.profile import SCALE_KNOBS

    knobs = {name: study.load_profile(name).copy_knobs(copy) for name in SYNTH_PROFILES}
    regime = {name: {k: v for k, v in value.items() if k not in SCALE_KNOBS} for name, value in knobs.items()}
    assert all(value == regime["quick"] for value in regime.values()), regime
    if copy in ("hbreid", "hm"):  # MSMT17's batch-to-class ratio fixes identities and images: frame and test split scale
        for key in ("num_train_ids", "images_per_camera"):
            assert len({repr(value[key]) for value in knobs.values()}) == 1, key


def test_profile_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no study profile 'nope'.*quick"):
        study.load_profile("nope")
    bad = tmp_path / "bad.yaml"
    copies = "copies: {person: {regimes: [person]}, vehicle: {regimes: [vehicle]}, hbreid: {regimes: [gs]}, hm: {regimes: [hm]}}\n"
    for text, message in (
        ("seed: [0]\n", r"bad.yaml: unknown config key 'seed'; valid keys: "),
        ("workers: many\n", r"bad.yaml: config key 'workers' expects an int, got 'many'"),
        ("copies: {person: {regimes: [person]}}\n", r"copies must name exactly .*missing \['vehicle', 'hbreid', 'hm'\]"),
        (copies.replace("[gs]", "[glossy]"), "copies.hbreid: .*unknown .*regime.*glossy"),
        (copies.replace("[gs]}", "[gs], knobs: {colour: 1}}"), r"copies.hbreid: .*unknown SynthReID knob.*colour"),
        (copies.replace("{regimes: [gs]}", "{knobs: {}}"), "copies.hbreid needs 'regimes'"),
        (copies + "pretrain: {epochs: 2, lr: 0.1}\n", r"pretrain needs 'epochs' and takes only .*unknown keys \['lr'\]"),
        (copies + "pretrain: {epochs: 2, synth_seed: 0}\n", "would see the test identities"),
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            study.load_profile(bad)


def test_plan_shares_cells_and_applies_per_table_settings():
    grid, rows = plan()
    # The AdaSP table and the person-like rows of the regime table are the same runs.
    assert rows["regime"]["SP-H@person"] == rows["adasp"]["SP-H"] == "adasp-SP-H"
    assert rows["hbreid1"]["Default"] == rows["hbreid2"]["baseline"] and rows["hbreid1"]["+GS"] == rows["hbreid2"]["+GS"]
    # adasp, regime's vehicle rows, hbreid2 (with +GS +SR), hbreid1's CJ/GB/GT, hm's +GS and +GS +HM
    assert len(grid) == 4 + 3 + 5 + 3 + 2
    sp_h_vehicle = grid[rows["regime"]["SP-H@vehicle"]]
    assert sp_h_vehicle["data_root"] == "/d/vehicle" and sp_h_vehicle["overrides"]["optim.lr"] == 0.01
    hb = grid[rows["hbreid2"]["+GS +HM"]]
    assert hb["data_root"] == "/d/hb" and hb["rerank"] and hb["overrides"]["epochs"] == 2
    hm = grid[rows["hm"]["+GS +HM"]]  # the HM table takes the HBReID settings unless "hm" overrides them
    assert hm["data_root"] == "/d/hm" and not hm["rerank"] and hm["overrides"] == hb["overrides"]
    longer, longer_rows = plan(table_overrides={"hm": {"epochs": 5}})
    assert longer[longer_rows["hm"]["+GS"]]["overrides"]["epochs"] == 5
    # The manipulation checks read the first seed's HM-table +GS +HM and Table 2 baseline weights; others keep none.
    assert hm["keep_checkpoints"] and grid[rows["hbreid1"]["Default"]]["keep_checkpoints"]
    assert "keep_checkpoints" not in grid[rows["hbreid2"]["+GS"]] and "keep_checkpoints" not in hb
    assert hb["overrides"]["sampler.name"] == "hard" and "optim.lr" not in hb["overrides"]
    # On one dataset (a real one) the HM table's cells are Table 2's runs: nothing trains twice.
    shared_grid, shared = plan(hm_root=None)
    assert len(shared_grid) == len(grid) - 2 and shared["hm"]["+GS +HM"] == shared["hbreid2"]["+GS +HM"]


def test_plan_only_and_errors():
    grid, rows = plan(only={"adasp": ["AdaSP"], "regime": [], "hbreid2": [], "hbreid1": [], "hm": []})
    assert list(grid) == ["adasp-AdaSP"] and rows == {"adasp": {"AdaSP": "adasp-AdaSP"}}
    with pytest.raises(ValueError, match="rows of 'adasp'"):
        plan(only={"adasp": ["CE"]})
    with pytest.raises(ValueError, match="unknown ablation tables"):
        plan(tables=["adasp", "table9"])
    with pytest.raises(ValueError, match="table_overrides: unknown keys"):
        plan(table_overrides={"hbreid1": {}})
    with pytest.raises(ValueError, match="regime table needs regime_roots"):
        plan(regime_roots={"person": "/d/person"})


def test_claims_cover_both_sources_with_point_names_margins_and_checks():
    _, rows = plan()
    claims = {c.id: c for c in study.ablation_claims(rows)}
    assert {c.source for c in claims.values()} == {"AdaSP", "HBReID"}
    assert set(claims) == {"sph-beats-splh-person", "splh-beats-sph-vehicle", "person-vehicle-interaction",
                           "adasp-within-1-of-better@person", "adasp-within-1-of-better@vehicle", "adasp-beats-triplet",
                           "gs-beats-baseline", "hm-beats-gs", "sr-beats-gs", "sr-beats-gs-hm", "gs-best-augmentation",
                           "rerank-raises-map"}
    inter = claims["person-vehicle-interaction"]
    assert inter.combine == "contrast"
    assert inter.arm == ["adasp-SP-H", "regime-SP-LH_vehicle"] and inter.reference == ["adasp-SP-LH", "regime-SP-H_vehicle"]
    within = claims["adasp-within-1-of-better@vehicle"]
    assert within.combine == "within" and within.margin == 1.0 and within.arm == "regime-AdaSP_vehicle"
    assert claims["adasp-beats-triplet"].reference == "adasp-Triplet"
    assert claims["gs-best-augmentation"].reference == ["hbreid1-CJ", "hbreid1-GB", "hbreid1-GT"]
    # The source's SR comparison (+GS +SR vs +GS) beside the one on top of HM.
    assert (claims["sr-beats-gs"].arm, claims["sr-beats-gs"].reference) == ("hbreid2-GS-SR", "hbreid2-GS")
    assert (claims["sr-beats-gs-hm"].arm, claims["sr-beats-gs-hm"].reference) == ("hbreid2-GS-HM-SR", "hbreid2-GS-HM")
    # HM on its own copy; on a real benchmark (no checks) on the source's Table 2 rows.
    assert (claims["hm-beats-gs"].arm, claims["hm-beats-gs"].reference) == ("hm-GS-HM", "hm-GS")
    unchecked = {c.id: c for c in study.ablation_claims(rows, checked=False)}["hm-beats-gs"]
    assert (unchecked.arm, unchecked.reference) == ("hbreid2-GS-HM", "hbreid2-GS")
    rerank = claims["rerank-raises-map"]
    assert rerank.metric == "mAP_rerank" and rerank.reference_metric == "mAP" and rerank.arm == rerank.reference
    # Every HBReID margin is no larger than the source's claimed gain; every claim names its checks.
    claimed = {"gs-beats-baseline": 0.8, "hm-beats-gs": 0.5, "sr-beats-gs": 0.2, "sr-beats-gs-hm": 0.2,
               "gs-best-augmentation": 1.1, "rerank-raises-map": 14.3}
    assert all(claims[k].margin <= v for k, v in claimed.items())
    assert all(c.controls and set(c.controls) <= set(study.mechanisms.THRESHOLDS) for c in claims.values())
    assert not any(c.controls for c in study.ablation_claims(rows, checked=False))
    # Rows that were not planned drop their claims instead of failing, and the study lists them as not run.
    _, few = plan(tables=["adasp"], only={"adasp": ["AdaSP", "Triplet"]})
    not_run = []
    assert [c.id for c in study.ablation_claims(few, not_run=not_run)] == ["adasp-beats-triplet"]
    assert {c["id"] for c in not_run} == set(claims) - {"adasp-beats-triplet"}
    assert all(c["reason"] and c["statement"] == claims[c["id"]].statement for c in not_run)


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


@pytest.mark.parametrize("seeds", [[], [0, 0], [0, 1.5], [True], "x", None, [0, "one"]])
def test_one_seed_check_for_every_entry(seeds, tmp_path):
    """Profiles, sweeps, the report and the ablation setup all take their seeds through check_seeds."""
    with pytest.raises(ValueError, match="must be a non-empty list of distinct integers such as"):
        study.check_seeds(seeds)
    with pytest.raises(ValueError, match="must be a non-empty list of distinct integers"):
        study.sweep({"a": {}}, seeds, notebook=lambda parameters, out: {}, output_root=tmp_path)
    assert study.check_seeds(["2", 0, "-1"]) == [2, 0, -1]

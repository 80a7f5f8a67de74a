"""The papers' studies on the real benchmarks: the profile and its --set, the datasets file, the plan and its
claims with the published numbers, the cost estimate, and the command's one-line errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reidlab import study
from reidlab.cli import main
from reidlab.study.paper import PAPER_DATASETS, estimate_cost, paper_claims
from reidlab.study.published import published

ALL = list(PAPER_DATASETS)


def adasp_rows(datasets):
    return {"adasp": {f"{loss}@{d}": f"adasp-{d}-{loss}" for d in datasets for loss in ("SP-H", "SP-LH", "AdaSP")}}


def test_paper_profile_and_its_set_keys():
    profile = study.load_paper_profile("paper", ["seeds=[0,1]", "overrides.epochs=1", "calibration_steps=5"])
    assert profile.seeds == [0, 1] and profile.overrides["epochs"] == 1 and profile.calibration_steps == 5
    assert profile.device == "cuda" and "paper" in study.available_profiles()
    with pytest.raises(ValueError, match=r"--set nope: no such profile key; valid keys: .*calibration_steps.*overrides\.KEY"):
        study.load_paper_profile("paper", ["nope=1"])
    with pytest.raises(ValueError, match="--set seeds.x: no such profile key"):
        study.load_paper_profile("paper", ["seeds.x=1"])
    with pytest.raises(ValueError, match="runs on the real benchmarks: give it their folders with --datasets"):
        study.load_profile("paper")
    with pytest.raises(ValueError, match="runs on SynthReID"):
        study.load_paper_profile("quick")


def test_datasets_file_errors_name_the_problem(tmp_path):
    (tmp_path / "m").mkdir()
    cases = {
        "datasets: {market: m}\n": "unknown dataset.*'market'.*market1501",
        "datasets: {market1501: nowhere}\n": "dataset folder of 'market1501' does not exist",
        "datasets: {market1501: m}\nweights: {r50.pth: none.pth}\n": "weight file of 'r50.pth' does not exist",
        "datasets: {market1501: m}\nextra: 1\n": "unknown keys \\['extra'\\]",
        "weights: {}\n": "needs 'datasets'",
    }
    for text, message in cases.items():
        (tmp_path / "d.yaml").write_text(text)
        with pytest.raises(ValueError, match=message):
            study.load_datasets_file(tmp_path / "d.yaml")
    with pytest.raises(ValueError, match="not found"):
        study.load_datasets_file(tmp_path / "none.yaml")
    (tmp_path / "d.yaml").write_text("datasets: {market1501: m}\n")
    assert study.load_datasets_file(tmp_path / "d.yaml").datasets == {"market1501": (tmp_path / "m").resolve()}


def test_claims_with_every_dataset_carry_the_published_values():
    not_run = []
    claims = {c.id: c for c in paper_claims(adasp_rows(ALL), ALL, not_run)}
    assert not_run and all(entry["source"] == "HBReID" for entry in not_run)  # no HBReID table planned
    assert {"sp-h-beats-sp-lh@market1501", "sp-lh-beats-sp-h@veri776", "adasp-within-1-of-better@vehicleid",
            "person-vehicle-interaction"} <= set(claims)
    assert claims["sp-h-beats-sp-lh@market1501"].published == pytest.approx(80.5 - 77.0)
    assert claims["sp-lh-beats-sp-h@vehicleid"].metric == "rank1"  # the README's VehicleID column
    # AdaSP within 1 point of the better, in the source's numbers: the least favourable competitor
    assert claims["adasp-within-1-of-better@veri776"].published == pytest.approx(77.6 - 77.2 + 1)
    # the interaction: mean over person datasets of SP-H - SP-LH minus the same over vehicle datasets
    person = sum(published("adasp", "SP-H", d) - published("adasp", "SP-LH", d) for d in ALL[:3]) / 3
    vehicle = sum(published("adasp", "SP-H", d) - published("adasp", "SP-LH", d) for d in ALL[3:]) / 2
    interaction = claims["person-vehicle-interaction"]
    assert interaction.published == pytest.approx(person - vehicle, abs=0.01)
    assert interaction.term_metrics["adasp-vehicleid-SP-H"] == "rank1"


def test_the_interaction_is_computed_per_seed_with_each_dataset_weighted():
    datasets = ["market1501", "dukemtmc", "veri776"]
    claim = {c.id: c for c in paper_claims(adasp_rows(datasets), datasets, [])}["person-vehicle-interaction"]
    values = {("market1501", "SP-H"): 0.60, ("market1501", "SP-LH"): 0.50, ("dukemtmc", "SP-H"): 0.70,
              ("dukemtmc", "SP-LH"): 0.66, ("veri776", "SP-H"): 0.40, ("veri776", "SP-LH"): 0.45}
    frame = pd.DataFrame([{"point": f"adasp-{d}-{loss}", "seed": seed, "status": "ok", "mAP": v + 0.01 * seed}
                          for (d, loss), v in values.items() for seed in (0, 1, 2)])
    series = claim.comparisons(frame)[None]
    # ((10 + 4) / 2) - (-5) = 12 points at every seed
    assert series.tolist() == pytest.approx([12.0, 12.0, 12.0])
    assert "0.5 x mAP[adasp-market1501-SP-H]" in claim.formula


def test_a_subset_lists_each_claim_it_cannot_express():
    not_run = []
    claims = paper_claims(adasp_rows(["market1501"]), ["market1501"], not_run)
    reasons = {entry["id"]: entry["reason"] for entry in not_run}
    assert {c.id for c in claims} == {"sp-h-beats-sp-lh@market1501", "adasp-within-1-of-better@market1501"}
    assert reasons["person-vehicle-interaction"].startswith("needs at least one person and one vehicle")
    assert reasons["sp-lh-beats-sp-h@veri776"] == "veri776 is not in the datasets file"
    assert reasons["hm-beats-gs"] == "msmt17 is not in the datasets file"


def test_estimate_multiplies_steps_epochs_and_evaluations():
    profile = study.load_paper_profile("paper", ["seeds=[0,1]"])
    grid = {"a": {"preset": "adasp_market1501", "overrides": {"epochs": 10, "eval.every": 5}, "data_root": "/m"},
            "b": {"preset": "hbreid_msmt17", "overrides": {"epochs": 4, "eval.every": 0}, "data_root": "/s",
                  "rerank": True}}
    setup = study.PaperSetup(profile, study.DatasetsFile({}, {}), grid, {"adasp": {"SP-H@m": "a"}, "hbreid2": {"x": "b"}},
                             [], [], {"a": "adasp@m", "b": "hbreid@s"}, None)
    calibration = {"adasp@m": {"steps_per_epoch": 100, "seconds_per_step": 0.5, "eval_seconds": 60.0},
                   "hbreid@s": {"steps_per_epoch": 50, "seconds_per_step": 1.0, "eval_seconds": 30.0}}
    cost = estimate_cost(setup, calibration, gpus_per_run=4)
    # a: 10 epochs x 100 steps x 0.5 s + 2 evaluations (epochs 5 and 10) x 60 s; b: 4 x 50 x 1 s + (final + re-ranked) x 30 s
    assert cost["tables"]["adasp"]["hours"] == pytest.approx(2 * (500 + 120) / 3600)
    assert cost["tables"]["hbreid2"]["hours"] == pytest.approx(2 * (200 + 60) / 3600)
    assert cost["runs"] == 4 and cost["gpu_hours"] == pytest.approx(4 * cost["hours"])
    assert not math.isnan(cost["hours"])


def test_missing_weights_and_bad_sets_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "d.yaml").write_text("datasets: {market1501: m}\n")
    for extra, message in ((["--set", "bogus=1"], "--set bogus: no such profile key; valid keys:"),
                           ([], "weights: no local path for resnet50_ibn_a-d9d0bb7b.pth (for adasp_market1501)")):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "--profile", "paper", "--datasets", str(tmp_path / "d.yaml"), "--output",
                  str(tmp_path / "out"), "--dry-run", *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("reidlab report: error: ") and message in err and err.count("\n") == 1

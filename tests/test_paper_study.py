"""The papers' studies on the real benchmarks: the profile and its --set, the datasets file, the plan and its
claims with the published numbers, the cost estimate, and the command's one-line errors."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------ end to end on fabricated benchmarks

# Tiny settings of every run: the presets' recipes on 64 x 32 crops of a few identities, one epoch.
TINY_SETS = ["seeds=[0,1]", "calibration_steps=2", "overrides.device=cpu", "overrides.epochs=1",
             "overrides.model.pretrained=null", "overrides.model.freeze_backbone_iters=0", "overrides.data.size=[64,32]",
             "overrides.data.num_workers=0", "overrides.data.test_batch_size=64", "overrides.sampler.p=4",
             "overrides.sampler.k=2", "overrides.optim.warmup_iters=0", "overrides.threads=1",
             "adasp_overrides.model.name=resnet18_tiny", "hbreid_overrides.model.name=vit_tiny_transreid"]


def fabricate(root):
    """Market-1501 and MSMT17 from a person-like SynthReID, VeRi-776 and VehicleID from a vehicle-like one, each
    in the real layout (file names, list files), under ``root``."""
    from reidlab.data import synth

    size = dict(num_train_ids=8, num_test_ids=8, num_cameras=3, num_distractors=2, num_junk=1)
    person = synth.generate(root / "synth-person", seed=0, image_size=(64, 32), **size)
    vehicle = synth.generate(root / "synth-vehicle", seed=0, **synth.regime_knobs("vehicle", image_size=(48, 48), **size))
    for name, source in (("market1501", person), ("msmt17", person), ("veri776", vehicle), ("vehicleid", vehicle)):
        synth.write_layout(name, source, root / name)
    return root


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    return fabricate(tmp_path_factory.mktemp("benchmarks"))


def datasets_file(root, names):
    path = root / f"datasets-{'-'.join(names)}.yaml"
    path.write_text("datasets:\n" + "".join(f"  {name}: {name}\n" for name in names))
    return path


def test_paper_profile_end_to_end_on_fabricated_benchmarks(fabricated, tmp_path, capsys):
    datasets = datasets_file(fabricated, ["market1501", "msmt17", "veri776", "vehicleid"])
    args = ["report", "--profile", "paper", "--datasets", str(datasets), "--output", str(tmp_path / "out"),
            *[item for value in TINY_SETS for item in ("--set", value)]]
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "estimate: " in printed and "GPU-hours" in printed and not (tmp_path / "out" / "paper" / "runs").exists()
    assert "not run: sp-h-beats-sp-lh@dukemtmc (dukemtmc is not in the datasets file)" in printed
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.index("estimate: ") < printed.index("[paper] running")  # the cost before the work
    out = tmp_path / "out" / "paper"
    claims = json.loads((out / "claims.json").read_text())
    by_id = {c["id"]: c for c in claims["claims"]}
    assert {"sp-h-beats-sp-lh@market1501", "sp-lh-beats-sp-h@vehicleid", "person-vehicle-interaction",
            "adasp-within-1-of-better@veri776", "gs-beats-baseline", "hm-beats-gs", "sr-beats-gs",
            "gs-best-augmentation", "rerank-raises-map"} <= set(by_id)
    assert by_id["person-vehicle-interaction"]["published"] == pytest.approx(4.7)
    assert by_id["rerank-raises-map"]["published"] == pytest.approx(14.3)
    assert all(c["verdict"] in study.VERDICTS and c["n_pairs"] == 2 for c in claims["claims"])
    assert {entry["id"] for entry in claims["not_run"]} == {"sp-h-beats-sp-lh@dukemtmc", "adasp-within-1-of-better@dukemtmc"}
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == (4 * 3 + 8) * 2 and (runs["status"] == "ok").all(), runs["error"].dropna().tolist()[:1]
    assert (runs["images_per_second"] > 0).all() and (runs["duration_s"] > 0).all() and (runs["eval_seconds"] > 0).all()
    final = runs["point"] == "hbreid2-GS-HM-SR"
    assert runs.loc[final, "mAP_rerank"].notna().all() and runs.loc[~final, "mAP_rerank"].isna().all()
    table = pd.read_csv(out / "table_hbreid2.csv")
    assert table["published"].tolist() == [68.8, 69.6, 70.1, 69.8, 70.1, 84.4]
    assert table["delta_to_published"].tolist() == pytest.approx((table["measured"] - table["published"]).tolist())
    adasp = pd.read_csv(out / "table_adasp.csv")
    assert adasp.query("dataset.str.startswith('vehicleid')")["metric"].eq("rank1").all()
    assert adasp.query("dataset == 'vehicleid_medium'")["published"].tolist() == [80.0, 81.9, 81.8]
    assert runs.loc[runs["point"].str.contains("vehicleid"), "rank1_medium"].notna().all()
    assert by_id["sp-lh-beats-sp-h@vehicleid_medium"]["published"] == pytest.approx(1.9)
    assert (tmp_path / "out" / "index.html").is_file() and (out / "paper.html").is_file()


def test_plan_uses_each_datasets_recipe_the_local_weights_and_the_sources_rows(fabricated, tmp_path):
    (fabricated / "r50.pth").write_bytes(b"")
    (fabricated / "vit.pth").write_bytes(b"")
    path = fabricated / "with-weights.yaml"
    path.write_text("datasets: {veri776: veri776, msmt17: msmt17}\n"
                    "weights: {resnet50_ibn_a-d9d0bb7b.pth: r50.pth, jx_vit_base_p16_224-80ecf9dd.pth: vit.pth}\n")
    setup = study.prepare_paper(study.load_paper_profile("paper"), study.load_datasets_file(path), tmp_path)
    configs = {point: study.training_config(p["preset"], p["overrides"], data_root=p["data_root"])
               for point, p in setup.grid.items()}
    veri = configs[setup.rows["adasp"]["SP-LH@veri776"]]
    assert (veri.preset, veri.loss.metric, veri.loss.ce_weight, list(veri.data.size)) == ("adasp_veri776", "sp-lh", 1.0, [256, 256])
    assert veri.model.pretrained == str(fabricated / "r50.pth") and veri.device == "cuda"
    hbreid = {label: configs[point] for label, point in setup.rows["hbreid2"].items()}
    assert all(c.model.pretrained == str(fabricated / "vit.pth") and not c.eval.rerank for c in hbreid.values())
    assert hbreid["baseline"].data.aug["gray_patch_p"] == 0.0 and hbreid["+GS"].data.aug["gray_patch_p"] == 0.5
    assert hbreid["+GS +HM"].sampler.name == "hard" and hbreid["+GS +SR"].scene.enabled
    reranked = [point for point, params in setup.grid.items() if params.get("rerank")]
    assert reranked == [setup.rows["hbreid2"]["+GS +HM +SR"]]

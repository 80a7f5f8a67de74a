"""Recipe choices on validation copies: other identities than the study's, the study's test split never read."""

import json

from test_notebooks import TINY_PROFILE

from reidlab.data.synth import load_meta
from reidlab.study.validation import VALIDATION_SYNTH_SEED, choose_on_validation, main


def test_choice_trains_each_value_on_a_validation_copy_and_picks_the_best(tmp_path, capsys):
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY_PROFILE)
    data_dir = tmp_path / "data"
    candidates = [{"scene.strength": 0.1}, {"scene.objective": "reverse", "scene.strength": 1.0}]
    result = choose_on_validation(profile, candidates, tmp_path / "val", seeds=[0], data_dir=data_dir,
                                  print_fn=lambda line: None)
    assert result["arm"] == "hbreid2: +GS +SR"
    scores = result["scores"]
    assert list(scores) == ["scene.strength=0.1", 'scene.objective="reverse",scene.strength=1.0']
    assert [s["overrides"] for s in scores.values()] == candidates and all(len(s["per_seed"]) == 1 for s in scores.values())
    assert result["chosen"] == max(scores.values(), key=lambda s: s["mean"])["overrides"]
    # the runs trained on the validation copy (another generator seed), never on the study's copy
    validation = data_dir / f"synthreid-hbreid-seed{VALIDATION_SYNTH_SEED}"
    assert load_meta(validation)["seed"] == VALIDATION_SYNTH_SEED and not (data_dir / "synthreid-hbreid").exists()
    params = [json.loads(p.read_text())["parameters"] for p in (tmp_path / "val" / "runs").rglob("params.json")]
    assert sorted(p["overrides"]["scene.strength"] for p in params) == [0.1, 1.0]
    assert sorted(str(p["overrides"].get("scene.objective")) for p in params) == ["None", "reverse"]
    assert {p["data_root"] for p in params} == {str(validation.resolve())}
    # the command line reuses the same runs and prints the same choice
    main([str(profile), "--candidate", "scene.strength=0.1", "--candidate", "scene.objective=reverse",
          "scene.strength=1.0", "--seeds", "0", "--output-dir", str(tmp_path / "val"), "--data-dir", str(data_dir)])
    assert json.loads(capsys.readouterr().out)["scores"] == json.loads(json.dumps(scores))

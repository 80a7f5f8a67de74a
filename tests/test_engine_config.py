"""Engine pieces without training: configs and presets, schedules, checkpoints."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from reidlab.engine import ConfigError, TrainConfig, list_presets, load_config, lr_factor
from reidlab.engine.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from reidlab.engine.config import check_paths

REAL_DATA_PRESETS = [p for p in list_presets() if not p.startswith("synth")]


# ------------------------------------------------------------------------------------------ configs


def test_presets_cover_every_paper_row():
    expected = {
        "synth_cpu",
        *(f"adasp_{d}" for d in ("market1501", "dukemtmc", "msmt17")),
        *(f"adasp_ce_{d}" for d in ("market1501", "dukemtmc", "msmt17")),
        "adasp_veri776",
        "adasp_vehicleid",
        "hbreid_msmt17",
    }
    assert expected <= set(list_presets())


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_loads_and_validates(preset):
    config = load_config(preset)
    assert isinstance(config, TrainConfig) and config.preset == preset


def test_paper_settings_in_presets():
    single = load_config("adasp_market1501")
    assert (single.model.name, single.data.size, single.sampler.p, single.sampler.k) == ("mgn_resnet50_ibn_a", [384, 128], 16, 8)
    assert (single.loss.ce_weight, single.loss.metric, single.loss.temperature) == (0.0, "adasp", 0.04)
    assert (single.optim.name, single.optim.lr, single.optim.weight_decay, single.optim.amp) == ("adam", 3.5e-4, 5e-4, "fp16")
    assert (single.epochs, single.optim.scheduler, single.optim.flat_epochs) == (60, "flat_cosine", 30)
    assert load_config("adasp_msmt17", ["loss.metric=sp-h"]).loss.metric == "sp-h"
    assert single.sampler.camera_balanced and not load_config("adasp_msmt17").sampler.camera_balanced
    ce = load_config("adasp_ce_dukemtmc")
    assert (ce.data.size, ce.loss.ce_weight, ce.loss.label_smoothing, ce.loss.metric_weight) == ([256, 128], 1.0, 0.1, 0.1)
    veri = load_config("adasp_veri776")
    assert (veri.model.name, veri.data.size, veri.loss.temperature, veri.loss.metric_weight) == ("resnet50_ibn_a", [256, 256], 0.05, 0.5)
    vid = load_config("adasp_vehicleid")
    assert (vid.sampler.p, vid.sampler.k, vid.optim.scheduler, vid.optim.milestones) == (64, 8, "multistep", [30, 40])
    hb = load_config("hbreid_msmt17")
    assert (hb.model.name, hb.model.kwargs["stride"], hb.model.kwargs["jpm"], hb.model.camera_embedding) == (
        "vit_base_transreid", 12, True, True)
    assert (hb.sampler.name, hb.sampler.p, hb.sampler.k, hb.scene.enabled, hb.eval.rerank) == ("hard", 16, 4, True, True)
    assert (hb.optim.name, hb.optim.lr, hb.optim.scheduler, hb.loss.metric, hb.loss.margin) == ("sgd", 0.008, "cosine", "triplet", 0.0)
    assert hb.data.aug["gray_patch_p"] > 0


def test_required_override_keys_and_yaml_typing(tmp_path):
    config = load_config(
        "synth_cpu",
        [f"output_dir={tmp_path}", "seed=7", "epochs=3", f"data.root={tmp_path}/d", "resume=true",
         "optim.lr=1e-3", "data.size=[64, 32]", "model.pretrained=null", "data.aug={erasing_p: 0.25}"],
    )
    assert (config.output_dir, config.seed, config.epochs, config.resume) == (str(tmp_path), 7, 3, True)
    assert config.data.root == f"{tmp_path}/d" and config.optim.lr == 1e-3 and config.data.size == [64, 32]
    assert config.model.pretrained is None
    assert config.data.aug == {**load_config("synth_cpu").data.aug, "erasing_p": 0.25}  # dicts merge key by key
    assert load_config("synth_cpu", {"data.root": "x", "epochs": 2}).epochs == 2


def test_dotted_overrides_do_not_write_into_a_shared_overrides_dict():
    shared = {"data.aug": {"flip_p": 0.5, "padding": 2, "erasing_p": 0.0}}
    first = load_config("synth_cpu", shared)
    second = load_config("synth_cpu", {**shared, "data.aug.gray_patch_p": 0.5})
    assert second.data.aug["gray_patch_p"] == 0.5
    assert "gray_patch_p" not in first.data.aug and "gray_patch_p" not in shared["data.aug"]
    assert "gray_patch_p" not in load_config("synth_cpu", shared).data.aug


def test_config_from_a_yaml_path_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: synth_cpu\nepochs: 2\noptim: {lr: 0.01}\n")
    config = load_config(path)
    assert (config.epochs, config.optim.lr, config.model.name) == (2, 0.01, load_config("synth_cpu").model.name)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'epoch'; valid keys: .*output_dir, seed, epochs"):
        load_config("synth_cpu", ["epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.learning_rate'.*valid keys in optim: .*lr"):
        load_config("synth_cpu", ["optim.learning_rate=0.1"])
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*synth_cpu"):
        load_config("nope")
    # keys of earlier releases say what replaced them
    with pytest.raises(ConfigError, match=r"'scene.grl_lambda' is gone: scene.strength sets"):
        load_config("synth_cpu", ["scene.grl_lambda=0.5"])
    with pytest.raises(ConfigError, match=r"'scene.weight' is gone"):
        load_config("synth_cpu", ["scene.weight=2"])


def test_wrong_types_and_choices_name_the_key():
    with pytest.raises(ConfigError, match=r"'epochs' expects an int, got 'many'"):
        load_config("synth_cpu", ["epochs=many"])
    with pytest.raises(ConfigError, match=r"'resume' expects true or false"):
        load_config("synth_cpu", ["resume=3"])
    with pytest.raises(ConfigError, match=r"'optim.lr' expects a float"):
        load_config("synth_cpu", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"'loss.metric' has invalid value 'quadruplet'; choices: adasp, sp-h"):
        load_config("synth_cpu", ["loss.metric=quadruplet"])
    with pytest.raises(ConfigError, match=r"'data' is a section"):
        load_config("synth_cpu", ["data=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("synth_cpu", ["epochs"])
    with pytest.raises(ConfigError, match="milestones"):
        load_config("synth_cpu", ["optim.scheduler=multistep"])
    with pytest.raises(ConfigError, match="loss is empty"):
        load_config("synth_cpu", ["loss.ce_weight=0", "loss.metric=none"])
    with pytest.raises(ConfigError, match=r"'sampler\.hard_warmup_epochs' must be >= 1"):
        load_config("synth_cpu", ["sampler.name=hard", "sampler.hard_warmup_epochs=0"])
    load_config("synth_cpu", ["sampler.hard_warmup_epochs=0"])  # the pk sampler has no warm-up
    with pytest.raises(ConfigError, match=r"'log_every' must be >= 1"):
        load_config("synth_cpu", ["log_every=0"])
    with pytest.raises(ConfigError, match=r"'eval\.every' must be >= 0"):
        load_config("synth_cpu", ["eval.every=-1"])


@pytest.mark.parametrize("preset", REAL_DATA_PRESETS)
def test_real_data_presets_fail_clearly_without_data(preset, tmp_path):
    config = load_config(preset)
    with pytest.raises(FileNotFoundError, match=r"model\.pretrained=.*does not exist"):
        check_paths(config)
    no_weights = load_config(preset, ["model.pretrained=null"])
    with pytest.raises(FileNotFoundError, match=rf"needs the {config.data.name} dataset: pass data\.root="):
        check_paths(no_weights)
    missing = load_config(preset, ["model.pretrained=null", f"data.root={tmp_path / 'absent'}"])
    with pytest.raises(FileNotFoundError, match=r"absent.*does not exist: pass data\.root="):
        check_paths(missing)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    check_paths(load_config(preset, [f"model.pretrained={weights}", f"data.root={tmp_path}"]))  # both present


def test_real_data_preset_with_an_empty_folder_names_the_layout(tmp_path):
    from reidlab.engine.builders import prepare_dataset

    config = load_config("adasp_market1501", ["model.pretrained=null", f"data.root={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        prepare_dataset(config)


def test_generated_synthreid_with_other_knobs_is_not_replaced_by_training(synth_root):
    from reidlab.engine.builders import prepare_dataset

    config = load_config("synth_cpu", [f"data.root={synth_root}"])  # the preset asks for the default size
    with pytest.raises(ConfigError, match=r"holds another SynthReID \(num_train_ids .*data\.generate=false"):
        prepare_dataset(config)
    dataset = prepare_dataset(load_config("synth_cpu", [f"data.root={synth_root}", "data.generate=false"]))
    assert len(dataset.train) > 0


# ---------------------------------------------------------------------------------------- schedules


def brute_force_lr(it, *, schedule, total, per_epoch, warmup, factor0, milestones=(), gamma=0.1, flat=0, floor=0.0):
    if schedule == "multistep":
        value = gamma ** sum(1 for m in milestones if it // per_epoch >= m)
    elif schedule == "constant":
        value = 1.0
    else:
        start = flat if schedule == "flat_cosine" else 0
        value = 1.0 if it < start else floor + (1 - floor) * (1 + math.cos(math.pi * (it - start) / (total - start))) / 2
    if it < warmup:
        value *= factor0 + (1 - factor0) * it / warmup
    return value


@pytest.mark.parametrize("schedule", ["cosine", "flat_cosine", "multistep", "constant"])
def test_lr_schedules_match_their_formulas(schedule):
    per_epoch, epochs = 7, 10
    kwargs = dict(schedule=schedule, total_iters=per_epoch * epochs, iters_per_epoch=per_epoch, warmup_iters=10,
                  warmup_factor=0.1, milestones=(3, 6), gamma=0.5, flat_iters=35, min_factor=0.01)
    for it in range(per_epoch * epochs):
        expected = brute_force_lr(it, schedule=schedule, total=per_epoch * epochs, per_epoch=per_epoch, warmup=10,
                                  factor0=0.1, milestones=(3, 6), gamma=0.5, flat=35, floor=0.01)
        assert lr_factor(it, **kwargs) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert lr_factor(0, **kwargs) == pytest.approx(0.1 * brute_force_lr(0, schedule=schedule, total=70, per_epoch=7,
                                                                         warmup=0, factor0=1, milestones=(3, 6), gamma=0.5,
                                                                         flat=35, floor=0.01))


# -------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_with_weights_only_and_rng(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = {"model": torch.nn.Linear(3, 2).state_dict(), "rng": [get_rng_state()], "epoch": 4, "best": {"mAP": 0.5}}
    expected = (random.random(), np.random.rand(), torch.rand(2))
    path = save_checkpoint(state, tmp_path / "ck" / "last.pt")
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    set_rng_state(loaded["rng"][0])
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


class _OnGPU:
    """Stands in for a CUDA tensor (a checkpoint loaded with map_location=cuda): only `.cpu()` reads it."""

    def __init__(self, tensor):
        self.tensor = tensor

    def cpu(self):
        return self.tensor


def test_rng_states_restore_from_tensors_on_another_device():
    np.random.seed(5), random.seed(6), torch.manual_seed(7)
    state = get_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    state["python"]["state"], state["numpy"]["keys"] = _OnGPU(state["python"]["state"]), _OnGPU(state["numpy"]["keys"])
    state["torch"] = _OnGPU(state["torch"])
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint({"model": {}, "epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(Exception):
        save_checkpoint({"model": {}, "epoch": 2, "bad": lambda: None}, path)  # lambdas cannot be pickled
    assert load_checkpoint(path) == {"model": {}, "epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


class _Pickled:
    """An object a plain pickle would rebuild by calling a function: what weights_only loading refuses."""

    def __reduce__(self):
        return (print, ("this would run",))


def _write_bad_checkpoints(folder):
    """name -> (path, what the error must say) for the ways a checkpoint file can be unusable."""
    good = folder / "good.pt"
    torch.save({"model": {"weight": torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    cases = {
        "empty": (b"", "the file is empty"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "random bytes": (np.random.default_rng(0).bytes(4096), "not a file written by torch.save"),
    }
    paths = {}
    for name, (content, message) in cases.items():
        paths[name] = (folder / f"{name.replace(' ', '_')}.pt", message)
        paths[name][0].write_bytes(content)
    torch.save([1, 2, 3], folder / "list.pt")
    paths["pickled list"] = (folder / "list.pt", "it holds a list, not the dict")
    torch.save({"model": _Pickled()}, folder / "code.pt")
    paths["pickled code"] = (folder / "code.pt", "Python objects other than tensors")
    torch.save({"weight": torch.zeros(2)}, folder / "weights.pt")
    paths["not a reidlab checkpoint"] = (folder / "weights.pt", "without a 'model' entry")
    return paths


def test_unusable_checkpoints_are_one_clear_error_that_never_suggests_unsafe_loading(tmp_path):
    from reidlab.engine import CheckpointError

    for name, (path, message) in _write_bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        text = str(error.value)
        assert text.startswith(f"not a readable reidlab checkpoint: {path}: ") and message in text, (name, text)
        assert "weights_only" not in text and "\n" not in text, (name, text)


# ------------------------------------------------------------------------------- per-group loss weights


@pytest.mark.parametrize("weights", [(0.125,) * 8, (0.5, 0.125, 0.125, 0.125, 0.125)], ids=["mgn", "jpm"])
def test_loss_applies_the_models_group_weights(weights):
    import torch.nn.functional as F

    from reidlab.engine.builders import build_reid_loss
    from reidlab.losses import SparsePairwiseLoss

    class FakeModel:
        feature_weights = logit_weights = weights

    config = load_config("synth_cpu", ["loss.metric_weight=0.7", "loss.label_smoothing=0.1"])
    loss = build_reid_loss(config, FakeModel())
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(3)
    outputs = {
        "features": [torch.randn(12, 8, generator=g, dtype=torch.float64) for _ in weights],
        "logits": [torch.randn(12, 4, generator=g, dtype=torch.float64) for _ in weights],
    }
    total, logs = loss(outputs, labels)
    adasp = SparsePairwiseLoss(mode="adasp", temperature=0.04)
    expected = sum(w * F.cross_entropy(x, labels, label_smoothing=0.1) for w, x in zip(weights, outputs["logits"]))
    expected = expected + 0.7 * sum(w * adasp(x, labels) for w, x in zip(weights, outputs["features"]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert {"ce", "adasp", "total"} <= set(logs)

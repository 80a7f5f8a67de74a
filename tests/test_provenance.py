"""Provenance of training runs: what metrics.json records, the dataset fingerprint, collect()'s prov. columns
and provenance_differences."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pandas as pd
import pytest

from reidlab.data import build_dataset
from reidlab.data.datasets import ReIDDataset
from reidlab.engine import load_config, train
from reidlab.engine.distributed import DistContext
from reidlab.engine.provenance import collect_provenance, dataset_fingerprint, installed_lock, source_revision
from reidlab.study.records import collect, provenance_differences

P, K = 4, 4
TINY = [
    "data.generate=false", "data.size=[64, 32]", "data.num_workers=0", "data.test_batch_size=64", "progress=false",
    "threads=1", "device=cpu", "model.name=resnet18_tiny", f"sampler.p={P}", f"sampler.k={K}", "epochs=1",
    "max_iters_per_epoch=2", "eval.every=0",
]


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory):
    """(output_dir, final metrics) of a two-step CPU run."""
    out = tmp_path_factory.mktemp("tiny_run")
    config = load_config("synth_cpu", [f"data.root={synth_root}", f"output_dir={out}", *TINY])
    return out, train(config, print_fn=None)


def test_every_run_records_its_provenance(tiny_run):
    out, final = tiny_run
    prov = json.loads((out / "metrics.json").read_text())["provenance"]
    assert prov == final["provenance"] == json.loads((out / "provenance.json").read_text())
    assert prov["reidlab_version"] == "0.1.0"
    assert prov["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
    assert prov["git_dirty"] in (None, True, False)
    assert (prov["git_commit"] is None) == (prov["git_dirty"] is None)
    assert re.fullmatch(r"3\.\d+\.\d+.*", prov["python"])
    assert isinstance(prov["torch"], str) and isinstance(prov["timm"], str)
    assert all(isinstance(prov[key], str) for key in ("numpy", "scipy", "faiss", "umap_learn"))
    assert prov["lock"] == installed_lock()  # the requirements.lock hash (tests/test_lock.py: it is this checkout's)
    assert prov["cuda"] is None or isinstance(prov["cuda"], str)
    assert prov["cudnn"] is None or isinstance(prov["cudnn"], int)
    assert isinstance(prov["device"], str) and prov["device"]
    assert prov["world_size"] == 1 and prov["per_device_batch"] == P * K
    assert prov["amp"] == "none"  # CPU runs in full precision whatever optim.amp says
    assert prov["dataset"] == "synthreid" and re.fullmatch(r"[0-9a-f]{16}", prov["dataset_fingerprint"])


def test_every_run_records_its_split_chance_level(tiny_run, synth_root):
    """The floor a run must clear is stored with its metrics; the study index flags the runs that do not clear it."""
    from reidlab.data import build_dataset
    from reidlab.evaluation import split_chance_level

    _, final = tiny_run
    chance = split_chance_level(build_dataset("synthreid", synth_root))
    assert final["chance_mAP"] == chance["mAP"] and final["chance_rank1"] == chance["rank1"]
    assert 0 < final["chance_mAP"] < 1


def test_collect_adds_provenance_columns(tiny_run):
    out, final = tiny_run
    row = collect(out).iloc[0]
    for key, value in final["provenance"].items():
        assert f"prov.{key}" in row.index
        assert (pd.isna(row[f"prov.{key}"]) if value is None else row[f"prov.{key}"] == value), key
    assert "provenance" not in row.index


def test_dataset_fingerprint_follows_the_files_and_the_generator_settings(synth_root, tmp_path):
    dataset = build_dataset("synthreid", synth_root)
    fingerprint = dataset_fingerprint(dataset)
    assert fingerprint == dataset_fingerprint(build_dataset("synthreid", synth_root))
    moved = shutil.copytree(synth_root, tmp_path / "elsewhere" / "synthreid")
    assert dataset_fingerprint(build_dataset("synthreid", moved)) == fingerprint, "independent of the folder's location"
    fewer = ReIDDataset(dataset.train[:-1], dataset.query, dataset.gallery, root=dataset.root)
    assert dataset_fingerprint(fewer) != fingerprint
    reseeded = copy.copy(dataset)
    reseeded.meta = {**dataset.meta, "seed": dataset.meta["seed"] + 1}
    assert dataset_fingerprint(reseeded) != fingerprint


def test_provenance_without_git_is_recorded_as_unknown(monkeypatch, synth_root):
    monkeypatch.setenv("PATH", "")
    assert source_revision() == (None, None)
    config = load_config("synth_cpu", [f"data.root={synth_root}", *TINY])
    prov = collect_provenance(config, build_dataset("synthreid", synth_root), DistContext(), None)
    assert prov["git_commit"] is None and prov["git_dirty"] is None and prov["amp"] == "none"


def test_provenance_differences_lists_the_keys_that_differ():
    frame = pd.DataFrame([
        {"run": "a", "prov.torch": "2.4.0", "prov.device": "cpu", "prov.git_commit": None, "prov.world_size": 1},
        {"run": "b", "prov.torch": "2.5.1", "prov.device": "cpu", "prov.world_size": 1},  # git_commit missing
        {"run": "c", "status": "failed"},  # no provenance at all: left out
    ])
    assert provenance_differences(frame) == {"torch": ["2.4.0", "2.5.1"]}
    assert provenance_differences(frame, columns=["device", "prov.world_size"]) == {}
    assert provenance_differences(frame.iloc[[0, 2]]) == {}
    with_gpu = pd.concat([frame, pd.DataFrame([{"run": "d", "prov.torch": "2.4.0", "prov.device": "NVIDIA H200",
                                                "prov.git_commit": "f" * 40, "prov.world_size": 2}])])
    assert provenance_differences(with_gpu) == {
        "torch": ["2.4.0", "2.5.1"], "device": ["NVIDIA H200", "cpu"], "git_commit": [None, "f" * 40], "world_size": [1, 2],
    }

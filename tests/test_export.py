"""ONNX export (`reidlab export`): onnxruntime reproduces torch's features for a BNNeck ResNet, MGN and the ViT with
its camera embedding, at any batch size; the metadata says how to feed the model; unexportable ops and failed
checks are one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from reidlab import export
from reidlab.engine import load_config, load_trained
from reidlab.engine.evaluator import eval_loader
from reidlab.engine.trainer import Trainer
from reidlab.evaluation import extract_features

REPO = Path(__file__).parent.parent
TINY = ["data.generate=false", "data.num_workers=0", "data.test_batch_size=64", "progress=false", "threads=1",
        "sampler.p=4", "sampler.k=4", "epochs=1", "max_iters_per_epoch=1", "eval.every=0"]
# model -> (input size, model kwargs, camera embedding); MGN needs a map 3 stripes high (96 / 16 = 6 rows)
MODELS = {
    "resnet18_tiny": ([64, 32], {"pool": "avg"}, False),
    "mgn_resnet18_ibn_a": ([96, 32], {}, False),
    "vit_tiny_transreid": ([64, 32], {"jpm": True}, True),
}


@pytest.fixture(scope="module")
def checkpoints(synth_root, tmp_path_factory) -> dict[str, Path]:
    """One training step of each model (the checkpoint and its run folder, as `reidlab train` leaves them)."""
    made = {}
    for name, (size, kwargs, cameras) in MODELS.items():
        out = tmp_path_factory.mktemp(name)
        config = load_config("synth_cpu", [f"data.root={synth_root}", f"output_dir={out}", f"data.size={size}", *TINY])
        Trainer(replace(config, model=replace(config.model, name=name, kwargs=kwargs, camera_embedding=cameras))).fit()
        made[name] = out / "checkpoints" / "last.pt"
    return made


def query_batch(run, size: int) -> dict:
    """The first ``size`` query images of a run, through its test transform."""
    return next(iter(eval_loader(run.dataset.query[:size], replace(run.config, data=replace(
        run.config.data, test_batch_size=size, num_workers=0)))))


@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_reproduces_the_features_at_any_batch_size(checkpoints, tmp_path, name):
    result = export.export_onnx(checkpoints[name], tmp_path / "model.onnx", batch=5)
    assert result.images == 5 and result.max_abs_diff <= result.tolerance
    assert result.tolerance == pytest.approx(export.PARITY_RTOL * result.feature_scale)

    saved = onnx.load(result.path)
    meta = {prop.key: prop.value for prop in saved.metadata_props}
    run = load_trained(checkpoints[name].parent.parent)
    transform = json.loads(meta["transform"])
    assert meta["model_name"] == name and meta["checkpoint_sha256"] == export.file_sha256(checkpoints[name])
    assert int(meta["feature_dim"]) == run.model.feature_dim == result.feature_dim
    assert transform["size"] == MODELS[name][0] and transform["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["interpolation"] == "bilinear, antialiased"
    assert int(meta["num_cameras"]) == (run.dataset.num_cameras if MODELS[name][2] else 0)
    assert [i.name for i in saved.graph.input] == (["images", "camids"] if MODELS[name][2] else ["images"])
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in saved.graph.input)

    embedder = export.OnnxEmbedder(result.path)
    assert (embedder.model_name, embedder.sha256, embedder.transform) == (name, meta["checkpoint_sha256"], transform)
    for size in (1, 3):  # neither is the traced batch
        batch = query_batch(run, size)
        expected = extract_features(run.model, [batch], normalize=False)[0]
        got = embedder(batch["image"], torch.as_tensor(batch["camid"]) if embedder.uses_camids else None)
        assert got.shape == (size, result.feature_dim)
        assert (got - expected).abs().max() <= result.tolerance


def test_the_command_exports_and_prints_its_tolerance(checkpoints, tmp_path):
    out = tmp_path / "resnet.onnx"
    done = subprocess.run([sys.executable, "-m", "reidlab", "export", str(checkpoints["resnet18_tiny"]), "--format",
                           "onnx", "--out", str(out), "--batch", "4"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and f"wrote {out}" in done.stdout and "-> features [batch, 128]" in done.stdout
    assert "max |difference|" in done.stdout and "tolerance" in done.stdout


class LogGammaPool(torch.nn.Module):
    """A pooling with an op that torch.onnx cannot translate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x.abs() + 1).mean((2, 3))


def test_an_op_without_onnx_translation_is_a_one_line_refusal(checkpoints, tmp_path, monkeypatch, capsys):
    from reidlab.cli import main

    def with_log_gamma_pool(*args, **kwargs):
        run = load_trained(*args, **kwargs)
        run.model.head.pool = LogGammaPool()
        return run

    monkeypatch.setattr(export, "load_trained", with_log_gamma_pool)
    with pytest.raises(SystemExit) as exit_status:
        main(["export", str(checkpoints["resnet18_tiny"]), "--out", str(tmp_path / "model.onnx")])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_status.value.code == 2 and len(error) == 1, error
    assert "aten::lgamma in module head.pool (LogGammaPool)" in error[0]
    assert not (tmp_path / "model.onnx").exists()


def test_features_that_onnxruntime_does_not_reproduce_are_an_error(checkpoints, tmp_path, monkeypatch):
    torch_features = export.extract_features

    def shifted(*args, **kwargs):
        features, pids, camids = torch_features(*args, **kwargs)
        return features + 1e-2 * features.abs().max(), pids, camids

    monkeypatch.setattr(export, "extract_features", shifted)
    with pytest.raises(export.ExportError, match="does not reproduce torch's features"):
        export.export_onnx(checkpoints["resnet18_tiny"], tmp_path / "model.onnx", batch=4)
    assert not (tmp_path / "model.onnx").exists()


def test_embed_gives_the_same_features_from_the_checkpoint_and_its_onnx_export(checkpoints, synth_root, tmp_path):
    from reidlab.search import embed_folder, load_embedder

    checkpoint = checkpoints["resnet18_tiny"]
    onnx_file = export.export_onnx(checkpoint, tmp_path / "model.onnx", batch=4).path
    from_pt, from_onnx = (embed_folder(load_embedder(path), synth_root / "query", flip=True, progress=False,
                                       print_fn=None) for path in (checkpoint, onnx_file))
    assert (from_onnx.paths, from_onnx.sha256) == (from_pt.paths, from_pt.sha256)
    assert from_onnx.transform == from_pt.transform
    assert np.abs(from_onnx.features - from_pt.features).max() <= export.PARITY_RTOL * np.abs(from_pt.features).max()

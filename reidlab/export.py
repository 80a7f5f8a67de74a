"""ONNX export of a trained checkpoint, checked against onnxruntime, and embedding with the exported file.

The graph is the function evaluation ranks with: the model in eval mode, ``model(images)`` (``model(images,
camids)`` for a ViT with a camera embedding), the feature that `extract_features` returns with
``normalize=False`` and ``flip=False``. L2 normalisation and flip averaging stay outside the graph, as they are
outside the model in evaluation, so a deployment applies them exactly as reidlab does (normalising inside would
make flip averaging average unit vectors instead of raw features).

Inputs: ``images`` float32 [batch, 3, H, W], normalised as the run's test transform does; for models with a
camera embedding (TransReID's SIE, ``model.camera_embedding=true``) also ``camids`` int64 [batch], the 0-based
camera index that the dataset records carry. Output: ``features`` float32 [batch, D] (the CPU evaluation's
float32 function: a run's AMP applies on CUDA only). The batch axis is dynamic. The model's metadata
(``metadata_props``) records the model name, the checkpoint's sha256, D, the camera count, the test transform
(``transform``: size, mean, std; ``interpolation``: the resize's) and the parity check's result.

The exporter is torch's TorchScript tracer (``dynamo=False``, a switch of torch >= 2.5, deprecated since 2.9
and still there in 2.14): it needs neither onnxscript nor a torch.export of the model, and tracing records
exactly the eval forward pass. Every export is checked: onnxruntime and torch embed a batch of the run's own
query images (traced at another batch size, so the dynamic axis is exercised too), and a max |difference| above
`PARITY_RTOL` times the largest |feature| is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn

from reidlab.engine import TrainedRun, load_trained
from reidlab.engine.evaluator import eval_loader
from reidlab.evaluation import extract_features
from reidlab.utils import atomic_write, file_sha256

__all__ = ["DEFAULT_OPSET", "OPSETS", "PARITY_RTOL", "ExportError", "OnnxEmbedder", "OnnxExport", "export_onnx"]

DEFAULT_OPSET = 17  # LayerNormalization as one op; onnxruntime has run it for years
OPSETS = range(14, 21)  # 14: scaled_dot_product_attention (the ViTs); 20: the highest the TorchScript exporter writes
# float32 rounds to 6e-8 of a value; onnxruntime sums the same products in another order (its own GEMM blocking,
# batch norm folded into the convolutions), so a deep net's features differ by some 1e-7..1e-6 of their scale
# (measured: 3e-7 to 1.5e-6). 1e-4 of the largest |feature| is ~100x that, and far below what a wrong export does
# (a dropped camera embedding, a feature taken before instead of after the BNNeck: 1e-2 or more of the scale).
PARITY_RTOL = 1e-4
TRACE_BATCH = 2  # the traced batch; the parity check runs another size, so a batch size baked in would show


class ExportError(ValueError):
    """A checkpoint that cannot be exported (an op without an ONNX translation, one that onnxruntime cannot
    run, an opset out of range) or whose export does not reproduce torch's features; the message says which."""


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote and how well onnxruntime reproduces torch on the run's query images."""

    path: Path
    model_name: str
    inputs: dict[str, list]  # input name -> shape ("batch" for the dynamic axis)
    feature_dim: int
    opset: int
    max_abs_diff: float
    tolerance: float
    feature_scale: float  # the largest |feature| of the checked batch
    images: int  # query images in the parity check
    seconds: float  # tracing and conversion


def _test_transform(loader) -> tuple[dict, str]:
    """(``size``, ``mean`` and ``std``, as the torch embedder's ``transform``; the resize's interpolation) of an
    evaluation loader's transform: what a user must do to an image before the model sees it."""
    from torchvision.transforms import v2

    steps = loader.dataset.transform.transforms
    resize = next(step for step in steps if isinstance(step, v2.Resize))
    normalize = next(step for step in steps if isinstance(step, v2.Normalize))
    transform = {"size": list(resize.size), "mean": list(normalize.mean), "std": list(normalize.std)}
    return transform, f"{resize.interpolation.value}{', antialiased' if resize.antialias else ''}"


def _run_of(checkpoint: Path) -> TrainedRun:
    """The trained run of a checkpoint in its run folder (OUTPUT_DIR/checkpoints/NAME.pt): its model on the CPU,
    its config (the data and the test transform of the parity check)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    run_folder = checkpoint.resolve().parent.parent
    if not (run_folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{checkpoint} is not in the checkpoints/ folder of a training run (no "
                                f"{run_folder / 'config.yaml'}): export reads the run's config for its model and data")
    return load_trained(run_folder, checkpoint, device="cpu")


def _module_named(model: nn.Module, scope: str) -> str:
    """`name (Class)` of the module that a TorchScript scope (``pkg.Model::/pkg.Block::layer4/pkg.Conv::conv1``)
    ends in: one of its class whose dotted name holds every attribute of the scope (a scope leaves out modules
    not entered through their forward, such as a backbone called as ``backbone.forward_features``)."""
    steps = [step.partition("::") for step in scope.split("/")]
    attributes = [attribute for _, _, attribute in steps if attribute]
    for name, module in model.named_modules():
        if (f"{type(module).__module__}.{type(module).__qualname__}" == steps[-1][0]
                and all(f".{attribute}." in f".{name}." for attribute in attributes)):
            return f"{name or 'the model itself'} ({type(module).__name__})"
    return steps[-1][0]


def _unexportable(error: Exception, graph_dump: str, model: nn.Module, model_name: str, opset: int) -> ExportError:
    """One line naming the op and, where the exporter's dump of the graph shows its scope, the module calling it."""
    op = re.search(r"operator '([^']+)'", str(error))
    if op is None:
        return ExportError(f"cannot export {model_name} to ONNX opset {opset}: {str(error).splitlines()[0]}")
    scope = re.search(rf"= {re.escape(op[1])}\(.*scope: (\S+)", graph_dump)
    where = f" in module {_module_named(model, scope[1])}" if scope else ""
    return ExportError(f"cannot export {model_name} to ONNX opset {opset}: {op[1]}{where} has no ONNX translation "
                       f"in torch.onnx (try another --opset, or replace that op)")


@contextlib.contextmanager
def _stdout_into(file: IO[str]):
    """File descriptor 1 into ``file``: torch's C++ exporter writes its log there, past ``sys.stdout``."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(file.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _traced(model: nn.Module, example: tuple, input_names: list[str], opset: int, model_name: str) -> bytes:
    """The ONNX bytes of ``model`` traced on ``example``, batch axis dynamic; an ExportError naming the op that has
    no translation. The exporter's log (on a failure it dumps the whole graph to stdout, with each op's module
    scope) is kept off the terminal and read for that scope."""
    buffer = io.BytesIO()
    with tempfile.TemporaryFile("w+") as log, _stdout_into(log), warnings.catch_warnings(), torch.no_grad():
        # the tracer's warnings (Python checks on traced values, the exporter's deprecation, instance norm in
        # IBN) would only mislead: the parity check, at another batch size, tells whether the graph is right
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, example, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                              output_names=["features"],
                              dynamic_axes={**{n: {0: "batch"} for n in input_names}, "features": {0: "batch"}})
        except torch.onnx.errors.OnnxExporterError as error:
            log.seek(0)
            raise _unexportable(error, log.read(), model, model_name, opset) from None
    return buffer.getvalue()


def _session(model: bytes | str, device: str | torch.device = "cpu"):
    import onnxruntime as ort

    wanted = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
    return ort.InferenceSession(model, providers=providers)


def _feeds(images: torch.Tensor, camids: torch.Tensor | None) -> dict[str, np.ndarray]:
    feeds = {"images": images.detach().cpu().float().numpy()}
    if camids is not None:
        feeds["camids"] = torch.as_tensor(camids).reshape(-1).long().cpu().numpy()
    return feeds


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                batch: int = 16) -> OnnxExport:
    """Export a training checkpoint to ONNX (default: next to it, ``NAME.onnx``) and check it with onnxruntime on
    the first ``batch`` query images of the run's dataset. Nothing is written when the check fails."""
    import onnx
    from onnxruntime.capi import onnxruntime_pybind11_state as runtime_errors

    if opset not in OPSETS:
        raise ExportError(f"opset {opset} is out of range: {OPSETS.start} to {OPSETS.stop - 1}")
    if batch < 1:
        raise ExportError(f"the parity batch must hold at least one image, got {batch}")
    checkpoint = Path(checkpoint)
    run = _run_of(checkpoint)
    model, config, name = run.model, run.config, run.config.model.name
    data = replace(config.data, test_batch_size=batch, num_workers=0)
    loader = eval_loader(run.dataset.query[:batch], replace(config, data=data))
    query = next(iter(loader))
    camids = torch.as_tensor(query["camid"]).long() if model.uses_camids else None
    input_names = ["images", "camids"] if model.uses_camids else ["images"]
    example = (query["image"][:TRACE_BATCH],) + ((camids[:TRACE_BATCH],) if camids is not None else ())
    started = time.perf_counter()
    graph = onnx.load_from_string(_traced(model, example, input_names, opset, name))
    seconds = time.perf_counter() - started
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = model.feature_dim  # a Concat leaves it symbolic
    try:
        session = _session(graph.SerializeToString())
    except (runtime_errors.Fail, runtime_errors.InvalidGraph, runtime_errors.NotImplemented) as error:
        raise ExportError(f"onnxruntime cannot run the export of {name}: {str(error).splitlines()[0]}") from None
    expected = extract_features(model, [query], normalize=False)[0].numpy()
    got = session.run(["features"], _feeds(query["image"], camids))[0]
    scale = float(np.abs(expected).max())
    tolerance, max_diff = PARITY_RTOL * scale, float(np.abs(got - expected).max())
    if not max_diff <= tolerance:
        raise ExportError(f"the ONNX export of {name} does not reproduce torch's features: max |difference| "
                          f"{max_diff:.3g} on {len(expected)} query images, tolerance {tolerance:.3g}")
    transform, interpolation = _test_transform(loader)
    inputs = {"images": ["batch", 3, *transform["size"]], **({"camids": ["batch"]} if camids is not None else {})}
    onnx.helper.set_model_props(graph, {
        "model_name": name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "feature_dim": str(model.feature_dim),
        "num_cameras": str(model.num_cameras if model.uses_camids else 0),
        "transform": json.dumps(transform),
        "interpolation": interpolation,
        "features": "before L2 normalisation, without flip averaging (extract_features(normalize=False))",
        "parity": json.dumps({"max_abs_diff": max_diff, "tolerance": tolerance, "images": len(expected)}),
    })
    out = Path(out) if out is not None else checkpoint.with_suffix(".onnx")
    atomic_write(out, graph.SerializeToString())
    return OnnxExport(out, name, inputs, model.feature_dim, opset, max_diff, tolerance, scale, len(expected), seconds)


class OnnxEmbedder:
    """An `.onnx` file written by `export_onnx`, run by onnxruntime: embedding without reidlab's model code. Same
    interface as the torch embedder (``model_name``, ``sha256``, ``transform``; called on a batch of images
    transformed as ``transform`` says, it returns their features)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        self.session = _session(str(self.path), device)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "transform" not in meta:
            raise ValueError(f"{self.path} was not written by `reidlab export`: it has no transform in its metadata")
        self.model_name = meta["model_name"]
        self.sha256 = meta["checkpoint_sha256"]
        self.feature_dim = int(meta["feature_dim"])
        self.num_cameras = int(meta["num_cameras"])
        self.transform = json.loads(meta["transform"])
        self.uses_camids = self.num_cameras > 0

    def __repr__(self) -> str:
        return f"OnnxEmbedder({str(self.path)!r}, model {self.model_name})"

    def __call__(self, images: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_camids:
            if camids is None:
                raise ValueError(f"{self.path} embeds with camera ids ({self.num_cameras} cameras): pass camids")
            camids = torch.as_tensor(camids).reshape(-1)
            if int(camids.min()) < 0 or int(camids.max()) >= self.num_cameras:
                raise ValueError(f"camera ids must be in [0, {self.num_cameras}), got range "
                                 f"[{int(camids.min())}, {int(camids.max())}]")
        return torch.from_numpy(self.session.run(["features"], _feeds(images, camids if self.uses_camids else None))[0])

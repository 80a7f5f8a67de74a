"""Where a run came from: source revision, software stack (the lock it was installed from, key package
versions), hardware, batch, precision and data.

Recorded with the final metrics of every run, so that runs compared in one table can be checked to differ
only in what the table varies (not in torch version, GPU, AMP or a regenerated dataset). Collecting it never
fails a run: what cannot be found out is recorded as None.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import reidlab

GIT_TIMEOUT_S = 5.0
# Written by `make install` into the environment: the sha256 of the requirements.lock it was installed from.
LOCK_RECORD = "reidlab-lock.sha256"
# Packages whose versions change numbers or figures (weights init, RNG paths, search, layouts), beside torch.
KEY_PACKAGES = {"timm": "timm", "numpy": "numpy", "scipy": "scipy", "faiss": "faiss-cpu", "umap_learn": "umap-learn"}
AMP_NAMES = {None: "none", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _git(package_dir: Path, *args: str) -> str | None:
    """stdout of a git command run in `package_dir`; None without git, outside a checkout or on timeout."""
    try:
        done = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def source_revision() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the reidlab package was imported from; (None, None) when it is not a
    tracked git checkout (an installed wheel, even one inside a venv that sits in some repository)."""
    package_dir = Path(reidlab.__file__).resolve().parent
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit, status = _git(package_dir, "rev-parse", "HEAD"), _git(package_dir, "status", "--porcelain")
    return (commit.strip() if commit else None), (None if status is None else bool(status.strip()))


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_lock(prefix: str | os.PathLike = sys.prefix) -> str | None:
    """The first 16 hex digits of the sha256 of the requirements.lock this environment was installed from (`make
    install`); None when it was installed otherwise (`make install-latest`, a plain pip install)."""
    try:
        return Path(prefix, LOCK_RECORD).read_text().split()[0][:16]
    except (OSError, IndexError):
        return None


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def dataset_fingerprint(dataset) -> str:
    """A short sha1 over each split's sorted (relative path, file size), plus the generator seed and knobs of a
    SynthReID (its ``meta``): cheap (no image is read) and the same wherever the dataset folder lives."""
    digest = hashlib.sha1()
    for split in ("train", "query", "gallery"):
        records = getattr(dataset, split)
        entries = sorted((os.path.relpath(r.path, dataset.root or os.curdir), _file_size(r.path)) for r in records)
        digest.update(json.dumps([split, entries]).encode())
    meta = getattr(dataset, "meta", None)
    if meta:
        digest.update(json.dumps({"seed": meta.get("seed"), "knobs": meta.get("knobs")}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or "cpu"


def collect_provenance(config, dataset, ctx, amp_dtype: torch.dtype | None) -> dict[str, Any]:
    """The provenance record of a run of `config` on `dataset` in context `ctx` (rank, world size, device),
    with `amp_dtype` the autocast dtype it actually trained with (None: full precision)."""
    commit, dirty = source_revision()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "reidlab_version": reidlab.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{key: _package_version(name) for key, name in KEY_PACKAGES.items()},
        "lock": installed_lock(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "device": _device_name(ctx.device),
        "world_size": ctx.world_size,
        "per_device_batch": config.sampler.p * config.sampler.k,
        "amp": AMP_NAMES.get(amp_dtype, str(amp_dtype)),
        "dataset": config.data.name,
        "dataset_fingerprint": dataset_fingerprint(dataset),
    }

"""Checkpoints that survive a kill at any moment and load without executing pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written to a temporary file in
the same folder and moved into place with `os.replace` (atomic on POSIX), and read back with
`torch.load(weights_only=True)`. Random-number-generator states are stored as tensors and plain tuples so
that the restricted unpickler accepts them.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlab.utils import atomic_write


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, also: Iterable[str | os.PathLike] = ()) -> Path:
    """Write `state` to `path` atomically: readers see the old file or the new one, never half of one.

    `also` names more files for the same state (the epoch's `best.pt`, `epoch_NNN.pt`). The state is serialised
    once; the other names are hard links to it (copies where the file system has no links), so a run whose best
    epoch is its last keeps one file's worth on disk, not two. They are all in place before `path` is: a kill
    between two names never leaves a `path` whose companions are missing. Replacing a name later (the next
    epoch's `last.pt`) never changes the others, as every write makes a new file."""
    names = [Path(p) for p in also] + [Path(path)]
    first = atomic_write(names[0], lambda f: torch.save(state, f))
    for name in names[1:]:
        _link_atomically(first, name)
    return Path(path)


def _link_atomically(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT file systems): a copy, written just as safely
        with source.open("rb") as data:
            atomic_write(target, lambda f: shutil.copyfileobj(data, f))
        return
    os.replace(tmp, target)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain types only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)


def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states in weights_only-loadable form."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` captured (CUDA states only when this process uses the same GPU count).

    Every tensor goes through `.cpu()`: a checkpoint loaded with map_location=cuda holds them on the GPU.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].cpu().tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])

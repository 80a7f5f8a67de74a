"""Checkpoints that survive a kill at any moment and load without executing pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written to a temporary file in
the same folder and moved into place with `os.replace` (atomic on POSIX), and read back with
`torch.load(weights_only=True)`. Random-number-generator states are stored as tensors and plain tuples so
that the restricted unpickler accepts them. A file to load is untrusted input: whatever is wrong with it is one
`CheckpointError` line, and no message ever suggests the unsafe `weights_only=False`.
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

from reidlab.utils import UnreadableFileError, atomic_write, read_torch_file


class CheckpointError(ValueError):
    """A file that is not a readable reidlab checkpoint; the message says why."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, also: Iterable[str | os.PathLike] = ()) -> Path:
    """Write `state` to `path` atomically: readers see the old file or the new one, never half of one.

    `also` names more files for the same state (the epoch's best and per-epoch checkpoints). The state is serialised
    once; the other names are hard links to it (copies where the file system has no links), so a run whose best
    epoch is its last keeps one file's worth on disk, not two. They are all in place before `path` is: a kill
    between two names never leaves a `path` whose companions are missing. Replacing a name later (the next
    epoch's last checkpoint) never changes the others, as every write makes a new file."""
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
        def copy(f) -> None:  # opens the source itself: a full disk's message runs it again to count the bytes
            with source.open("rb") as data:
                shutil.copyfileobj(data, f)

        atomic_write(target, copy)
        return
    os.replace(tmp, target)


def remove_interrupted_writes(*folders: str | os.PathLike) -> list[str]:
    """Delete the temporary files (``.NAME.*.tmp``) that a kill during `save_checkpoint` or `atomic_write` left
    in these folders, and return their names. Call it only where no other process writes into them."""
    removed = []
    for folder in folders:
        for tmp in sorted(Path(folder).glob(".*.tmp")):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain types only, never pickled code).
    Raises FileNotFoundError for a missing file and CheckpointError for anything else that is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")

    def unreadable(why: str) -> CheckpointError:
        return CheckpointError(f"not a readable reidlab checkpoint: {path}: {why}")

    try:
        state = read_torch_file(path, map_location)
    except UnreadableFileError as error:
        raise unreadable(str(error)) from None
    if not isinstance(state, dict):
        raise unreadable(f"it holds a {type(state).__name__}, not the dict that reidlab writes")
    if "model" not in state:
        raise unreadable(f"a dict without a 'model' entry (keys: {', '.join(sorted(map(str, state))[:6])}); "
                         "pretrained weights go in model.pretrained=PATH, not checkpoint= or a run folder")
    return state


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

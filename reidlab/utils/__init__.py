"""Small helpers every layer shares: atomic file writes, safe reads of torch files and ``key=value`` parsing.
A leaf: stdlib and PyYAML (torch only inside ``read_torch_file``)."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["UnreadableFileError", "atomic_write", "parse_key_values", "read_torch_file"]


class UnreadableFileError(ValueError):
    """A torch file that cannot be read safely; the message says why in a few words, for the caller's line."""


def read_torch_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of a file that may come from anywhere: tensors and plain values
    only, never pickled code. Every failure is an UnreadableFileError saying what is wrong (empty, truncated,
    not a torch.save file, pickled objects); none repeats torch's advice to retry with ``weights_only=False``,
    which would let the file run code."""
    import torch

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFileError("the file is empty (0 bytes); an interrupted copy? Copy it again")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "safe_globals" in str(error):  # a pickled class or function
            raise UnreadableFileError("it holds Python objects other than tensors and plain values, which are "
                                      "never unpickled (loading them can run code); save tensors only") from None
        raise UnreadableFileError(f"not a file written by torch.save ({size} bytes of something else)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        with path.open("rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":  # a zip archive, as torch.save writes, that ends early
            raise UnreadableFileError(f"the file is truncated ({size} bytes: the archive has no end); an "
                                      "interrupted copy? Copy it again") from None
        raise UnreadableFileError(f"not a file written by torch.save ({size} bytes; {type(error).__name__})") from None


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that readers see the old file or the new one, never half of one (a killed run leaves
    no truncated metrics or checkpoint). ``content``: text, bytes, or a function writing into the open binary file
    (e.g. ``lambda f: torch.save(state, f)``). The data goes to a temporary file in the same folder, is synced,
    then moved into place with ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def parse_key_values(items: Iterable[str], typed: bool = True, what: str = "override") -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}``: values typed by YAML as on a command line (an empty
    value is None); ``typed=False`` keeps them as text. An item without ``=`` is a ValueError naming it."""
    import yaml

    if isinstance(items, str):
        raise ValueError(f"{what}s must be a list of 'key=value' strings, got the string {items!r}")
    parsed: dict[str, Any] = {}
    for text in items:
        if "=" not in text:
            raise ValueError(f"{what} {text!r} is not of the form key=value")
        key, raw = text.split("=", 1)
        if typed:
            raw = yaml.safe_load(raw) if raw.strip() else None
        parsed[key.strip()] = raw
    return parsed

"""Small helpers every layer shares: atomic file writes and ``key=value`` parsing. A leaf: stdlib and PyYAML only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "parse_key_values"]


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

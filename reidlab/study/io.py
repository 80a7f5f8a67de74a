"""The study's record files: JSON written atomically and read forgivingly, timestamps, error records as the
index shows them, and folder-safe names. Shared by every study module."""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reidlab.utils import atomic_write, utc_now

__all__ = ["error_record", "jsonable", "read_json", "slug", "utc_now", "write_json"]


def jsonable(value: Any) -> Any:
    """Plain JSON values (anything else as its text), so a record never fails to write."""
    return json.loads(json.dumps(value, default=str))


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Written whole or not at all: a crash never leaves half a record."""
    atomic_write(path, json.dumps(jsonable(payload), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict:
    """A record, or {} where there is none or it does not parse (the caller decides what that means)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def error_record(exc: BaseException) -> dict:
    """The error as the index shows it: for a failed notebook cell, papermill's ename/evalue and the cell."""
    record = {"error": f"{type(exc).__name__}: {exc}".strip(), "traceback": "".join(traceback.format_exception(exc))}
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        record["error"] = f"{ename}: {evalue}"
        record["error_cell"] = getattr(exc, "cell_index", None)
        record["traceback"] = "\n".join(getattr(exc, "traceback", []) or [])
    # Notebook tracebacks carry ANSI colour codes; the index is plain HTML.
    record["traceback"] = re.sub(r"\x1b\[[0-9;]*m", "", record["traceback"])
    return record


def slug(text: str) -> str:
    """``text`` as a folder name: runs of other characters become one underscore."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_")

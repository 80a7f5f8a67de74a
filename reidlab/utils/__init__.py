"""Small helpers every layer shares: atomic file writes, safe reads of torch files, ``key=value`` parsing and
the handler of the signals that stop a run.
A leaf: stdlib and PyYAML (torch only inside ``read_torch_file``)."""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import io
import os
import pickle
import signal
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["DiskFullError", "UnreadableFileError", "atomic_write", "disk_full_cause", "disk_full_error",
           "file_sha256", "on_stop_signals", "parse_key_values", "read_torch_file", "utc_now"]

#: the errors of a full disk: no space left, and a quota used up
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


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


class DiskFullError(OSError):
    """A write that ran out of space (``errno`` ENOSPC or EDQUOT); an OSError, so ``except OSError`` still catches
    it. Its text is one line for a user: the path, the bytes it needs and the bytes free, and what to do."""

    def __str__(self) -> str:
        return self.strerror


class _CountingSink(io.RawIOBase):
    """A binary file that keeps only the number of bytes written to it."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        self.count += size
        return size

    def tell(self) -> int:
        return self.count


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def disk_full_error(path: Path, data: bytes | Callable[[IO[bytes]], None], error: OSError,
                    existed: bool = True) -> DiskFullError:
    """The DiskFullError of a failed write of ``data`` to ``path`` (``existed``: a previous file stays). A writer function is run again into a counting
    sink to learn its size: the happy path never holds a checkpoint in memory."""
    needed: int | None = len(data) if isinstance(data, bytes) else None
    if needed is None:
        sink = _CountingSink()
        try:
            data(sink)
            needed = sink.count
        except Exception:  # a writer that cannot run twice (it read a stream): the size stays unknown
            pass
    mount = path.parent.resolve()
    while not mount.exists():  # the folder itself could not be made
        mount = mount.parent
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    while not os.path.ismount(mount):  # the file system's mount point, for the message
        mount = mount.parent
    need = "needs more space" if needed is None else f"needs {_size(needed)} ({needed:,} bytes)"
    kept = "the previous file is intact" if existed else "no partial file is left"
    message = (f"disk full: writing {path} {need}, {_size(free)} free on {mount}; {kept}: free space, then resume "
               "(resume=auto, or run the sweep again)")
    return DiskFullError(error.errno, message, str(path))


def disk_full_cause(error: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT error behind ``error``, if any: a writer may turn it into another exception (torch.save
    raises a RuntimeError when its zip file cannot be closed after the failed write)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that readers see the old file or the new one, never half of one (a killed run leaves
    no truncated metrics or checkpoint). ``content``: text, bytes, or a function writing into the open binary file
    (e.g. ``lambda f: torch.save(state, f)``). The data goes to a temporary file in the same folder, is synced,
    then moved into place with ``os.replace``. A full disk (or quota) removes the temporary file, keeps the old
    one and raises DiskFullError."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    existed, tmp = path.exists(), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        full = disk_full_cause(error)
        if full is not None:
            raise disk_full_error(path, data, full, existed) from error
        raise
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks: what names a checkpoint in features, exports and caches."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int, Any], None]):
    """``handler`` for SIGTERM (a scheduler's stop) and SIGINT (Ctrl-C) during the ``with`` block; the previous
    handlers come back after it. Only a process's main thread can handle signals: elsewhere (a notebook's thread)
    the block runs with the process's own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def utc_now() -> str:
    """The time of a record, in UTC to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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

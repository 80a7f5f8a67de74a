"""One writer per run folder: a lease that says who is working in it, so that a second launch of the same sweep
skips the run and follows it instead of training it again.

``lease.json`` in the folder records the holder: host, pid (with the process's start time, against a reused pid),
SLURM job id and when it was claimed. While held, a thread renews the file's modification time every
``renew_seconds``. Claims are serialised by ``flock`` on ``lease.lock`` (on a shared file system too, where it
supports locks). A lease is stale, and a claim takes it over, when

- its holder is a process on this host that no longer runs (killed, crashed): at once;
- its holder is this very SLURM job (requeued, maybe onto another node): at once;
- its holder is on another host and the lease has not been renewed for ``expire_seconds``: a process on another
  host cannot be seen from here, so the expiry is the bound. Ages are measured against the file server's clock
  (the lock file is touched and its time read), so clocks that differ between nodes do not matter.

``exclusive_lock`` is the plain ``flock`` underneath, also what the trainer holds on its output folder while it
trains (a second ``reidlab train`` into the same folder is refused, naming the first).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from . import atomic_write, utc_now

__all__ = ["LEASE_FILE", "LEASE_SECONDS", "LockHeld", "RunLease", "exclusive_lock", "lease_holder_text"]

LEASE_FILE, LOCK_FILE = "lease.json", "lease.lock"
LEASE_SECONDS = 600.0  # a lease from another host, not renewed for this long, is taken over


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (``/proc/PID/stat`` field 22), None where unknown:
    with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return started is None or _process_start(pid) in (None, started)


def _job_id() -> str | None:
    """This SLURM job (array task) id, which survives a requeue; None outside SLURM."""
    if array := os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


class LockHeld(RuntimeError):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file (host and pid)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.holder = holder


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, wait: bool = True):
    """``flock`` on ``path`` (made if missing) for the ``with`` block, released when it ends or the process dies.
    ``wait=False``: raise LockHeld at once when another process holds it (the lock file then names this holder:
    host and pid). A file system without locks (ENOLCK, EOPNOTSUPP) goes unguarded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise LockHeld(path, lock.read().strip()) from None
        except OSError:  # no locks on this file system
            pass
        if not wait:
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}, since {utc_now()}\n")
            lock.flush()
        yield lock


def lease_holder_text(holder: dict[str, Any]) -> str:
    """'pid 123 on node7 (SLURM job 45_3), claimed 2026-12-05T10:00:00+00:00' for messages."""
    job = f" (SLURM job {holder['job_id']})" if holder.get("job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, claimed {holder.get('claimed', '?')}"


class RunLease:
    """The lease on one folder. ``acquire()`` claims it or returns the live holder's record; ``release()`` gives
    it back. ``expire_seconds``: how long a lease from another host stays valid without renewal."""

    def __init__(self, folder: str | os.PathLike, expire_seconds: float = LEASE_SECONDS,
                 renew_seconds: float | None = None) -> None:
        self.folder = Path(folder)
        self.path, self.lock_path = self.folder / LEASE_FILE, self.folder / LOCK_FILE
        self.expire_seconds = float(expire_seconds)
        self.renew_seconds = renew_seconds if renew_seconds is not None else max(self.expire_seconds / 10, 0.05)
        pid = os.getpid()
        self.record = {"host": socket.gethostname(), "pid": pid, "process_start": _process_start(pid),
                       "job_id": _job_id()}
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.took_over: dict[str, Any] | None = None  # the stale lease this claim replaced, if any

    def _guard(self):
        """Exclusive while one process reads and writes the lease."""
        return exclusive_lock(self.lock_path)

    def _read(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: cannot name a live holder
        return record if isinstance(record, dict) else {}

    def _age(self, lock) -> float:
        """Seconds since the lease was last renewed, by the file server's clock."""
        os.utime(lock.fileno())
        try:
            return os.fstat(lock.fileno()).st_mtime - self.path.stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def _mine(self, record: dict[str, Any]) -> bool:
        return all(record.get(k) == self.record[k] for k in ("host", "pid", "process_start"))

    def _stale(self, record: dict[str, Any], lock) -> bool:
        if not record.get("host") or not isinstance(record.get("pid"), int):
            return True
        if record["host"] == self.record["host"]:
            return not _alive(record["pid"], record.get("process_start"))
        if record.get("job_id") and record["job_id"] == self.record["job_id"]:
            return True  # this job's attempt before SLURM requeued it onto this node: that one has ended
        return self._age(lock) > self.expire_seconds

    def holder(self) -> dict[str, Any] | None:
        """The live holder's record (another process), or None when the folder is free, stale or held by us."""
        if not self.path.exists():  # free (and a folder not yet made stays so)
            return None
        with self._guard() as lock:
            record = self._read()
            if record is None or self._mine(record) or self._stale(record, lock):
                return None
            return record

    def acquire(self) -> dict[str, Any] | None:
        """Claim the folder: None once it is ours (taking over a stale lease, noted in ``took_over``), or the
        record of the live process that holds it."""
        with self._guard() as lock:
            record = self._read()
            if record is not None and not self._mine(record):
                if not self._stale(record, lock):
                    return record
                self.took_over = record or {"host": "?", "pid": "?", "claimed": "an unreadable lease"}
            atomic_write(self.path, json.dumps({**self.record, "claimed": utc_now()}, indent=1) + "\n")
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"lease {self.folder.name}", daemon=True)
        self._renewer.start()
        return None

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                os.utime(self.path)
            except OSError:  # gone or unwritable for a moment: the next renewal tries again
                pass

    def release(self) -> None:
        """Give the folder back (only if the lease is still ours: a takeover after expiry is not undone)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with self._guard():
            record = self._read()
            if record and self._mine(record):
                self.path.unlink(missing_ok=True)

"""A disk that fills during a record or checkpoint write (issue 29, "Full disk"): the previous file stays whole, no
temporary file is left, and the error is one line naming the path, the bytes needed and the bytes free.

The full disk is a small tmpfs that each test mounts (and unmounts). Where mounting is not permitted (no root), the
same tests run on an injected disk instead: ``atomic_write``'s files under the folder fail with ENOSPC past a byte
capacity, in this process and in the training subprocess. Each test prints which disk it ran on (``pytest -s``)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reidlab.utils
from reidlab.engine import load_config, train
from reidlab.engine.checkpoint import load_checkpoint
from reidlab.utils import DiskFullError, atomic_write

from test_engine_train import overrides

TESTS = Path(__file__).parent
PAGE = 4096
MESSAGE = re.compile(r"disk full: writing (?P<path>\S+) needs [\d.]+ \w+ \((?P<needed>[\d,]+) bytes\), "
                     r"(?P<free>[\d.]+ \w+) free on (?P<mount>\S+); the previous file is intact: free space, then "
                     r"resume \(resume=auto, or run the sweep again\)")


class SmallDisk:
    """A file system of ``capacity`` bytes at ``root``: a tmpfs, or an injected disk where mounting is refused."""

    def __init__(self, root: Path, capacity: int, tmpfs: bool):
        self.root, self.capacity, self.tmpfs = root, capacity, tmpfs

    @classmethod
    def mount(cls, root: Path, capacity: int = 64 << 20) -> tuple[SmallDisk, str]:
        """A new disk at ``root``, and in words which kind it is."""
        root.mkdir()
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={capacity}", "tmpfs", str(root)],
                               capture_output=True, text=True, check=False)
        kind = "tmpfs" if mount.returncode == 0 else f"injected disk (mount refused: {mount.stderr.strip()})"
        return cls(root, capacity, mount.returncode == 0), kind

    def used(self) -> int:
        if self.tmpfs:
            stats = os.statvfs(self.root)
            return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        files = {(s.st_ino, s.st_size) for s in (p.stat() for p in self.root.rglob("*") if p.is_file())}
        return sum(size for _, size in files)  # hard links (last.pt, best.pt) once

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        if self.tmpfs:
            subprocess.run(["mount", "-o", f"remount,size={capacity}", str(self.root)], check=True)

    def leave_free(self, size: int) -> None:
        """Shrink the disk to what it holds plus ``size`` bytes (whole pages)."""
        self.resize(self.used() + size)

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", str(self.root)], check=True)


class _CappedFile:
    """An open file of the injected disk: a write past its capacity fails as a full disk does."""

    def __init__(self, file, disk: SmallDisk):
        self._file, self._disk = file, disk

    def write(self, data) -> int:
        if self._disk.used() + memoryview(data).nbytes > self._disk.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._file.write(data)
        self._file.flush()  # on disk now, where used() counts it
        return written

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


class _InjectedOs:
    """``os`` for reidlab.utils, with files opened under the disk's folder capped at its capacity."""

    def __init__(self, disk: SmallDisk):
        self._disk = disk

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd: int, *args, **kwargs):
        file = os.fdopen(fd, *args, **kwargs)
        under = Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(self._disk.root)
        return _CappedFile(file, self._disk) if under else file


def inject(root: str, capacity: int) -> None:
    """Install the injected disk in this process (the training subprocess calls it)."""
    reidlab.utils.os = _InjectedOs(SmallDisk(Path(root), capacity, tmpfs=False))


@pytest.fixture
def disk(tmp_path, monkeypatch):
    small, kind = SmallDisk.mount(tmp_path / "disk")
    print(f"full disk: {kind}")
    if not small.tmpfs:
        monkeypatch.setattr(reidlab.utils, "os", _InjectedOs(small))
    try:
        yield small
    finally:
        small.close()


def _message(text: str, disk: SmallDisk) -> re.Match:
    match = MESSAGE.fullmatch(text)
    assert match, text
    if disk.tmpfs:
        assert match["mount"] == str(disk.root)
    return match


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_says_the_bytes(disk):
    path = disk.root / "records" / "metrics.json"
    atomic_write(path, "old")
    disk.leave_free(2 * PAGE)

    def writer(f):
        for _ in range(3):
            f.write(b"\x01" * 40_000)

    for content, needed in (("x" * 100_000, 100_000), (b"\xff" * 50_000, 50_000), (writer, 120_000)):
        with pytest.raises(DiskFullError) as caught:
            atomic_write(path, content)
        error = caught.value
        assert isinstance(error, OSError) and error.errno == errno.ENOSPC and error.filename == str(path)
        match = _message(str(error), disk)
        assert match["path"] == str(path) and match["needed"] == f"{needed:,}"
        if disk.tmpfs:
            assert match["free"] == "8.0 KiB"
        assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["metrics.json"]

    state = {"weights": torch.zeros(100_000)}  # torch.save turns the ENOSPC into a RuntimeError: still a DiskFullError
    with pytest.raises(DiskFullError) as caught:
        atomic_write(path, lambda f: torch.save(state, f))
    serialised = io.BytesIO()
    torch.save(state, serialised)
    needed = len(serialised.getvalue())
    assert _message(str(caught.value), disk)["needed"] == f"{needed:,}" and needed > 400_000
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_claims_json_on_a_full_disk_stays_byte_identical(disk, monkeypatch):
    """The ablation page's claims.json (``verdict_page``): a full disk leaves the previous verdicts whole."""
    from reidlab.study import ablation

    old = (json.dumps({"claims": [{"id": "adasp-1", "verdict": "supported"}]}, indent=2) + "\n").encode()
    (disk.root / "claims.json").write_bytes(old)
    payload = {"claims": [{"id": f"claim-{i}", "verdict": "supported", "delta": 0.5 * i} for i in range(400)]}
    monkeypatch.setattr(ablation, "study_verdicts", lambda frame, setup, confidence: {"claims_json": payload})
    disk.leave_free(PAGE)
    with pytest.raises(DiskFullError) as caught:
        ablation.verdict_page(None, None, disk.root)
    needed = len(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    match = _message(str(caught.value), disk)
    assert match["path"] == str(disk.root / "claims.json") and match["needed"] == f"{needed:,}" and needed > PAGE
    assert (disk.root / "claims.json").read_bytes() == old
    assert sorted(p.name for p in disk.root.iterdir()) == ["claims.json"]


def test_training_stops_with_one_line_when_the_disk_fills_at_a_checkpoint(disk, synth_root):
    """The second epoch's last.pt does not fit: the run exits with one line, the first epoch's checkpoint is whole,
    and once space is freed ``resume=auto`` finishes the run."""
    tiny = ("max_iters_per_epoch=1", "eval.every=0", "save_every=0")  # last.pt only: no best or epoch names
    measured = disk.root / "measure"
    train(load_config("synth_cpu", overrides(synth_root, measured, "epochs=1", *tiny)), print_fn=None)
    checkpoint_bytes = (measured / "checkpoints" / "last.pt").stat().st_size
    run_bytes = disk.used()  # the run folder after one epoch, final records included
    shutil.rmtree(measured)
    disk.resize(run_bytes + checkpoint_bytes // 2)  # one checkpoint and its records fit, a second one beside it not

    out = disk.root / "run"
    args = ["train", "-c", "synth_cpu", *overrides(synth_root, out, "epochs=2", *tiny)]
    launch = ["-m", "reidlab"] if disk.tmpfs else [
        "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_disk_full; "
              f"test_disk_full.inject({str(disk.root)!r}, {disk.capacity}); "
              "from reidlab.cli import main; sys.exit(main(sys.argv[1:]))"]
    process = subprocess.run([sys.executable, *launch, *args], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=TESTS.parent)
    last = out / "checkpoints" / "last.pt"
    assert process.returncode == 3, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    line = process.stderr.strip().splitlines()[-1]
    assert line.startswith("reidlab train: error: disk full: ")
    match = _message(line.removeprefix("reidlab train: error: "), disk)
    assert match["path"] == str(last)
    assert abs(int(match["needed"].replace(",", "")) - checkpoint_bytes) < PAGE
    assert load_checkpoint(last)["epoch"] == 1
    assert list(last.parent.glob(".*.tmp")) == [] and not (out / "metrics.json").exists()

    disk.resize(64 << 20)  # space freed: the advice works
    metrics = train(load_config("synth_cpu", overrides(synth_root, out, "epochs=2", "resume=auto", *tiny)),
                    print_fn=None)
    assert metrics["epochs_completed"] == 2 and load_checkpoint(last)["epoch"] == 2

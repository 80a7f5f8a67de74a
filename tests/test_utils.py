"""The shared helpers: atomic writes and key=value parsing."""

from __future__ import annotations

import errno
import os
import pickle

import pytest

from reidlab.utils import DiskFullError, atomic_write, parse_key_values


def test_atomic_write_text_bytes_and_writer(tmp_path):
    path = tmp_path / "sub" / "file.json"
    assert atomic_write(path, "{}") == path and path.read_text() == "{}"
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write(path, lambda f: f.write(b"streamed"))
    assert path.read_bytes() == b"streamed"
    assert [p.name for p in path.parent.iterdir()] == ["file.json"]  # no temporary file left behind


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def crash(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, crash)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_quota_or_a_wrapped_enospc_is_a_disk_full_error(tmp_path):
    """EDQUOT is a full disk too, and so is an ENOSPC that the writer turned into another exception (torch.save
    does); a writer that fails again when counted leaves the size unknown. Other OSErrors pass unchanged."""
    path = tmp_path / "last.pt"

    def quota(f):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    def wrapped(f):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("unexpected pos 704 vs 598") from None

    for writer, code in ((quota, errno.EDQUOT), (wrapped, errno.ENOSPC)):
        with pytest.raises(DiskFullError) as caught:
            atomic_write(path, writer)
        error = caught.value
        assert isinstance(error, OSError) and error.errno == code
        assert str(error).startswith(f"disk full: writing {path} needs more space, ") and "\n" not in str(error)
        assert "no partial file is left" in str(error)
        assert str(pickle.loads(pickle.dumps(error))) == str(error)  # crosses process pools whole

    def broken(f):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(OSError) as caught:
        atomic_write(path, broken)
    assert type(caught.value) is OSError and caught.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_parse_key_values():
    assert parse_key_values(["a.b=1", "c = x", "d=[1, 2]", "e=", "f=a=b"]) == {
        "a.b": 1, "c": "x", "d": [1, 2], "e": None, "f": "a=b"}
    assert parse_key_values(["size=128x64"], typed=False) == {"size": "128x64"}
    with pytest.raises(ValueError, match="knob 'oops' is not of the form key=value"):
        parse_key_values(["oops"], what="knob")
    with pytest.raises(ValueError, match="got the string"):
        parse_key_values("a=1")

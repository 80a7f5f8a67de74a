"""requirements.lock: in sync with pyproject.toml (the check CI runs before installing), complete, without torch's
own stack, and recorded in every run's provenance."""

from __future__ import annotations

import hashlib
import json
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
LOCK = REPO / "requirements.lock"


def lock_script():
    spec = importlib.util.spec_from_file_location("lock_script", REPO / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "lock.py"), "check", *args], capture_output=True,
                          text=True, timeout=60)


def pinned() -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", m[1]).lower(): m[2]
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^ ;\\]+)", LOCK.read_text(), re.M)}


def test_the_lock_is_in_sync_and_a_dependency_added_without_make_lock_fails_the_check(tmp_path):
    assert check().returncode == 0
    pyproject = (REPO / "pyproject.toml").read_text()
    reordered = tmp_path / "reordered" / "pyproject.toml"
    reordered.parent.mkdir()
    torch = re.search(r'^  "torch>=[^"]*",\n', pyproject, re.M)[0]
    reordered.write_text(pyproject.replace(torch, "").replace("dependencies = [\n", "dependencies = [\n" + torch, 1))
    assert check("--pyproject", str(reordered)).returncode == 0  # order is not a change
    added = tmp_path / "added" / "pyproject.toml"
    added.parent.mkdir()
    added.write_text(pyproject.replace("dependencies = [\n", 'dependencies = [\n  "rich>=13",\n', 1))
    result = check("--pyproject", str(added))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "requirements.lock is out of sync with pyproject.toml" in result.stderr and "`make lock`" in result.stderr
    assert "missing: run `make lock`" in check("--lock", str(tmp_path / "nope.lock")).stderr


def test_the_lock_pins_every_dependency_with_hashes_but_leaves_torch_to_torch_spec():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    asked = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", d)[0]).lower()
             for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    versions = pinned()
    assert asked - {"torch", "torchvision"} <= set(versions)
    assert not {"torch", "torchvision", "triton", "sympy"} & set(versions)
    assert not [name for name in versions if name.startswith("nvidia-")]
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 5)[5])
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    assert "torch and torchvision (not locked, installed by TORCH_SPEC): torch==" in LOCK.read_text()


def test_what_only_torch_needs_is_left_out_of_the_lock():
    compiled = """\
filelock==3.0 \\
    --hash=sha256:aa
    # via
    #   huggingface-hub
    #   torch
mpmath==1.3.0 \\
    --hash=sha256:bb
    # via sympy
numpy==2.0 \\
    --hash=sha256:cc
    # via
    #   reidlab (pyproject.toml)
    #   torchvision
nvidia-cublas==13 \\
    --hash=sha256:dd
    # via
    #   nvidia-cudnn-cu13
    #   torch
nvidia-cudnn-cu13==9 \\
    --hash=sha256:ee
    # via torch
sympy==1.14 \\
    --hash=sha256:ff
    # via torch
torch==2.14.1 \\
    --hash=sha256:00
    # via
    #   reidlab (pyproject.toml)
    #   timm
    #   torchvision
"""
    assert lock_script()._only_for_torch(compiled) == ["mpmath", "nvidia-cublas", "nvidia-cudnn-cu13", "sympy",
                                                         "torch", "torchvision"]


def test_every_run_records_the_lock_its_environment_was_installed_from(tmp_path):
    from reidlab.engine.provenance import LOCK_RECORD, installed_lock

    assert installed_lock(tmp_path) is None  # not installed from a lock (make install-latest, plain pip)
    (tmp_path / LOCK_RECORD).write_text("0123456789abcdef0123  requirements.lock\n")
    assert installed_lock(tmp_path) == "0123456789abcdef"
    if not (Path(sys.prefix) / LOCK_RECORD).is_file():
        pytest.fail("this environment was not installed from requirements.lock: run the suite with `make test`")
    assert installed_lock() == hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


FAKE_UV = '''#!{python}
"""Stands in for uv: records what the lock script asked and what its output file held before."""
import json, sys
output = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output-file="))
with open({calls!r}, "a") as calls:
    calls.write(json.dumps({{"args": sys.argv[1:], "before": open(output).read()}}) + "\\n")
open(output, "w").write("numpy==2.0.0 \\\\\\n    # via reidlab (pyproject.toml)\\n")
'''


@pytest.mark.parametrize("upgrade", [False, True])
def test_make_lock_keeps_the_locks_versions_unless_asked_to_upgrade(tmp_path, upgrade):
    calls = tmp_path / "calls.jsonl"
    uv = tmp_path / "uv"
    uv.write_text(FAKE_UV.format(python=sys.executable, calls=str(calls)))
    uv.chmod(0o755)
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==1.26.4 \\\n    # via reidlab (pyproject.toml)\n")
    lock_script().compile_lock(str(uv), "torch==2.14.1", output=lock, upgrade=upgrade)
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(runs) == 2 and all("numpy==1.26.4" in run["before"] for run in runs), "uv sees the pins to prefer"
    assert all(("--upgrade" in run["args"]) == upgrade for run in runs)
    assert "numpy==2.0.0" in lock.read_text() and lock.read_text().startswith("# reidlab's pinned dependencies")

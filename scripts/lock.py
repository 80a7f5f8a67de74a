#!/usr/bin/env python3
"""requirements.lock: every package reidlab installs, at exact versions with hashes, from pyproject.toml.

    python scripts/lock.py compile   write requirements.lock with uv (`make lock`), keeping its versions where they
                                     still fit (--upgrade, `make lock UPGRADE=1`: the newest releases)
    python scripts/lock.py check     exit 1, with one line naming `make lock`, when requirements.lock no longer
                                     matches pyproject.toml's dependencies (`make install` and CI run it)

The lock is for CPython 3.11 on x86-64 Linux (this machine kind and the usual GPU node). torch and torchvision
are not in it, nor what only they need (the CUDA runtime wheels, triton, sympy): they stay as installed by the
Makefile's TORCH_SPEC, or by conda on a GPU node, and the lock's header records the TORCH_SPEC it was made with.
The header also holds a sha256 of pyproject.toml's dependency lists, which `check` compares: a dependency added or
removed without `make lock` fails it. Only the standard library is used, so the check runs before any install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
EXTRAS = ("dev",)
LEFT_TO_TORCH_SPEC = ("torch", "torchvision")
DEPENDENCIES_LINE = "# pyproject-dependencies-sha256: "
TORCH_LINE = "# torch and torchvision (not locked, installed by TORCH_SPEC): "


def dependencies_digest(pyproject: Path) -> str:
    """sha256 of what pyproject.toml asks for: requires-python, the dependencies and the locked extras (sorted,
    so reordering them is not a change)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    asked = {"requires-python": project.get("requires-python"),
             "dependencies": sorted(project.get("dependencies", [])),
             "extras": {name: sorted(project.get("optional-dependencies", {}).get(name, [])) for name in EXTRAS}}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()


def _only_for_torch(compiled: str) -> list[str]:
    """The packages of a uv lock that only torch and torchvision need, directly or through each other (read from
    uv's `# via` annotations)."""
    parents: dict[str, set[str]] = {}
    current = None
    for line in compiled.splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            current = _name(line)
            parents[current] = set()
        elif current and (via := re.match(r"\s+# via\s*(.*)", line)):
            parents[current] |= {_name(p) for p in via[1].split(",") if p.strip()}
        elif current and (more := re.match(r"\s+#\s+([A-Za-z0-9][A-Za-z0-9_.-]*)", line)):  # "#   name (extra)"
            parents[current].add(_name(more[1]))
    left = set(LEFT_TO_TORCH_SPEC)
    while grown := {name for name, via in parents.items() if name not in left and via and via <= left}:
        left |= grown
    return sorted(left)


def compile_lock(uv: str, torch_spec: str, output: Path = LOCK, upgrade: bool = False) -> None:
    """Resolve pyproject.toml with uv (torch pinned to TORCH_SPEC) and write the lock without torch's own stack.
    The versions of the existing lock are kept where they still fit (uv prefers the pins of its output file);
    ``upgrade`` resolves every package to its newest allowed release instead."""
    base = [uv, "pip", "compile", "pyproject.toml", *(f"--extra={e}" for e in EXTRAS), "--generate-hashes",
            f"--python-version={PYTHON_VERSION}", f"--python-platform={PLATFORM}", "--no-header", "--quiet",
            *(["--upgrade"] if upgrade else [])]
    with tempfile.TemporaryDirectory() as tmp:
        constraints, resolved = Path(tmp) / "torch.txt", Path(tmp) / "resolved.txt"
        constraints.write_text("\n".join(torch_spec.split()) + "\n")

        def resolve(*extra: str) -> str:
            resolved.write_text(output.read_text() if output.is_file() else "")
            subprocess.run([*base, f"--constraint={constraints}", f"--output-file={resolved}", *extra], cwd=REPO,
                           capture_output=True, text=True, check=True)
            return resolved.read_text()

        leave_out = [f"--no-emit-package={name}" for name in _only_for_torch(resolve())]
        final = resolve(*leave_out)
    header = [
        "# reidlab's pinned dependencies: `make lock` (scripts/lock.py compile) writes this file, do not edit it.",
        f"# uv pip compile pyproject.toml --extra {' --extra '.join(EXTRAS)} --generate-hashes "
        f"--python-version {PYTHON_VERSION} --python-platform {PLATFORM}, torch constrained to TORCH_SPEC and",
        "# left out with what only it needs.",
        f"{DEPENDENCIES_LINE}{dependencies_digest(REPO / 'pyproject.toml')}",
        f"{TORCH_LINE}{torch_spec}",
    ]
    output.write_text("\n".join(header) + "\n" + final)


def check(pyproject: Path, lock: Path) -> str | None:
    """Why the lock does not fit pyproject.toml, or None when it does."""
    if not lock.is_file():
        return f"{lock.name} is missing: run `make lock`"
    recorded = next((line[len(DEPENDENCIES_LINE):].strip() for line in lock.read_text().splitlines()
                     if line.startswith(DEPENDENCIES_LINE)), None)
    if recorded != dependencies_digest(pyproject):
        return (f"{lock.name} is out of sync with {pyproject.name} (its dependencies changed since the lock was made): "
                "run `make lock` and commit both")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile")
    p.add_argument("--uv", default=shutil.which("uv") or "uv")
    p.add_argument("--torch-spec", default=os.environ.get("TORCH_SPEC"), help="default: $TORCH_SPEC (the Makefile's)")
    p.add_argument("--upgrade", action="store_true", help="newest allowed releases instead of the lock's versions")
    p = sub.add_parser("check")
    p.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    p.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    if args.command == "compile":
        if not args.torch_spec:
            parser.error("give --torch-spec or set TORCH_SPEC (`make lock` passes the Makefile's)")
        compile_lock(args.uv, args.torch_spec, upgrade=args.upgrade)
        print(f"wrote {LOCK}")
        return 0
    problem = check(args.pyproject, args.lock)
    if problem:
        print(f"lock check: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

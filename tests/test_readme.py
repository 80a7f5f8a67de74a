"""The README's library example runs as written (in a scratch folder: it generates SynthReID under data/)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def library_example() -> str:
    text = README.read_text()
    section = text[text.index("## The library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(library_example(), str(README), "exec"), namespace)
    assert namespace["loss"].ndim == 0 and set(namespace["terms"]) >= {"ce", "adasp", "total"}
    assert (tmp_path / "data" / "synthreid").is_dir()

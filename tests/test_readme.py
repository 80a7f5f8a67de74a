"""The README's library example runs as written (in a scratch folder: it generates SynthReID under data/)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def library_examples() -> list[str]:
    """Every python block of the README's "The library" section."""
    text = README.read_text()
    start = text.index("\n## The library")
    section = text[start:text.index("\n## Measured", start)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    library, gallery_index = library_examples()
    namespace: dict = {}
    exec(compile(library, str(README), "exec"), namespace)
    assert namespace["loss"].ndim == 0 and set(namespace["terms"]) >= {"ce", "adasp", "total"}
    assert (tmp_path / "data" / "synthreid").is_dir()
    namespace = {}
    exec(compile(gallery_index, str(README), "exec"), namespace)
    assert namespace["ids"].shape == (200, 10) and namespace["approx"]["top_k"] == 100
    assert abs(namespace["approx"]["mAP"] - namespace["exact"]["mAP"]) < 0.1

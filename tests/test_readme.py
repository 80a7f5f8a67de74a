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


def test_the_claims_tables_come_from_one_claims_json_each():
    """Each claims table of the README is a block written by scripts/readme_tables.py from one claims.json (one
    study run at one clean commit), never edited by hand or mixed from several runs."""
    text = README.read_text()
    blocks = re.findall(r"<!-- claims-table:(\w+) -->\n(.*?)\n<!-- /claims-table:\1 -->", text, re.S)
    assert "quick" in {profile for profile, _ in blocks}
    for profile, block in blocks:
        caption, blank, header, rule, *rows = block.split("\n")
        assert caption.startswith(f"Profile `{profile}`, ") and "table by `scripts/readme_tables.py`)" in caption
        assert re.search(r"commit [0-9a-f]{7}, ", caption) and re.search(r"claims.json sha256 [0-9a-f]{12}", caption)
        assert blank == "" and header.startswith("| claim |") and rows
        assert all(row.rstrip(" |").rsplit("| ", 1)[-1] in {"supported", "contradicted", "no-effect", "inconclusive",
                                                             "untestable", "not run"} for row in rows)

"""scripts/readme_tables.py: one claims.json -> one README table, refusing runs from several or dirty commits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "readme_tables.py"

CLAIMS = {
    "profile": "quick", "seeds": [0, 1, 2], "reference_mAP": 87.54, "source": {"commits": ["abc1234def"], "dirty": False},
    "backbone": {"loss": "1 x CE"},
    "claims": [
        {"id": "a", "statement": "SP-H beats SP-LH", "delta": 1.23, "ci_low": 0.5, "ci_high": 2.0, "margin": 1.0,
         "n_pairs": 3, "p": 0.004, "p_holm": 0.02, "verdict": "supported",
         "controls": [{"name": "hard-positive-rise", "value": 0.31, "threshold": 0.1, "direction": ">=", "passed": True}]},
        {"id": "b", "statement": "GS beats baseline", "delta": None, "ci_low": None, "ci_high": None, "margin": 0.5,
         "n_pairs": 0, "p": None, "p_holm": None, "verdict": "untestable",
         "controls": [{"name": "colour-unreliable-across-cameras", "value": 0.01, "threshold": 0.1, "direction": ">=",
                       "passed": False}]},
    ],
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_table_from_one_claims_json_into_the_readme_block(tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS))
    printed = run(str(claims))
    assert printed.returncode == 0, printed.stderr
    assert "Profile `quick`, 3 seeds, commit abc1234, shared backbone trained with 1 x CE; reference model 87.5 mAP" in printed.stdout
    assert "| SP-H beats SP-LH | +1.2 [+0.5, +2.0] | 1 | 3 | 0.004 | 0.02 | ✓ hard-positive-rise 0.31 >= 0.1 | supported |" in printed.stdout
    assert "| GS beats baseline | n/a | 0.5 | 0 | n/a | n/a | ✗ colour-unreliable-across-cameras 0.01 >= 0.1 | untestable |" in printed.stdout
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- claims-table:quick -->\nold table\n<!-- /claims-table:quick -->\nafter\n")
    assert run(str(claims), "--write", str(readme)).returncode == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("before\n<!-- claims-table:quick -->\nProfile `quick`")
    assert text.endswith("supported |\n| GS beats baseline | n/a | 0.5 | 0 | n/a | n/a | ✗ colour-unreliable-across-cameras 0.01 >= 0.1 | untestable |\n<!-- /claims-table:quick -->\nafter\n")


@pytest.mark.parametrize("source, message", [
    ({"commits": ["a1", "b2"], "dirty": False}, "come from 2 commits"),
    ({"commits": [], "dirty": False}, "come from 0 commits"),
    ({"commits": ["a1"], "dirty": True}, "uncommitted changes"),
])
def test_mixed_or_dirty_runs_are_refused(tmp_path, source, message):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({**CLAIMS, "source": source}))
    result = run(str(claims))
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


def test_a_readme_without_the_block_is_refused(tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    result = run(str(claims), "--write", str(readme))
    assert result.returncode == 2 and "no block <!-- claims-table:quick -->" in result.stderr

#!/usr/bin/env python3
"""The README's claims tables, each produced from ONE claims.json (one study run at one commit), so that a table
cannot mix runs.

    python scripts/readme_tables.py reports/ablation/claims.json                 print the table
    python scripts/readme_tables.py reports/ablation/claims.json --write README.md

With --write, the table replaces the block between ``<!-- claims-table:PROFILE -->`` and
``<!-- /claims-table:PROFILE -->`` in the README (PROFILE from the claims.json). A claims.json whose runs come from
more than one commit, or from a checkout with uncommitted changes, is refused: its table would not say which code
produced it. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path


def _number(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}" if value < 0.01 else f"{value:.2f}"


def _checks(claim: dict) -> str:
    parts = []
    for check in claim.get("controls", []):
        value = "n/a" if check.get("value") is None else f"{check['value']:.2f}"
        threshold = "" if check.get("threshold") is None else f" {check.get('direction', '>=')} {check['threshold']:g}"
        parts.append(f"{'✓' if check.get('passed') else '✗'} {check['name']} {value}{threshold}")
    return "; ".join(parts) or "none"


def provenance(payload: dict) -> str:
    """The single commit the claims were computed at; raises ValueError when there is none or several."""
    source = payload.get("source") or {}
    commits = source.get("commits") or []
    if len(commits) != 1:
        raise ValueError(f"the runs of this claims.json come from {len(commits)} commits {commits}: a README table must "
                         "come from one study run at one commit; re-run the study (`make report`) at one commit")
    if source.get("dirty"):
        raise ValueError(f"the runs of this claims.json were made from a checkout with uncommitted changes (commit "
                         f"{commits[0][:7]}): commit first, then re-run the study")
    return commits[0]


def render(payload: dict, digest: str) -> str:
    """The markdown block: a caption line that names the run, then one row per claim."""
    commit = provenance(payload)
    seeds = payload.get("seeds") or []
    backbone = (payload.get("backbone") or {}).get("loss") or "none"
    reference = payload.get("reference_mAP")
    verdicts: dict[str, int] = {}
    for claim in payload["claims"]:
        verdicts[claim["verdict"]] = verdicts.get(claim["verdict"], 0) + 1
    lines = [
        f"Profile `{payload.get('profile', '?')}`, {len(seeds)} seeds, commit {commit[:7]}, shared backbone trained with "
        f"{backbone}; reference model {_number(reference, signed=False)} mAP. Verdicts: "
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + f". (claims.json sha256 {digest[:12]}, "
        "table by `scripts/readme_tables.py`)",
        "",
        "| claim | Δ [95% CI] (points) | margin | pairs | p | Holm p | manipulation checks | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for claim in payload["claims"]:
        interval = (f"{_number(claim.get('delta'))} [{_number(claim.get('ci_low'))}, {_number(claim.get('ci_high'))}]"
                    if claim.get("delta") is not None else "n/a")
        lines.append(f"| {claim['statement']} | {interval} | {claim.get('margin', 'n/a'):g} | {claim.get('n_pairs', 0)} | "
                     f"{_p(claim.get('p'))} | {_p(claim.get('p_holm'))} | {_checks(claim)} | {claim['verdict']} |")
    for claim in payload.get("not_run") or []:
        lines.append(f"| {claim['statement']} | n/a | n/a | 0 | n/a | n/a | {claim['reason']} | not run |")
    return "\n".join(lines)


def write_block(readme: Path, profile: str, block: str) -> None:
    text = readme.read_text()
    start, end = f"<!-- claims-table:{profile} -->", f"<!-- /claims-table:{profile} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no block {start} ... {end}: add the two markers where the table belongs")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{block}\n{end}", text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claims", type=Path, help="a study's reports/ablation/claims.json")
    parser.add_argument("--write", type=Path, metavar="README", help="replace the profile's block in this file")
    args = parser.parse_args(argv)
    try:
        raw = args.claims.read_bytes()
        payload = json.loads(raw)
        block = render(payload, hashlib.sha256(raw).hexdigest())
        if args.write:
            write_block(args.write, payload.get("profile", "?"), block)
        else:
            print(block)
    except (OSError, ValueError, KeyError) as error:
        print(f"readme_tables: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recipe choices made on validation data: a study's arms retrained on validation copies of its SynthReID.

A validation copy has the regimes and knobs of the study's copy but is drawn with another generator seed
(``VALIDATION_SYNTH_SEED``), so none of its identities is a study identity. A knob whose value an arm needs (the
scene adversary's strength, for one) is chosen by training the arm at each candidate value on the validation
copy and scoring its own query/gallery split; the study's test split is never read. The profile then records
the chosen value with the scores (``hbreid_overrides`` of ``reidlab/configs/study/*.yaml``, docs/study.md).

    python -m reidlab.study.validation full --candidate scene.strength=0.1 --candidate scene.strength=1.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reidlab.utils import parse_key_values

from .ablation import prepare_ablation
from .profile import STUDY_DATA_DIR, load_profile
from .stats import arm_values
from .sweep import sweep
from .training import train_run

VALIDATION_SYNTH_SEED = 2000  # generator seed of validation copies (study copies: 0, pretraining: 1000)


def candidate_label(overrides: Mapping[str, Any]) -> str:
    """``{"scene.strength": 0.1}`` -> ``"scene.strength=0.1"`` (a candidate's sweep point and score key)."""
    return ",".join(f"{key}={json.dumps(value)}" for key, value in overrides.items())


def choose_on_validation(profile: str | os.PathLike, candidates: Sequence[Mapping[str, Any]],
                         output_dir: str | os.PathLike, table: str = "hbreid2", row: str = "+GS +SR",
                         seeds: Sequence[int] = (0, 1), data_dir: str | os.PathLike | None = None,
                         workers: int | None = None, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``row`` of ``table`` with each candidate's overrides on the profile's validation copies, over
    ``seeds``, and return ``{"scores": {label: {"overrides", "mean", "per_seed"}}, "chosen", ...}``: ``chosen``
    is the candidate of the highest mean validation mAP (points). ``data_dir`` holds the profile's shared backbone
    (default: the study's own data folder, so it is not pretrained again) and receives the validation copies."""
    if not candidates:
        raise ValueError("give at least one candidate (a mapping of run overrides) to choose from")
    settings = load_profile(profile)
    data_dir = Path(data_dir or Path(STUDY_DATA_DIR) / settings.name)
    output_dir = Path(output_dir)
    grid: dict[str, dict[str, Any]] = {}
    setup = None
    for overrides in candidates:
        setup = prepare_ablation(profile, output_dir, overrides=overrides, seeds=seeds, data_dir=data_dir,
                                 tables=[table], only={table: [row]}, synth_seed=VALIDATION_SYNTH_SEED,
                                 print_fn=print_fn)
        grid[candidate_label(overrides)] = setup.grid[setup.rows[table][row]]
    frame = sweep(grid, seeds, notebook=train_run, output_root=output_dir / "runs",
                  workers=workers or setup.workers, print_fn=print_fn)
    scores = {}
    for overrides in candidates:
        per_seed = arm_values(frame, candidate_label(overrides), "mAP", 100)
        scores[candidate_label(overrides)] = {"overrides": dict(overrides), "mean": float(per_seed.mean()),
                                              "per_seed": [float(v) for v in per_seed]}
    chosen = max(scores.values(), key=lambda score: score["mean"])["overrides"]
    return {"profile": settings.name, "arm": f"{table}: {row}", "metric": "validation mAP (points)",
            "seeds": list(seeds), "scores": scores, "chosen": chosen}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Choose settings of a study arm on validation copies of SynthReID.")
    parser.add_argument("profile", help="study profile (quick, full, gpu or a YAML path)")
    parser.add_argument("--candidate", action="append", nargs="+", required=True, metavar="KEY=VALUE",
                        help="one candidate's run overrides (repeat the option for each candidate)")
    parser.add_argument("--row", default="+GS +SR", help="the HBReID table 2 row to train (default: +GS +SR)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output-dir", default=None, help="default: data/validation/<profile>")
    parser.add_argument("--data-dir", default=None, help="the profile's study data (backbone), default: data/study/<profile>")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or Path("data") / "validation" / load_profile(args.profile).name
    candidates = [parse_key_values(items) for items in args.candidate]
    result = choose_on_validation(args.profile, candidates, output_dir, row=args.row, seeds=args.seeds,
                                  data_dir=args.data_dir, print_fn=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=1))  # stdout holds the JSON only


if __name__ == "__main__":
    main()

"""`reidlab ...` command line. Each subcommand imports its module lazily so `reidlab --help` is fast."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from reidlab.utils import parse_key_values


def _cmd_synth(args: argparse.Namespace) -> int:
    from reidlab.data import synth

    with _clean_errors("synth", FileExistsError, ValueError, TypeError):
        knobs = parse_key_values(args.knob, typed=False, what="knob")
        root = synth.generate(args.root, seed=args.seed, overwrite=args.overwrite, **synth.parse_knobs(knobs))
    print(f"SynthReID written to {root}")
    from reidlab.data import build_dataset

    build_dataset("synthreid", root).summary(print_fn=print)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from reidlab.data import build_dataset

    with _clean_errors("summary", KeyError, FileNotFoundError, ValueError):
        dataset = build_dataset(args.name, args.root)
    dataset.summary(print_fn=print)
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from reidlab.data import check_data

    with _clean_errors("check-data", KeyError, FileNotFoundError, ValueError):
        bad = check_data(args.name, args.root, num_workers=args.workers)
    if bad:
        print(f"{len(bad)} unreadable image(s):")
        for path, err in bad:
            print(f"  {path}: {err}")
        return 1
    print("all images decode")
    return 0


@contextlib.contextmanager
def _clean_errors(command: str, *errors: type[Exception]):
    """Errors of bad input as one clear line on stderr (exit status 2) instead of a traceback."""
    try:
        yield
    except errors as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError quotes its text
        print(f"reidlab {command}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from reidlab.data import CorruptImageError
    from reidlab.engine import CheckpointError, ConfigError, load_config, train

    with _clean_errors("train", ConfigError, FileNotFoundError, CheckpointError, CorruptImageError):
        metrics = train(load_config(args.config, args.overrides))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"results: {metrics['output_dir']}/metrics.json (mAP {metrics['mAP']:.4f}, rank1 {metrics.get('rank1', 0):.4f})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from reidlab.data import CorruptImageError
    from reidlab.engine import CheckpointError, ConfigError, evaluate_checkpoint, load_config

    with _clean_errors("eval", ConfigError, FileNotFoundError, CheckpointError, CorruptImageError):
        evaluate_checkpoint(load_config(args.config, args.overrides))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reidlab import study

    with _clean_errors("report", ValueError, FileExistsError):
        seeds = None
        if args.seeds is not None:
            try:
                seeds = [int(s) for s in args.seeds.split(",")]
            except ValueError:
                raise ValueError(f"--seeds takes comma-separated integers such as 0,1,2, got {args.seeds!r}") from None
        study.report(args.output, data_dir=args.data_dir, profile=args.profile, seeds=seeds, workers=args.workers,
                     notebooks=args.notebooks or study.STUDY_NOTEBOOKS, kernel_name=args.kernel)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the SynthReID benchmark")
    p.add_argument("root", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a SynthReID of other seed/knobs at root")
    p.add_argument("knob", nargs="*", default=[], help="generator knobs as key=value (see reidlab.data.synth)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("summary", help="print a dataset's ids/images/cameras per split")
    p.add_argument("name")
    p.add_argument("root")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("check-data", help="decode every image of a dataset and list the bad ones")
    p.add_argument("name")
    p.add_argument("root")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("train", help="train a preset (torchrun --nproc_per_node N -m reidlab train ... for DDP)")
    p.add_argument("-c", "--config", default="synth_cpu", help="preset name in reidlab/configs or a .yaml path")
    p.add_argument("overrides", nargs="*", default=[], help="key=value overrides, dotted keys (data.root=/x)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: reidlab eval -c PRESET checkpoint=PATH [key=value ...]")
    p.add_argument("-c", "--config", default="synth_cpu", help="preset name in reidlab/configs or a .yaml path")
    p.add_argument("overrides", nargs="*", default=[], help="key=value overrides; checkpoint=PATH is required")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("report", help="run the default study on SynthReID and render reports/index.html")
    p.add_argument("--output", default="reports", help="report folder (default: reports)")
    p.add_argument("--data-dir", default="data/study", help="where the study's SynthReID copies are generated")
    p.add_argument("--profile", default="quick",
                   help="study profile: quick (default, ~15 min on 2 CPU cores), full (~2 h), gpu, or a YAML path")
    p.add_argument("--seeds", default=None, help="comma-separated ablation seeds (default: the profile's)")
    p.add_argument("--workers", type=int, default=None, help="parallel ablation runs (default: the profile's)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel (default: 'reidlab' or this interpreter's python3)")
    p.add_argument("notebooks", nargs="*", help="subset of: ablation train positive_pairs class_similarity")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

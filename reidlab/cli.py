"""`reidlab ...` command line. Each subcommand imports its module lazily so `reidlab --help` is fast."""

from __future__ import annotations

import argparse
import sys


def _cmd_synth(args: argparse.Namespace) -> int:
    from reidlab.data import synth

    knobs = dict(kv.split("=", 1) for kv in args.knob)
    root = synth.generate(args.root, seed=args.seed, **synth.parse_knobs(knobs))
    print(f"SynthReID written to {root}")
    from reidlab.data import build_dataset

    build_dataset("synthreid", root).summary(print_fn=print)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from reidlab.data import build_dataset

    build_dataset(args.name, args.root).summary(print_fn=print)
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from reidlab.data import check_data

    bad = check_data(args.name, args.root, num_workers=args.workers)
    if bad:
        print(f"{len(bad)} unreadable image(s):")
        for path, err in bad:
            print(f"  {path}: {err}")
        return 1
    print("all images decode")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the SynthReID benchmark")
    p.add_argument("root", help="output folder")
    p.add_argument("--seed", type=int, default=0)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

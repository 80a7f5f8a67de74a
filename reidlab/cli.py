"""`reidlab ...` command line. Each subcommand imports its module lazily so `reidlab --help` is fast."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from reidlab.utils import DiskFullError, atomic_write, parse_key_values


def _cmd_synth(args: argparse.Namespace) -> int:
    from reidlab.data import synth

    with _clean_errors("synth", FileExistsError, ValueError, TypeError):
        knobs = parse_key_values(args.knob, typed=False, what="knob")
        regimes = [name for names in args.regime for name in names.split(",") if name]
        knobs = synth.regime_knobs(*regimes, **synth.parse_knobs(knobs))
        root = synth.generate(args.root, seed=args.seed, overwrite=args.overwrite, **knobs)
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

    if args.datasets:
        return _paper_report(args)
    with _clean_errors("report", ValueError, FileExistsError):
        if args.set or args.dry_run:
            raise ValueError("--set and --dry-run belong to the paper study: add --profile paper --datasets FILE")
        seeds = None if args.seeds is None else study.check_seeds(args.seeds.split(","), "--seeds")
        study.report(args.output, data_dir=args.data_dir or study.STUDY_DATA_DIR, profile=args.profile, seeds=seeds, workers=args.workers,
                     notebooks=args.notebooks or study.STUDY_NOTEBOOKS, kernel_name=args.kernel,
                     executor=args.executor, cluster=args.cluster)
    return 0


def _paper_report(args: argparse.Namespace) -> int:
    from reidlab import study
    from reidlab.engine import ConfigError

    with _clean_errors("report", ValueError, ConfigError, FileNotFoundError, KeyError):
        if args.seeds is not None or args.workers is not None or args.notebooks:
            raise ValueError("the paper study takes its seeds and workers from the profile: --set seeds=[0,1] "
                             "--set workers=2 (and runs notebooks/paper.ipynb only)")
        study.paper_report(args.output, profile=args.profile, datasets=args.datasets, sets=args.set,
                           dry_run=args.dry_run, executor=args.executor, cluster=args.cluster, kernel_name=args.kernel)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reidlab import study
    from reidlab.engine import ConfigError, load_config
    from reidlab.engine.builders import prepare_dataset

    with _clean_errors("sweep", ConfigError, ValueError, FileNotFoundError):
        if args.cluster and args.executor != "slurm":
            raise ValueError("--cluster describes a SLURM cluster: add --executor slurm")
        cluster = study.load_cluster(args.cluster) if args.executor == "slurm" else None
        # `--seeds 0 1 key=value`: argparse hands the overrides that follow the seeds to --seeds
        seeds = study.check_seeds([s for s in args.seeds if "=" not in s], "--seeds")
        base = parse_key_values(args.overrides + [s for s in args.seeds if "=" in s])
        grid = study.parse_grid(args.grid)
        points = study.expand_grid(grid) if grid else {"default": {}}
        configs = [load_config(args.config, {**base, **point}) for point in points.values()]
        for config in configs:  # every point's config is valid, and its data is there (generated once), before any run
            prepare_dataset(config)
    out = Path(args.out)
    try:
        with _clean_errors("sweep", ValueError):  # e.g. sbatch refusing the cluster description
            frame = study.sweep({name: {"overrides": {**base, **point}} for name, point in points.items()}, seeds=seeds,
                                notebook=study.train_run, output_root=out, base_parameters={"preset": args.config},
                                workers=args.workers, executor=args.executor, cluster=cluster, wait=not args.no_wait,
                                retry_failed=True if args.retry_failed else None, print_fn=print)
        failure = None
    except RuntimeError as error:  # every run failed: still write the table of what happened
        frame, failure = study.collect(out), error
    table = study.runs_table(frame, list(grid))
    atomic_write(out / "runs.csv", table.to_csv(index=False))
    if not args.no_wait:
        print(study.summary_table(frame).to_string(index=False))
    print(f"runs: {out / 'runs.csv'}")
    if failure is not None:
        print(f"reidlab sweep: {failure}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the SynthReID benchmark")
    p.add_argument("root", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a SynthReID of other seed/knobs at root")
    p.add_argument("--regime", action="append", default=[], metavar="NAME",
                   help="start from a named regime's knobs (person, vehicle, gs, hm, sr, pretrain; repeatable or "
                        "comma-separated, merged in order; key=value knobs override them)")
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

    p = sub.add_parser("sweep", help="train a grid of configurations x seeds, locally or as a SLURM job array",
                       description="reidlab sweep -c PRESET --grid loss.metric=adasp,sp-h --seeds 0 1 2 --out DIR "
                                   "[--executor slurm --cluster cluster.yaml] [key=value ...]")
    p.add_argument("-c", "--config", default="synth_cpu", help="preset name in reidlab/configs or a .yaml path")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its comma-separated values; repeat for a cartesian product")
    p.add_argument("--seeds", nargs="+", default=["0"], help="seeds of every grid point (default: 0)")
    p.add_argument("--out", required=True, help="sweep folder: one run per point and seed, runs.csv")
    p.add_argument("--executor", choices=("local", "slurm"), default="local")
    p.add_argument("--cluster", default=None, help="cluster YAML for --executor slurm (see configs/cluster.yaml)")
    p.add_argument("--workers", type=int, default=1, help="parallel runs with --executor local")
    p.add_argument("--no-wait", action="store_true", help="return once submitted; run the command again to follow")
    p.add_argument("--retry-failed", action="store_true", help="run the runs recorded as failed again")
    p.add_argument("overrides", nargs="*", default=[], help="key=value overrides for every run")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="run the default study on SynthReID and render reports/index.html")
    p.add_argument("--output", default="reports", help="report folder (default: reports)")
    p.add_argument("--data-dir", default=None, help="where the study's SynthReID copies are generated (default: data/study)")
    p.add_argument("--profile", default="quick",
                   help="study profile: quick (default, ~15 min on 2 CPU cores), full (~2 h), gpu, paper (real "
                        "benchmarks, with --datasets), or a YAML path")
    p.add_argument("--seeds", default=None, help="comma-separated ablation seeds (default: the profile's)")
    p.add_argument("--workers", type=int, default=None, help="parallel ablation runs (default: the profile's)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel (default: 'reidlab' or this interpreter's python3)")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="where the ablation runs train: here, or as a SLURM job array (with --cluster)")
    p.add_argument("--cluster", default=None, help="cluster YAML for --executor slurm (see configs/cluster.yaml)")
    p.add_argument("--datasets", default=None, metavar="FILE",
                   help="the papers' studies on the real benchmarks (with --profile paper): a YAML of dataset "
                        "folders and weight files")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a paper-profile field for this run, e.g. --set seeds=[0,1] --set overrides.epochs=1")
    p.add_argument("--dry-run", action="store_true",
                   help="paper study: calibrate, print the runs and the GPU-hour estimate, submit nothing")
    p.add_argument("notebooks", nargs="*", help="subset of: ablation train positive_pairs retrieval class_similarity")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. A full disk, in any command, is one line on stderr and exit status 3 (bad input is 2): the
    write that failed left the previous file intact, so the remedy is to free space and run again. A signal that
    stopped training (SIGTERM, SIGINT) is one line and the shell's status for it, 128 + the signal's number."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiskFullError as error:
        print(f"reidlab {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(3) from None
    except Exception as error:
        from reidlab.engine import TrainingInterrupted

        if not isinstance(error, TrainingInterrupted):
            raise
        print(f"reidlab {args.command}: {error}", file=sys.stderr)
        raise SystemExit(128 + signal.Signals[error.signal_name].value) from None


if __name__ == "__main__":
    sys.exit(main())

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


def _cmd_export(args: argparse.Namespace) -> int:
    from reidlab.data import CorruptImageError
    from reidlab.engine import CheckpointError, ConfigError
    from reidlab.export import DEFAULT_OPSET, PARITY_RTOL, ExportError, export_onnx

    with _clean_errors("export", ExportError, ConfigError, FileNotFoundError, CheckpointError, CorruptImageError):
        opset = DEFAULT_OPSET if args.opset is None else args.opset
        result = export_onnx(args.checkpoint, args.out, opset=opset, batch=args.batch)
    inputs = ", ".join(f"{name} [{', '.join(map(str, shape))}]" for name, shape in result.inputs.items())
    print(f"wrote {result.path}: {result.model_name}, ONNX opset {result.opset}, traced in {result.seconds:.1f} s; "
          f"inputs {inputs} -> features [batch, {result.feature_dim}], before L2 normalisation")
    print(f"onnxruntime vs torch on {result.images} query images: max |difference| {result.max_abs_diff:.2g}, "
          f"tolerance {result.tolerance:.2g} ({PARITY_RTOL:g} x the largest |feature|, {result.feature_scale:.3g})")
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


def _cmd_embed(args: argparse.Namespace) -> int:
    from reidlab.search import Gallery

    with _clean_errors("embed", FileNotFoundError, ValueError):
        gallery = Gallery.from_folder(args.checkpoint, args.folder, device=args.device, flip=args.flip,
                                      batch_size=args.batch_size, workers=args.workers)
        path = gallery.save(args.out)
    images = gallery.images
    print(f"{len(images)} images embedded ({images.features.shape[1]}-d features of {images.model_name}, checkpoint "
          f"sha256 {images.sha256[:12]}{', flip-averaged' if args.flip else ''}): {path}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reidlab.search import EmbeddedImages, Gallery, read_threshold, results_page

    with _clean_errors("search", FileNotFoundError, ValueError):
        if args.far is not None and args.threshold_from is None:
            raise ValueError("--far picks a threshold of --threshold-from CALIBRATION.json")
        if args.out is not None and Path(args.out).suffix not in (".csv", ".json"):
            raise ValueError(f"--out {args.out}: write a .csv or .json file")
        gallery = Gallery.load(args.features)
        threshold = args.threshold
        if args.threshold_from is not None:
            entry = read_threshold(args.threshold_from, args.far, gallery.images)
            threshold = entry["threshold"]
            print(f"threshold: distance < {threshold:.4f}, FAR {entry['far']:g} (TAR {entry['tar']:.1%} on the "
                  "calibration split)")
        if args.query_features is not None:
            queries = EmbeddedImages.load(args.query_features)
        else:
            queries = gallery.embed(args.query, checkpoint=args.checkpoint, device=args.device,
                                    batch_size=args.batch_size, workers=args.workers)
        results = gallery.search(queries, args.top_k, threshold, index=args.index)
        if args.index != "flat":
            print(gallery.index_note(args.index))
        if args.html is not None:
            atomic_write(args.html, results_page(results, gallery.images, queries))
    if args.out is None:
        for name, matches in results.groupby("query", sort=False):
            print(name)
            for match in matches.itertuples():
                print(f"  {match.rank:>4}  {match.distance:.4f}  {match.path}")
    elif Path(args.out).suffix == ".csv":
        atomic_write(args.out, results.to_csv(index=False))
    else:
        atomic_write(args.out, results.to_json(orient="records", indent=1))
    written = [path for path in (args.out, args.html) if path is not None]
    print(f"{len(results)} matches of {results['query'].nunique()} of {len(queries)} queries (distance: 1 - cos)"
          + (f": {', '.join(written)}" if written else ""))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from reidlab.search import FARS, HISTOGRAM_FILE, calibrate, labelled_dataset, load_embedder

    with _clean_errors("calibrate", FileNotFoundError, ValueError):
        embedder = load_embedder(args.checkpoint, args.device)
        dataset = labelled_dataset(args.data, args.root)
        calibration = calibrate(embedder, dataset, args.split, args.far or FARS, args.flip, args.batch_size,
                                args.workers)
        path = calibration.save(args.out)
    record = calibration.record
    for image, reason in record["skipped"]:
        print(f"skipped unreadable {image}: {reason}")
    print(f"{dataset.name} {args.split}: {record['pairs']['genuine']:,} genuine and {record['pairs']['impostor']:,} "
          f"impostor pairs of {record['images']} images")
    for entry in record["thresholds"]:
        few = entry["far"] * record["pairs"]["impostor"] < 1
        print(f"  FAR {entry['far']:g}: distance < {entry['threshold']:.4f} accepts {entry['tar']:.1%} of genuine "
              f"pairs ({entry['far_achieved']:.2g} of impostor pairs)"
              + ("; too few impostor pairs to measure this rate: the threshold is the nearest one's distance" if few
                 else ""))
    print(f"written: {path}, {path.with_name(HISTOGRAM_FILE)}")
    return 0


def _embedding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding the images (default: 2)")


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

    p = sub.add_parser("export", help="export a checkpoint to ONNX, checked by onnxruntime on the run's query images",
                       description="reidlab export CHECKPOINT --format onnx [--out MODEL.onnx]: the model's inference "
                                   "function (features before L2 normalisation; camids as a second input where the "
                                   "model has a camera embedding) with a dynamic batch axis and the test transform in "
                                   "its metadata; onnxruntime must match torch on the run's query images within the "
                                   "printed tolerance. reidlab embed accepts the .onnx file.")
    p.add_argument("checkpoint", help="a training checkpoint, OUTPUT_DIR/checkpoints/NAME.pt")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", default=None, help="the model file (default: the checkpoint's path with .onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 14 to 20 (default: 17)")
    p.add_argument("--batch", type=int, default=16, help="query images of the parity check (default: 16)")
    p.set_defaults(func=_cmd_export)

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

    p = sub.add_parser("embed", help="embed every image under a folder with a trained checkpoint",
                       description="reidlab embed CHECKPOINT FOLDER --out FEATURES: the features of every image under "
                                   "FOLDER (recursive; jpg, jpeg, png, bmp, webp; any names, no labels) in one .npz "
                                   "file; unreadable images are listed and skipped")
    p.add_argument("checkpoint", help="a training checkpoint (RUN/checkpoints/last.pt) or a run folder (its last.pt)")
    p.add_argument("folder", help="a folder of images, or one image")
    p.add_argument("--out", required=True, help="the features file to write (.npz)")
    p.add_argument("--flip", action="store_true", help="average each image's features with its mirror's")
    _embedding_arguments(p)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("search", help="rank the images of a features file for query images",
                       description="reidlab search FEATURES (--query IMAGE|FOLDER | --query-features FILE) --top-k K: "
                                   "each query's nearest images by 1 - cos of the features (reidlab's evaluation "
                                   "distance), printed or written")
    p.add_argument("features", help="a features file written by reidlab embed: the gallery")
    queries = p.add_mutually_exclusive_group(required=True)
    queries.add_argument("--query", help="a query image or folder, embedded by the gallery's checkpoint")
    queries.add_argument("--query-features", help="queries already embedded (reidlab embed) by the same checkpoint")
    p.add_argument("--top-k", type=int, default=10, help="matches per query (default: 10)")
    p.add_argument("--index", choices=("flat", "ivf", "ivfpq", "hnsw"), default="flat",
                   help="flat: exact (default); the approximate kinds are tuned to recall@1 0.99 of exact search on "
                        "held-out gallery images, and saved next to FEATURES for the next search")
    thresholds = p.add_mutually_exclusive_group()
    thresholds.add_argument("--threshold", type=float, help="keep only matches with distance below this")
    thresholds.add_argument("--threshold-from", metavar="CALIBRATION.json",
                            help="the threshold that reidlab calibrate measured for this checkpoint (with --far)")
    p.add_argument("--far", type=float, help="which false-accept rate of --threshold-from (needed when it has several)")
    p.add_argument("--out", help="write the matches to a .csv or .json file (query, rank, path, distance)")
    p.add_argument("--html", metavar="OUT.html", help="write a page of image tiles: each query and its matches")
    p.add_argument("--checkpoint", help="the gallery's checkpoint where it is now, if it moved (same sha256)")
    _embedding_arguments(p)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("calibrate", help="distance thresholds at false-accept rates, on a labelled split",
                       description="reidlab calibrate CHECKPOINT --data NAME_OR_ROOT --out DIR: embeds a labelled "
                                   "split, writes DIR/calibration.json (the distance threshold and true-accept rate "
                                   "at each false-accept rate; reidlab search --threshold-from reads it) and "
                                   "DIR/distances.png (genuine and impostor distances)")
    p.add_argument("checkpoint", help="a training checkpoint (RUN/checkpoints/last.pt) or a run folder (its last.pt)")
    p.add_argument("--data", required=True, help="a registered dataset's name (with --root) or a SynthReID folder")
    p.add_argument("--root", help="the folder of the dataset --data names")
    p.add_argument("--split", choices=("test", "query"), default="test",
                   help="test: query x gallery pairs (default); query: the pairs of query images")
    p.add_argument("--far", type=float, nargs="+", help="false-accept rates (default: 1e-2 1e-3 1e-4)")
    p.add_argument("--flip", action="store_true", help="flip-averaged features (for galleries embedded with --flip)")
    p.add_argument("--out", required=True, help="output folder")
    _embedding_arguments(p)
    p.set_defaults(func=_cmd_calibrate)

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

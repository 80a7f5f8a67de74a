"""Your own images on this machine: ``reidlab embed``, ``search`` (flat and one approximate kind), ``calibrate`` and
``export`` (then ``embed`` through the ONNX file) timed as a user runs them (``python -m reidlab ...``, wall-clock, interpreter start included), as JSON.

The images are a SynthReID test split at 128 x 64 (``reidlab.data.synth``), all ``--images`` of them hard-linked
into one folder without labels; ``--queries`` of them are the queries. The model is the CPU preset's
(``synth_cpu``: ResNet-18-IBN-a at 64 x 32), trained for one step on a small SynthReID only to have a checkpoint:
the timings do not depend on the weights (the search's recall and the thresholds do, so they are not reported).
``calibrate`` embeds that split's query and gallery images (a few more than ``--images``) and measures the
thresholds over all their query x gallery pairs.
One JSON object on stdout, progress on stderr. Usage: ``python benchmarks/own_images.py [--images 10000]
[--kind hnsw] [--workers 2] [--work-dir DIR]``; the data generation (about 60 images/s on 2 cores) is set-up, timed
apart (``setup_s``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reidlab.data import build_dataset, synth
from reidlab.engine import load_config, train


def timed(*argv: str) -> float:
    """Wall-clock seconds of ``python ARGV`` (its output to stderr)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=sys.stderr)
    return round(time.perf_counter() - start, 2)


def timed_command(*args: str) -> float:
    """Wall-clock seconds of ``python -m reidlab ARGS``."""
    return timed("-m", "reidlab", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images in the embedded folder")
    parser.add_argument("--queries", type=int, default=100, help="query images of each search")
    parser.add_argument("--kind", default="hnsw", choices=("ivf", "ivfpq", "hnsw"), help="the approximate index")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of embed and calibrate")
    parser.add_argument("--work-dir", default=None, help="where data, run and outputs go (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="reidlab-own-images-"))

    start = time.perf_counter()
    small = synth.generate(work / "train_synth", seed=0, num_train_ids=16, num_test_ids=8, num_distractors=0,
                           num_junk=0)
    run = work / "run"
    if not (run / "checkpoints" / "last.pt").is_file():
        train(load_config("synth_cpu", [f"data.root={small}", "data.generate=false", f"output_dir={run}", "epochs=1",
                                        "max_iters_per_epoch=1", "sampler.p=4", "progress=false"]), print_fn=None)
    # 10.8 test images per identity on average (query and gallery): a few more than --images
    big = synth.generate(work / "synthreid", seed=1, num_train_ids=2, num_test_ids=math.ceil(args.images / 10),
                         num_distractors=0, num_junk=0)
    dataset = build_dataset("synthreid", big)
    records = (dataset.query + dataset.gallery)[:args.images]
    if len(records) < args.images:
        raise SystemExit(f"SynthReID at {big} has {len(records)} test images, fewer than --images {args.images}")
    folder, queries = work / "images", work / "queries"
    for target, chosen in ((folder, records), (queries, records[::max(1, len(records) // args.queries)][:args.queries])):
        target.mkdir(exist_ok=True)
        for i, record in enumerate(chosen):
            link = target / f"{i:06d}.jpg"
            if not link.exists():
                os.link(record.path, link)
    setup_s = round(time.perf_counter() - start, 1)

    checkpoint, features = run / "checkpoints" / "last.pt", work / "gallery.npz"
    for index in work.glob("gallery.npz.*.index.npz"):  # the approximate index is built (and tuned) by the search
        index.unlink()
    workers = ["--workers", str(args.workers)]
    result = {"images": args.images, "queries": args.queries, "model": "resnet18_ibn_a (synth_cpu) at 64 x 32",
              "image_size": [128, 64], "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "workers": args.workers, "setup_s": setup_s,
              "import_s": timed("-c", "import reidlab.search")}  # the interpreter and imports: part of every command
    result["embed_s"] = timed_command("embed", str(checkpoint), str(folder), "--out", str(features), *workers)
    result["embed_images_per_s_after_import"] = round(args.images / (result["embed_s"] - result["import_s"]), 1)
    search = ["search", str(features), "--query", str(queries), "--top-k", "10", "--out", str(work / "results.csv"),
              *workers]
    result["search_flat_s"] = timed_command(*search)
    result[f"search_{args.kind}_build_s"] = timed_command(*search, "--index", args.kind)
    result[f"search_{args.kind}_saved_s"] = timed_command(*search, "--index", args.kind)
    result["calibrate_images"] = len(dataset.query) + len(dataset.gallery)
    result["calibrate_pairs"] = len(dataset.query) * len(dataset.gallery)
    result["calibrate_s"] = timed_command("calibrate", str(checkpoint), "--data", str(big), "--out",
                                          str(work / "calibration"), *workers)
    onnx = work / "model.onnx"  # the export and its parity check on a batch of the run's query images
    result["export_onnx_s"] = timed_command("export", str(checkpoint), "--format", "onnx", "--out", str(onnx))
    result["embed_onnx_s"] = timed_command("embed", str(onnx), str(folder), "--out", str(work / "gallery_onnx.npz"),
                                           *workers)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Data pipeline throughput: JPEG decode + train transforms through a DataLoader fed by PKSampler.

Prints one JSON object: images per second for the standard (BoT) augmentations and for the full HBReID set.
Without --root a default SynthReID is generated into a temporary folder first.

    python benchmarks/data_pipeline.py [--root DIR] [--batches 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from reidlab.data import ReIDImageDataset, build_dataset, build_transforms, synth
from reidlab.data.samplers import PKSampler

AUGMENTATIONS = {
    "standard": {},
    "hbreid": {"gray_patch_p": 0.5, "color_jitter_p": 0.5, "blur_p": 0.5, "gamma_p": 0.5},
}


def images_per_second(records, transform, args: argparse.Namespace) -> float:
    sampler = PKSampler([r.pid for r in records], args.p, args.k, seed=0)
    loader = DataLoader(
        ReIDImageDataset(records, transform), batch_sampler=sampler, num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )
    timed, epoch, start = 0, 0, None
    while timed < args.batches:
        sampler.set_epoch(epoch)
        for _ in loader:
            if start is None:  # the first batch absorbs worker start-up; the clock starts when it arrives
                start = time.perf_counter()
                continue
            timed += 1
            if timed == args.batches:
                break
        epoch += 1
    return args.batches * args.p * args.k / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="SynthReID folder (default: generate one into a temporary folder)")
    parser.add_argument("--dataset", default="synthreid", help="registered dataset name for --root")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        generate_seconds = None
        root = args.root
        if root is None:
            start = time.perf_counter()
            root = synth.generate(os.path.join(tmp, "synthreid"), seed=0)
            generate_seconds = round(time.perf_counter() - start, 2)
        dataset = build_dataset(args.dataset, root)
        result = {
            "benchmark": "data_pipeline",
            "dataset": args.dataset,
            "train_images": len(dataset.train),
            "generated_seconds": generate_seconds,
            "batch": f"{args.p}x{args.k}",
            "batches": args.batches,
            "workers": args.workers,
            "size": args.size,
            "torch_threads": torch.get_num_threads(),
        }
        for name, augmentation in AUGMENTATIONS.items():
            transform = build_transforms(True, size=args.size, **augmentation)
            result[f"images_per_second_{name}"] = round(images_per_second(dataset.train, transform, args), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

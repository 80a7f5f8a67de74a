"""Training-step overhead of the engine: prints one JSON object.

Measures, for a preset (default `synth_cpu`, on CPU), the wall time of the trainer's full step as `fit()` runs
it (waiting for the DataLoader's next batch, host-to-device copy, forward, every loss term, non-finite check,
backward, optimizer and lr step), and the time of the bare model forward + backward on the same batch already
in memory (a plain sum of the model outputs as the loss). Their ratio is the data + loss + optimizer overhead
(target: below 1.15). The two are measured alternately, step by step, and their medians compared; then again
on one batch held in memory (`overhead_ratio_preloaded`: loss + optimizer + bookkeeping without the loader).

Usage: python benchmarks/train_step.py [--preset synth_cpu] [--steps 10] [key=value overrides ...]
The SynthReID of the preset is generated into its data.root first if needed. Timings on a shared machine are
noisy; the load average before and after is part of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch


def model_only_step(model, batch) -> None:
    """The bare model work of a step: forward + backward of a plain sum of the outputs, nothing else."""
    model.zero_grad(set_to_none=True)
    camids = batch["camid"] if model.uses_camids else None
    out = model(batch["image"], camids=camids, labels=batch["pid"])
    torch.cat([t.flatten() for t in (*out["features"], *out["logits"])]).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synth_cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()

    from reidlab.engine import load_config
    from reidlab.engine.trainer import Trainer

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        config = load_config(args.preset, [f"output_dir={out}", "progress=false", "device=cpu", *args.overrides])
        trainer = Trainer(config)
        if len(trainer.sampler) < args.steps + args.warmup:
            raise SystemExit(f"an epoch has only {len(trainer.sampler)} batches; lower --steps")
        trainer.sampler.set_epoch(0)
        trainer.train_model.train()
        batches = iter(trainer.train_loader)
        for _ in range(args.warmup):
            batch = next(batches)
            trainer.train_step(batch)
            model_only_step(trainer.model, batch)
        # Interleaved, so that both timings see the same (shared-machine) load; medians of per-step times.
        step_times, wait_times, model_times = [], [], []
        for _ in range(args.steps):
            start = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - start
            trainer.train_step(batch)
            step_times.append(time.perf_counter() - start)
            wait_times.append(waited)
            start = time.perf_counter()
            model_only_step(trainer.model, batch)
            model_times.append(time.perf_counter() - start)
        del batches
        step_seconds, model_seconds = statistics.median(step_times), statistics.median(model_times)
        # The same on batches already in memory (no DataLoader workers decoding beside the model): what the
        # loss, optimizer and bookkeeping alone add. On a 2-core machine the difference is the CPU the
        # workers' JPEG decoding and augmentation take from the model.
        preloaded_step, preloaded_model = [], []
        for _ in range(args.steps):
            start = time.perf_counter()
            trainer.train_step(batch)
            preloaded_step.append(time.perf_counter() - start)
            start = time.perf_counter()
            model_only_step(trainer.model, batch)
            preloaded_model.append(time.perf_counter() - start)
    batch_size = batch["image"].shape[0]
    print(json.dumps({
        "preset": args.preset,
        "model": config.model.name,
        "loss": {"ce_weight": config.loss.ce_weight, "metric": config.loss.metric, "metric_weight": config.loss.metric_weight},
        "image_size": config.data.size,
        "batch": batch_size,
        "num_workers": config.data.num_workers,
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "train_step_s": round(step_seconds, 4),
        "data_wait_s_per_step": round(statistics.median(wait_times), 4),
        "model_forward_backward_s": round(model_seconds, 4),
        "overhead_ratio": round(step_seconds / model_seconds, 3),
        "preloaded_train_step_s": round(statistics.median(preloaded_step), 4),
        "preloaded_model_forward_backward_s": round(statistics.median(preloaded_model), 4),
        "overhead_ratio_preloaded": round(statistics.median(preloaded_step) / statistics.median(preloaded_model), 3),
        "target_ratio": 1.15,
        "train_img_per_s": round(batch_size / step_seconds, 1),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()

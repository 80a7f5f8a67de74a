"""Model training throughput: forward + backward images per second; prints one JSON object.

- CPU: the laptop default (``resnet18_ibn_a`` BNNeck) and the other small variants at 128 x 64, batch 32,
  with 1 thread and with all threads.
- CUDA (when present): ``mgn_resnet50_ibn_a`` at 384 x 128 and ``vit_base_transreid`` (stride 12, SIE, JPM)
  at 384 x 128, batch 64, bf16/fp16 autocast and channels_last, plus fp32 for comparison.

Usage: python benchmarks/models.py [--cpu-models resnet18_ibn_a ...] [--steps 5] [--no-cuda]
Timings on a shared machine are noisy; the load average before and after is part of the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

from reidlab.models import build_model

CPU_MODELS = ("resnet18_ibn_a", "resnet18", "mgn_resnet18_ibn_a", "vit_tiny_transreid")
GPU_SETTINGS = (
    ("mgn_resnet50_ibn_a", (384, 128), {}),
    ("vit_base_transreid", (384, 128), {"num_cameras": 15, "jpm": True}),
)
NUM_CLASSES = 751


def train_step(model, images, labels, camids) -> None:
    out = model(images, camids=camids if model.uses_camids else None)
    loss = sum(F.cross_entropy(logits.float(), labels) for logits in out["logits"])
    loss = loss + sum(feature.float().square().mean() for feature in out["features"])
    loss.backward()


def images_per_second(name, size, batch, steps, device, *, amp_dtype=None, channels_last=False, **kwargs) -> float:
    torch.manual_seed(0)
    if name.startswith("vit"):
        kwargs = {"img_size": size, **kwargs}
    model = build_model(name, NUM_CLASSES, **kwargs).to(device).train()
    images = torch.randn(batch, 3, *size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    camids = torch.randint(0, max(getattr(model, "num_cameras", 1), 1), (batch,), device=device)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())

    def run(count: int) -> None:
        for _ in range(count):
            model.zero_grad(set_to_none=True)
            with autocast:
                train_step(model, images, labels, camids)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(2)  # warm-up: allocator, cudnn autotuning
    start = time.perf_counter()
    run(steps)
    return round(batch * steps / (time.perf_counter() - start), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-models", nargs="+", default=list(CPU_MODELS))
    parser.add_argument("--cpu-size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"))
    parser.add_argument("--cpu-batch", type=int, default=32)
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU settings even where CUDA is present")
    args = parser.parse_args()

    result: dict[str, object] = {
        "benchmark": "models_forward_backward",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "cpu": {"input": args.cpu_size, "batch": args.cpu_batch, "images_per_second": {}},
    }
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    for name in args.cpu_models:
        row = {}
        for num_threads in sorted({1, threads}):
            torch.set_num_threads(num_threads)
            row[f"threads_{num_threads}"] = images_per_second(name, tuple(args.cpu_size), args.cpu_batch,
                                                               args.steps, cpu)
        result["cpu"]["images_per_second"][name] = row
    torch.set_num_threads(threads)

    if torch.cuda.is_available() and not args.no_cuda:
        cuda = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        gpu: dict[str, object] = {"device": torch.cuda.get_device_name(), "batch": args.gpu_batch,
                                  "amp_dtype": str(amp_dtype).removeprefix("torch."), "images_per_second": {}}
        for name, size, kwargs in GPU_SETTINGS:
            torch.cuda.reset_peak_memory_stats()
            amp = images_per_second(name, size, args.gpu_batch, args.steps, cuda, amp_dtype=amp_dtype,
                                    channels_last=True, **kwargs)
            gpu["images_per_second"][name] = {
                "input": list(size),
                "amp_channels_last": amp,
                "amp_peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "fp32": images_per_second(name, size, args.gpu_batch, args.steps, cuda, **kwargs),
            }
        result["cuda"] = gpu
    else:
        result["cuda"] = "skipped: no CUDA device" if not args.no_cuda else "skipped: --no-cuda"
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Forward + backward time of the metric losses on CPU; prints one JSON object.

For each batch size B x 2048 and images per identity K, with 1 thread and with all threads:
- every loss (sp-h, sp-lh, adasp, triplet, circle), median milliseconds of loss(x, y).backward();
- the same AdaSP math written the straightforward way (a Python loop over identities and identity pairs),
  and the ratio loop / vectorized (skipped above --loop-max-identities identities: it needs P^2 iterations);
- one fp32 matmul pass x @ x.T (the issue's target reference) and a matmul forward+backward.

Usage: python benchmarks/losses.py [--sizes 64 256 1024] [--images-per-id 4 8] [--min-seconds 0.3]
Timings on a shared machine are noisy; the load average before and after is part of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from reidlab.losses import CircleLoss, SparsePairwiseLoss, TripletLoss

DIM = 2048
TEMPERATURE = 0.04


def loop_adasp(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """AdaSP written directly from the formulas: one Python iteration per identity and per identity pair."""
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.T
    ids = torch.unique(labels).tolist()
    rows = {a: (labels == a).nonzero().squeeze(1) for a in ids}
    losses = []
    for a in ids:
        own = similarity[rows[a]][:, rows[a]] / temperature
        p_h = -torch.logsumexp(-own.flatten(), dim=0)
        p_lh = torch.logsumexp(-torch.logsumexp(-own, dim=1), dim=0)
        h, l = (temperature * p_h).detach(), (temperature * p_lh).detach()
        w = 2 * h * l / (h + l) if h >= 0 else torch.zeros_like(h)
        positive = w * p_h + (1 - w) * p_lh
        negatives = [
            torch.logsumexp((similarity[rows[a]][:, rows[b]] / temperature).flatten(), dim=0) for b in ids if b != a
        ]
        losses.append(torch.logsumexp(torch.stack([torch.zeros_like(positive)] + [n - positive for n in negatives]), dim=0))
    return torch.stack(losses).mean()


def median_ms(step, min_seconds: float, min_reps: int = 3, max_reps: int = 200, warmup: bool = True) -> float:
    if warmup:
        step()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_seconds and len(times) < max_reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def forward_backward(loss, x, y):
    def step():
        x.grad = None
        loss(x, y).backward()

    return step


def run(sizes, images_per_id, thread_counts, min_seconds, loop_max_identities):
    losses = {
        "sp-h": SparsePairwiseLoss("sp-h", TEMPERATURE),
        "sp-lh": SparsePairwiseLoss("sp-lh", TEMPERATURE),
        "adasp": SparsePairwiseLoss("adasp", TEMPERATURE),
        "triplet": TripletLoss(0.3),
        "circle": CircleLoss(),
    }
    results = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in sizes:
            for k in images_per_id:
                generator = torch.Generator().manual_seed(batch + k)
                x = torch.randn(batch, DIM, generator=generator).requires_grad_(True)
                y = torch.randperm(batch, generator=generator) % (batch // k)  # shuffled, K images per identity
                row = {"batch": batch, "dim": DIM, "images_per_id": k, "identities": batch // k, "threads": threads}
                with torch.no_grad():
                    row["matmul_ms"] = median_ms(lambda: x @ x.T, min_seconds)
                row["matmul_fwd_bwd_ms"] = median_ms(lambda: (x @ x.T).sum().backward(), min_seconds)
                row["loss_fwd_bwd_ms"] = {
                    name: median_ms(forward_backward(loss, x, y), min_seconds) for name, loss in losses.items()
                }
                adasp = row["loss_fwd_bwd_ms"]["adasp"]
                if batch // k <= loop_max_identities:
                    torch.testing.assert_close(loop_adasp(x, y), losses["adasp"](x, y), rtol=1e-4, atol=1e-5)
                    loop_ms = median_ms(forward_backward(loop_adasp, x, y), min_seconds, min_reps=1, warmup=False)
                    row["loop_adasp_fwd_bwd_ms"] = loop_ms
                    row["loop_over_vectorized"] = loop_ms / adasp
                row["adasp_over_matmul"] = adasp / row["matmul_ms"]
                row["adasp_over_matmul_fwd_bwd"] = adasp / row["matmul_fwd_bwd_ms"]
                results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--images-per-id", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--min-seconds", type=float, default=0.3, help="time each measurement at least this long")
    parser.add_argument(
        "--loop-max-identities", type=int, default=128, help="skip the O(P^2)-iteration loop baseline above this P"
    )
    args = parser.parse_args()
    all_threads = torch.get_num_threads()
    thread_counts = sorted({1, all_threads})
    report = {
        "benchmark": "losses",
        "device": "cpu",
        "torch": torch.__version__,
        "platform": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "temperature": TEMPERATURE,
        "results": run(args.sizes, args.images_per_id, thread_counts, args.min_seconds, args.loop_max_identities),
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

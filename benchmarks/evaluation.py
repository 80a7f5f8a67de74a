"""Evaluation benchmarks: time and peak memory, printed as one JSON object.

Parts (``--parts a,b,c``; each runs in its own subprocess so its peak RSS is its own):
  a  MSMT17-scale evaluation (11,659 x 82,161, 2048-d, 3,060 ids, 15 cameras): ``evaluate`` (distances
     included) next to the bare matrix product of the same shapes (same query chunks, one reused output
     buffer) and a single full ``q @ g.T`` (separate subprocess: it needs the 3.8 GB output).
     Targets: <= 1.5x the bare product, < 3 GB.
  b  re-ranking at Market-1501 scale (3,368 + 15,913, 2048-d): ``re_ranking`` and
     ``evaluate(rerank=True)``.  Targets: <= 10 s, < 3 GB (issue 15).
  c  re-ranking at MSMT17 scale (93,820 images): ``re_ranking`` (dense 3.8 GB output) then
     ``evaluate_rank`` on it.  Targets: <= 200 s (issue 15), < 12 GB.

Features are random with identity structure: L2-normalized ``center[pid] + noise * N(0, I)``.
Peak memory is the child's ``ru_maxrss`` (it includes the features themselves: ``rss_before_gb``).
``--baseline FILE``: a ``rerank.py`` of another commit (``git show REV:reidlab/evaluation/rerank.py > FILE``);
parts b and c then also time its ``re_ranking`` on the same features in a process of its own
(``b_baseline``, ``c_baseline``) and report whether its output equals today's bit for bit.
Usage: ``python benchmarks/evaluation.py --parts a,b [--noise 3.0] [--baseline FILE] [--out file.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = {
    "msmt17": dict(num_query=11659, num_gallery=82161, num_ids=3060, num_cams=15),
    "market1501": dict(num_query=3368, num_gallery=15913, num_ids=750, num_cams=6),
}
DIM = 2048


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, *args, **kwargs):
    """(result, wall seconds, process CPU seconds): CPU time is less sensitive to other jobs' load."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - wall, 2), round(cpu_seconds() - cpu, 2)


def make_problem(num_query, num_gallery, num_ids, num_cams, noise, seed=0):
    """Normalized features with identity structure, pids, camids (every query id appears in the gallery)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    g_pids = np.concatenate([np.arange(num_ids), rng.integers(0, num_ids, num_gallery - num_ids)])
    q_pids = rng.integers(0, num_ids, num_query)
    q_cams, g_cams = rng.integers(0, num_cams, num_query), rng.integers(0, num_cams, num_gallery)
    centers = torch.randn(num_ids, DIM, generator=gen)

    def feats(pids):
        out = torch.empty(len(pids), DIM)
        for start in range(0, len(pids), 8192):
            rows = slice(start, start + 8192)
            noisy = centers[torch.from_numpy(pids[rows])] + noise * torch.randn(len(pids[rows]), DIM, generator=gen)
            out[rows] = F.normalize(noisy, dim=1)
        return out

    return feats(q_pids), feats(g_pids), q_pids, g_pids, q_cams, g_cams


def metrics_summary(result: dict) -> dict:
    return {"mAP": round(result["mAP"], 4), "rank1": round(float(result["cmc"][0]), 4),
            "mINP": round(result["mINP"], 4), "num_valid_queries": result["num_valid_queries"]}


def part_a(noise: float) -> dict:
    from reidlab.evaluation import evaluate
    from reidlab.evaluation.search import _default_chunk

    q, g, *labels = make_problem(**SHAPES["msmt17"], noise=noise)
    out = {"shape": [len(q), len(g), DIM], "noise": noise, "threads": torch.get_num_threads(),
           "rss_before_gb": round(rss_gb(), 3)}
    chunk = _default_chunk(len(g), q.device)
    neg_q, g_t = -q, g.T
    buffer = torch.empty(chunk, len(g))

    def bare_product():
        for row in range(0, len(q), chunk):
            rows = slice(row, min(row + chunk, len(q)))
            torch.mm(neg_q[rows], g_t, out=buffer[: rows.stop - rows.start])

    _, out["bare_product_chunked_s"], out["bare_product_chunked_cpu_s"] = timed(bare_product)
    buffer = None  # frees it before the next measurement
    result, out["evaluate_s"], out["evaluate_cpu_s"] = timed(evaluate, q, g, *labels, metric="cosine")
    out["ratio_to_bare_product"] = round(out["evaluate_s"] / out["bare_product_chunked_s"], 3)
    out["cpu_ratio_to_bare_product"] = round(out["evaluate_cpu_s"] / out["bare_product_chunked_cpu_s"], 3)
    out["peak_rss_gb"] = round(peak_rss_gb(), 3)
    out["chunk_rows"] = chunk
    out["metrics"] = metrics_summary(result)
    return out


def part_a_full_product(noise: float) -> dict:
    q, g, *_ = make_problem(**SHAPES["msmt17"], noise=noise)
    product, wall, cpu = timed(torch.mm, q, g.T)
    del product
    return {"bare_product_full_s": wall, "bare_product_full_cpu_s": cpu, "peak_rss_gb": round(peak_rss_gb(), 3)}


def rerank_baseline(scale: str, noise: float, baseline: str, compare_with: str) -> dict:
    """The baseline module's re_ranking on the same features; equal to today's output (saved by the part)?"""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rerank_baseline", baseline)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    q, g, *_ = make_problem(**SHAPES[scale], noise=noise)
    out = {"baseline": baseline, "rss_before_gb": round(rss_gb(), 3)}
    dist, out["re_ranking_s"], out["re_ranking_cpu_s"] = timed(module.re_ranking, q, g, k1=20, k2=6, lambda_value=0.3)
    out["re_ranking_peak_rss_gb"] = round(peak_rss_gb(), 3)
    today = np.load(compare_with, mmap_mode="r")
    rows = range(0, len(dist), 1024)
    out["identical_to_today"] = all(np.array_equal(dist[r:r + 1024], today[r:r + 1024]) for r in rows)
    out["max_abs_difference"] = float(max(np.abs(dist[r:r + 1024] - today[r:r + 1024]).max() for r in rows))
    return out


def part_b(noise: float, save: str | None = None) -> dict:
    from reidlab.evaluation import evaluate, evaluate_rank, re_ranking

    q, g, *labels = make_problem(**SHAPES["market1501"], noise=noise)
    out = {"shape": [len(q), len(g), DIM], "noise": noise, "rss_before_gb": round(rss_gb(), 3)}
    dist, out["re_ranking_s"], out["re_ranking_cpu_s"] = timed(re_ranking, q, g, k1=20, k2=6, lambda_value=0.3)
    out["re_ranking_peak_rss_gb"] = round(peak_rss_gb(), 3)
    out["metrics_reranked"] = metrics_summary(evaluate_rank(dist, *labels))
    if save:
        np.save(save, dist)
    del dist
    result, out["evaluate_rerank_s"], out["evaluate_rerank_cpu_s"] = timed(evaluate, q, g, *labels, rerank=True)
    out["peak_rss_gb"] = round(peak_rss_gb(), 3)
    assert metrics_summary(result) == out["metrics_reranked"]
    out["metrics_plain"] = metrics_summary(evaluate(q, g, *labels))
    return out


def part_c(noise: float, save: str | None = None) -> dict:
    from reidlab.evaluation import evaluate_rank, re_ranking

    q, g, *labels = make_problem(**SHAPES["msmt17"], noise=noise)
    out = {"shape": [len(q), len(g), DIM], "noise": noise, "rss_before_gb": round(rss_gb(), 3)}
    dist, out["re_ranking_s"], out["re_ranking_cpu_s"] = timed(re_ranking, q, g, k1=20, k2=6, lambda_value=0.3)
    out["re_ranking_peak_rss_gb"] = round(peak_rss_gb(), 3)
    result, out["evaluate_rank_s"], out["evaluate_rank_cpu_s"] = timed(evaluate_rank, dist, *labels)
    out["metrics_reranked"] = metrics_summary(result)
    out["peak_rss_gb"] = round(peak_rss_gb(), 3)
    if save:
        np.save(save, dist)
    return out


PARTS = {"a": part_a, "a_full_product": part_a_full_product, "b": part_b, "c": part_c}
SCALE_OF = {"b": "market1501", "c": "msmt17"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="a,b", help="comma-separated parts: a, b, c (c takes minutes)")
    parser.add_argument("--noise", type=float, default=3.0, help="feature noise (higher = harder problem)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--baseline", default=None, help="rerank.py of another commit, timed beside parts b and c")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child.endswith("_baseline"):
        part = args.child.removesuffix("_baseline")
        print(json.dumps(rerank_baseline(SCALE_OF[part], args.noise, args.baseline, args.save)))
        return
    if args.child:
        kwargs = {"save": args.save} if args.child in SCALE_OF else {}
        print(json.dumps(PARTS[args.child](args.noise, **kwargs)))
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from a, b, c")
    if "a" in parts:
        parts.insert(parts.index("a") + 1, "a_full_product")
    report = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}}
    if args.baseline:
        for part in [p for p in parts if p in SCALE_OF]:
            parts.insert(parts.index(part) + 1, f"{part}_baseline")
    with tempfile.TemporaryDirectory() as scratch:
        for part in parts:
            command = [sys.executable, __file__, "--child", part, "--noise", str(args.noise)]
            if args.baseline and part.removesuffix("_baseline") in SCALE_OF:
                command += ["--save", os.path.join(scratch, f"{part.removesuffix('_baseline')}.npy"),
                            "--baseline", args.baseline]
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode != 0:
                report[part] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
                continue
            report[part] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "a" in report and "a_full_product" in report and "evaluate_s" in report["a"]:
        full = report["a_full_product"].get("bare_product_full_s")
        if full:
            report["a"]["ratio_to_full_product"] = round(report["a"]["evaluate_s"] / full, 3)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Study records at cluster scale: how long reading and reporting N finished runs takes, and how much memory.

Fabricates N run folders as a sweep leaves them (params.json, status.json, a trainer's metrics.json with its
provenance and CMC; N / 5 grid points x 5 seeds), then times ``study.collect``, writing ``runs.csv``
(``study.runs_table``), the paired statistics of every point against the first (``study.paired_table``) and
``study.render`` of the index, and reports the size of the index's first page and of all its pages. Each N runs in
a fresh process, so that its peak resident memory (``peak_rss_mb``, imports included; ``imports_rss_mb`` before
the runs are read) is its own. ``growth`` compares each N with the one before: how many times the runs, the
seconds of each step and the memory grew. Prints one JSON object.

    python benchmarks/records.py [--runs 500 5000 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reidlab import study

SEEDS = 5
GRID_KEYS = ("optim.lr", "loss.metric")
STEPS = ("collect_s", "runs_csv_s", "statistics_s", "render_index_s")


def fabricate(root: Path, runs: int) -> list[str]:
    """``runs`` finished run folders under ``root``; returns the point names."""
    points = [f"p{i:05d}" for i in range(max(1, runs // SEEDS))]
    provenance = {"reidlab_version": "0.1.0", "git_commit": "0" * 40, "git_dirty": False, "python": "3.11.7",
                  "torch": "2.14.1", "device": "cpu", "world_size": 1, "dataset": "synthreid",
                  "dataset_fingerprint": "2f37a12bda85b973", "amp": "none"}
    for i, point in enumerate(points):
        overrides = {"optim.lr": 1e-4 * (1 + i % 50), "loss.metric": ("adasp", "sp-h", "sp-lh")[i % 3],
                     "model.name": "resnet18_tiny", "data.size": [64, 32], "epochs": 10, "sampler.p": 16}
        for seed in range(SEEDS):
            run_dir = root / point / f"seed{seed}"
            run_dir.mkdir(parents=True)
            parameters = {"preset": "synth_cpu", "overrides": overrides, "data_root": "/data/synthreid", "seed": seed}
            (run_dir / "params.json").write_text(json.dumps({"runner": "reidlab.study.training.train_run",
                                                             "parameters": parameters}))
            (run_dir / "status.json").write_text(json.dumps({"status": "ok", "started": "2026-12-05T00:00:00+00:00",
                                                             "duration_s": 30.0 + seed}))
            score = 0.5 + 0.001 * (i % 97) + 0.002 * seed
            metrics = {"mAP": score, "rank1": score + 0.05, "rank5": score + 0.1, "mINP": score - 0.2,
                       "chance_mAP": 0.018, "chance_rank1": 0.006, "epochs_completed": 10, "global_step": 100,
                       "images_per_second": 450.0, "seconds_per_step": 0.14, "cmc": [score] * 50,
                       "provenance": provenance}
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return points


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def measure(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "sweep"
        points = fabricate(root, runs)
        collect_s, frame = timed(study.collect, root)
        csv_s, _ = timed(lambda: study.runs_table(frame, list(GRID_KEYS)).to_csv(root / "runs.csv", index=False))
        rows = {point: point for point in points}
        stats_s, _ = timed(study.paired_table, frame, rows, points[0], metrics=("mAP", "rank1"))
        render_s, index = timed(study.render, root, title="records benchmark")
        pages = [index, *root.glob("index-*.html")]
        return {"runs": len(frame), "collect_s": round(collect_s, 2), "runs_csv_s": round(csv_s, 2),
                "statistics_s": round(stats_s, 2), "render_index_s": round(render_s, 2),
                "index_mb": round(index.stat().st_size / 2**20, 2), "index_pages": len(pages),
                "index_all_pages_mb": round(sum(page.stat().st_size for page in pages) / 2**20, 2)}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)


def measure_alone(runs: int) -> dict[str, float]:
    """``measure(runs)`` in this (fresh) process, with its peak memory."""
    measure(SEEDS)  # imports (torch through the run folder, scipy, jinja2) happen here, not in the timings
    imports_mb = peak_rss_mb()
    return {**measure(runs), "imports_rss_mb": imports_mb, "peak_rss_mb": peak_rss_mb()}


def growth(results: list[dict]) -> list[dict]:
    """How many times each step's seconds and the peak memory grew from one N to the next, beside the runs'
    factor: at most that factor is at most linear growth."""
    return [{"runs": f"{before['runs']} -> {after['runs']}", "runs_x": round(after["runs"] / before["runs"], 1),
             **{step.removesuffix("_s") + "_x": round(after[step] / before[step], 1) if before[step] else None
                for step in STEPS},
             "peak_rss_x": round(after["peak_rss_mb"] / before["peak_rss_mb"], 2)}
            for before, after in zip(results, results[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--alone", type=int, help=argparse.SUPPRESS)  # one N, in the process main() starts
    args = parser.parse_args()
    if args.alone:
        print(json.dumps(measure_alone(args.alone)))
        return
    results = [json.loads(subprocess.run([sys.executable, __file__, "--alone", str(n)], check=True,
                                         capture_output=True, text=True).stdout.splitlines()[-1])
               for n in args.runs]
    print(json.dumps({"benchmark": "records", "results": results, "growth": growth(results)}, indent=2))


if __name__ == "__main__":
    main()

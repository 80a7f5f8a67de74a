"""Retrieval at scale through reidlab.evaluation.GalleryIndex: every index kind against exact search, as JSON.

Features are ReID-like and synthetic: ``identities`` centres drawn uniformly on the unit sphere; an image of
identity i seen by camera c is ``normalize(centre_i + camera_shift * s_c + spread * n)`` with ``s_c`` a fixed
random direction per camera and ``n`` Gaussian noise, so that same-identity images cluster, cameras shift them
coherently (the domain gap ReID fights) and the spread sets how hard retrieval is. Queries are drawn the same
way from the gallery's identities, under other cameras. ``--spread`` sets the difficulty (printed as
``exact.rank1``); retrieval turns hard abruptly: at 50,000 x 512 with 5,000 identities, exact rank-1 is 97.8% at
spread 2.0, 90.4% at 2.2, 62.5% at 2.5 and 7.1% at 3.5. A larger gallery of more identities lowers it further.

For each kind the benchmark builds the index (``build_s``, ``index_bytes``), tunes it to ``--target-recall``
(recall@1 against exact search on 1,000 queries) and then sweeps its search knob; every operating point has
queries/s, recall@1 and recall@10 against exact search, rank-1 and mAP@100 against the exact rank-1 and
mAP@100. Usage: ``python benchmarks/retrieval.py [--gallery 1000000 --dim 512] [--kinds flat,ivf,ivfpq,hnsw]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from reidlab.evaluation import GalleryIndex, evaluate_retrieved


def reid_like_features(num_gallery: int, num_query: int, dim: int, identities: int, cameras: int,
                       camera_shift: float, spread: float, seed: int = 0):
    """(queries, gallery, q_pids, g_pids, q_cams, g_cams); see the module docstring."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    shifts = rng.normal(size=(cameras, dim)).astype(np.float32)
    shifts /= np.linalg.norm(shifts, axis=1, keepdims=True)

    def draw(pids, cams, scale):
        out = np.empty((len(pids), dim), dtype=np.float32)
        for start in range(0, len(pids), 65536):
            rows = slice(start, start + 65536)
            x = centres[pids[rows]] + camera_shift * shifts[cams[rows]]
            x += scale * rng.normal(size=x.shape).astype(np.float32)
            out[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    g_pids, g_cams = rng.integers(0, identities, num_gallery), rng.integers(0, cameras, num_gallery)
    q_pids = g_pids[rng.choice(num_gallery, num_query, replace=False)]
    q_cams = rng.integers(0, cameras, num_query)
    return (draw(q_pids, q_cams, spread / np.sqrt(dim)), draw(g_pids, g_cams, spread / np.sqrt(dim)),
            q_pids, g_pids, q_cams, g_cams)


def timed_search(index: GalleryIndex, queries: np.ndarray, k: int):
    start = time.perf_counter()
    distances, ids = index.search(queries, k)
    return ids, len(queries) / (time.perf_counter() - start)


def operating_point(index: GalleryIndex, queries, exact_ids, labels, exact, top_k: int) -> dict:
    ids, qps = timed_search(index, queries, top_k)
    metrics = evaluate_retrieved(ids, *labels)
    overlap10 = (ids[:, :10, None] == exact_ids[:, None, :10]).any(-1).mean()
    return {
        "queries_per_s": round(qps, 1),
        "recall_at_1": round(float((ids[:, 0] == exact_ids[:, 0]).mean()), 4),
        "recall_at_10": round(float(overlap10), 4),
        "rank1": round(float(metrics["cmc"][0]), 4),
        "mAP_at_k": round(metrics["mAP"], 4),
        "rank1_loss_points": round(100 * (exact["rank1"] - float(metrics["cmc"][0])), 2),
    }


def knob_values(index: GalleryIndex) -> list[int]:
    if index.kind == "hnsw":
        return [16, 32, 64, 128, 256]
    if index.kind in ("ivf", "ivfpq"):
        return [v for v in (1, 2, 4, 8, 16, 32, 64, 128) if v <= index.params["nlist"]]
    return []


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    began = start = time.perf_counter()
    queries, gallery, *labels = reid_like_features(args.gallery, args.queries, args.dim, args.identities,
                                                   args.cameras, args.camera_shift, args.spread)
    out = {"benchmark": "retrieval", "gallery": args.gallery, "queries": args.queries, "dim": args.dim,
           "identities": args.identities, "spread": args.spread, "threads": args.threads, "top_k": args.top_k,
           "float32_bytes": int(gallery.nbytes), "generate_s": round(time.perf_counter() - start, 1)}
    flat = GalleryIndex("flat").add(gallery)
    exact_ids, flat_qps = timed_search(flat, queries, args.top_k)
    exact = evaluate_retrieved(exact_ids, *labels)
    exact = {"rank1": float(exact["cmc"][0]), "mAP_at_k": round(exact["mAP"], 4)}
    out["exact"] = {"queries_per_s": round(flat_qps, 1), "index_bytes": flat.nbytes, **exact}
    out["kinds"] = {}
    for name in args.kinds:
        if name == "flat":
            continue
        # "ivfpq": codes re-scored exactly (refine tuned too); "ivfpq_codes": the codes alone (compressed)
        kind = "ivfpq" if name.startswith("ivfpq") else name
        params = {"nbits": 8, "refine": 1 if name == "ivfpq_codes" else args.refine} if kind == "ivfpq" else {}
        index = GalleryIndex(kind, **params)
        start = time.perf_counter()
        if index.needs_training:
            sample = np.random.default_rng(1).choice(len(gallery), min(len(gallery), args.train_size), replace=False)
            index.train(gallery[np.sort(sample)])
        index.add(gallery)
        entry = {"build_s": round(time.perf_counter() - start, 1), "index_bytes": index.nbytes,
                 "bytes_vs_float32": round(index.nbytes / gallery.nbytes, 3), "params": dict(index.params)}
        entry["tuned"] = index.tune(queries, target_recall=args.target_recall, reference=flat)
        entry["tuned_point"] = operating_point(index, queries, exact_ids, labels, exact, args.top_k)
        curve = []
        for value in knob_values(index):
            index.params[index.search_knob] = value
            curve.append({index.search_knob: value, **operating_point(index, queries, exact_ids, labels, exact, args.top_k)})
        entry["curve"] = curve
        out["kinds"][name] = entry
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "curve"}}), file=sys.stderr, flush=True)
        del index
    out["total_s"] = round(time.perf_counter() - began, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--camera-shift", type=float, default=0.3)
    parser.add_argument("--spread", type=float, default=2.0, help="noise norm relative to the unit centres")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["flat", "ivf", "ivfpq", "ivfpq_codes", "hnsw"])
    parser.add_argument("--refine", type=int, default=4, help="ivfpq re-scoring depth (1: codes only)")
    parser.add_argument("--train-size", type=int, default=200_000, help="vectors the ivf kinds train on")
    parser.add_argument("--target-recall", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=2)
    print(json.dumps(run(parser.parse_args()), indent=1))


if __name__ == "__main__":
    main()

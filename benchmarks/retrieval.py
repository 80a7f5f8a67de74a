"""Retrieval at scale through reidlab.evaluation.GalleryIndex: every index kind against exact search, as JSON.

Features are ReID-like and synthetic (``reid_like_features``):
- identities belong to appearance groups (people dressed alike): a group centre ``a_g``, and an identity centre
  ``a_g + group_spread * u_i``;
- an image of identity i under camera c is ``normalize(R (centre_i + camera_shift * s_c + spread * n))``:
  ``s_c`` a fixed shift per camera (the domain gap ReID fights), ``n`` the image's own variation;
- every random vector (a, u, s, n) is Gaussian with a power-law spectrum, variance ~ j^-decay along axis j
  (learned embeddings concentrate in few directions), and R is one random rotation, so that no axis is special
  (product quantisation would otherwise profit from the axis-aligned spectrum).
Queries are drawn the same way from the gallery's identities. The defaults give exact rank-1 of 70-90%: 78.5%
at 1,000,000 x 512 (100,000 identities in 2,000 groups). How well inverted lists and graphs do depends on the
group structure: ``--group-spread`` near 0.5 makes the groups tight and every kind nearly lossless; large values
(or ``--groups 1``) take the groups away, and with them most of the speed-up at a given recall.

For each kind the benchmark builds the index (``build_s``, ``index_bytes``), tunes it to ``--target-recall``
(recall@1 against exact search on 250 queries; ``tuned``) and sweeps its search knob over all queries; every
operating point has queries/s, recall@1 and recall@10 against exact search, rank-1 and mAP@100, and its loss
of rank-1 points against exact search. Kinds: flat (exact), ivf (IVF-Flat), hnsw, ivfpq (4-bit fast-scan PQ
re-scored exactly, ``refine`` 10), ivfpq_codes (6-bit PQ codes of 2 dimensions, no re-scoring: the compressed
index, about 1/10 of the float32 bytes). One JSON object on stdout, progress on stderr. Usage:
``python benchmarks/retrieval.py [--gallery 1000000 --dim 512] [--kinds flat,ivf,ivfpq,ivfpq_codes,hnsw]``;
``--gallery 200000 --dim 2048`` for the 2048-d gallery.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from reidlab.evaluation import GalleryIndex, evaluate_retrieved, operating_points


def reid_like_features(num_gallery: int, num_query: int, dim: int, identities: int, groups: int, cameras: int,
                       group_spread: float, camera_shift: float, spread: float, decay: float, seed: int = 0):
    """(queries, gallery, q_pids, g_pids, q_cams, g_cams); see the module docstring."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, dim + 1, dtype=np.float32) ** (-decay / 2)
    scale /= np.linalg.norm(scale)  # unit expected norm

    def gaussian(n: int) -> np.ndarray:
        return rng.normal(size=(n, dim)).astype(np.float32) * scale

    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0].astype(np.float32)
    centres = gaussian(groups)[rng.integers(0, groups, identities)] + group_spread * gaussian(identities)
    shifts = camera_shift * gaussian(cameras)

    def draw(pids, cams):
        out = np.empty((len(pids), dim), dtype=np.float32)
        for start in range(0, len(pids), 65536):
            rows = slice(start, start + 65536)
            x = (centres[pids[rows]] + shifts[cams[rows]] + spread * gaussian(len(pids[rows]))) @ rotation.T
            out[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    g_pids, g_cams = rng.integers(0, identities, num_gallery), rng.integers(0, cameras, num_gallery)
    q_pids = g_pids[rng.choice(num_gallery, num_query, replace=False)]
    q_cams = rng.integers(0, cameras, num_query)
    return draw(q_pids, q_cams), draw(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


# the knob values each kind's curve is measured at (plus the tuned value where it is not slower than these)
CURVES = {"ivf": [4, 16, 64], "ivfpq": [16, 64, 256], "ivfpq_codes": [4, 16], "hnsw": [32, 64, 128, 256]}


def make_index(name: str, dim: int, args) -> GalleryIndex:
    """The kind's index; inverted lists get nlist = 4 sqrt(gallery) (faiss's rule of thumb for the gallery,
    where the default follows the training sample)."""
    nlist = int(4 * np.sqrt(args.gallery))
    if name == "ivfpq_codes":
        return GalleryIndex("ivfpq", nlist=nlist, m=dim // 2, nbits=6, refine=1)
    if name == "hnsw":
        return GalleryIndex("hnsw", M=args.hnsw_m, efConstruction=args.hnsw_ef_construction)
    return GalleryIndex(name, nlist=nlist)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    began = start = time.perf_counter()
    identities = args.identities or args.gallery // 10
    groups = args.groups or max(1, identities // 50)
    queries, gallery, *labels = reid_like_features(args.gallery, args.queries, args.dim, identities, groups,
                                                   args.cameras, args.group_spread, args.camera_shift,
                                                   args.spread, args.decay)
    out = {"benchmark": "retrieval", "gallery": args.gallery, "queries": args.queries, "dim": args.dim,
           "identities": identities, "groups": groups, "group_spread": args.group_spread, "spread": args.spread,
           "decay": args.decay, "threads": args.threads, "top_k": args.top_k,
           "float32_bytes": int(gallery.nbytes), "generate_s": round(time.perf_counter() - start, 1)}
    flat = GalleryIndex("flat").add(gallery)
    start = time.perf_counter()
    exact_ids = flat.search(queries, args.top_k)[1]
    flat_qps = len(queries) / (time.perf_counter() - start)
    exact = evaluate_retrieved(exact_ids, *labels)
    exact = {"rank1": float(exact["cmc"][0]), "mAP_at_k": round(exact["mAP"], 4)}
    out["exact"] = {"queries_per_s": round(flat_qps, 1), "index_bytes": flat.nbytes, **exact}
    print(json.dumps({"exact": out["exact"], "elapsed_s": round(time.perf_counter() - began)}), file=sys.stderr,
          flush=True)
    out["kinds"] = {}
    for name in args.kinds:
        if name == "flat":
            continue
        index = make_index(name, args.dim, args)
        start = time.perf_counter()
        if index.needs_training:
            sample = np.random.default_rng(1).choice(len(gallery), min(len(gallery), args.train_size), replace=False)
            index.train(gallery[np.sort(sample)])
        index.add(gallery)
        entry = {"build_s": round(time.perf_counter() - start, 1), "index_bytes": index.nbytes,
                 "bytes_vs_float32": round(index.nbytes / gallery.nbytes, 3), "params": dict(index.params)}
        entry["tuned"] = index.tune(queries, target_recall=args.target_recall, reference=flat, sample=args.tune_queries,
                                    k=args.top_k)
        knob, tuned = index.search_knob, index.params[index.search_knob]
        values = sorted({*CURVES[name], *([tuned] if tuned <= max(CURVES[name]) else [])})
        curve = operating_points(index, queries, *labels, exact_ids, values, args.top_k)
        for point in curve:
            point["rank1_loss_points"] = round(100 * (exact["rank1"] - point["rank1"]), 2)
            point["tuned"] = point[knob] == tuned
        entry["curve"] = curve
        out["kinds"][name] = entry
        print(json.dumps({name: entry, "elapsed_s": round(time.perf_counter() - began)}), file=sys.stderr, flush=True)
        del index
    out["total_s"] = round(time.perf_counter() - began, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--identities", type=int, default=None, help="default: gallery / 10")
    parser.add_argument("--groups", type=int, default=None, help="appearance groups; default: identities / 50")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--group-spread", type=float, default=0.7, help="identity spread within a group")
    parser.add_argument("--camera-shift", type=float, default=0.3)
    parser.add_argument("--spread", type=float, default=1.0, help="an image's own variation")
    parser.add_argument("--decay", type=float, default=1.0, help="power-law exponent of the spectrum")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["flat", "ivf", "ivfpq", "ivfpq_codes", "hnsw"])
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=40)
    parser.add_argument("--train-size", type=int, default=100_000, help="vectors the ivf kinds train on")
    parser.add_argument("--target-recall", type=float, default=0.99)
    parser.add_argument("--tune-queries", type=int, default=250, help="queries the tuning measures recall@1 on")
    parser.add_argument("--threads", type=int, default=2)
    print(json.dumps(run(parser.parse_args()), indent=1))


if __name__ == "__main__":
    main()

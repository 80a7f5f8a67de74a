"""The retrieval notebook's pages (notebooks/retrieval.ipynb): a trained run's test features searched in a gallery
grown by fitted distractors, exact flat search as the reference, each approximate ``GalleryIndex`` kind tuned on
validation queries (training images) and scored on the test queries along its search knob, the fastest point near
exact search per kind, and the metrics the notebook writes."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from reidlab.study.records import write_page_metrics
from reidlab.evaluation import INDEX_KINDS, GalleryIndex, evaluate_retrieved, fitted_distractors, operating_points
from reidlab.explore.run import ExploredRun

#: the search-knob values each approximate kind is measured at (ivf kinds: those up to the index's nlist)
KNOB_VALUES = {"ivf": [1, 2, 4, 8, 16, 32, 64, 128], "ivfpq": [1, 2, 4, 8, 16, 32, 64, 128],
               "hnsw": [8, 16, 32, 64, 128, 256]}
#: how far below exact search's rank-1 (in points) a point may be and still count as "near exact"
NEAR_EXACT_POINTS = 1.0
#: the columns of the near-exact table, in the order shown
NEAR_EXACT_COLUMNS = ["kind", "knob", "queries_per_s", "speedup", "rank1", "mAP_at_k", "recall_at_1", "index_bytes"]


def check_kinds(kinds: list[str]) -> None:
    """Refuse index kinds that are not approximate ``GalleryIndex`` kinds (flat is the reference itself), before a
    run is trained for a comparison that cannot be made."""
    unknown = sorted(set(kinds) - set(INDEX_KINDS) | ({"flat"} & set(kinds)))
    if unknown:
        raise ValueError(f"kinds {unknown}: choose approximate kinds from {sorted(set(INDEX_KINDS) - {'flat'})}")


def use_threads(threads: int) -> int:
    """Set torch's (and so faiss's, see ``GalleryIndex``) thread count, 0 for all cores; the search speeds are
    measured with it. Returns the count set."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.get_num_threads()


@dataclass
class SearchFeatures:
    """A run's test queries and gallery, the gallery grown by ``num_distractors`` images appended at its end, their
    labels, and the validation queries (training images) that search knobs are tuned on."""

    checkpoint: str
    query: np.ndarray
    gallery: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    tuning: np.ndarray
    num_distractors: int = 0

    @property
    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(q_pids, g_pids, q_camids, g_camids), as ``evaluate_retrieved`` and ``operating_points`` take them."""
        return self.q_pids, self.g_pids, self.q_camids, self.g_camids

    @property
    def num_test_gallery(self) -> int:
        """The gallery images of the test split, before the distractors."""
        return len(self.gallery) - self.num_distractors

    @property
    def size_text(self) -> str:
        """The search's size in words, for a figure's title."""
        return (f"{len(self.gallery):,} gallery images ({self.num_distractors:,} distractors), "
                f"{len(self.query)} queries")


def run_features(run_dir: str | os.PathLike, tuning_queries: int, seed: int = 0, device: str = "cpu") -> SearchFeatures:
    """The test features of a run's last checkpoint (extracted once, cached in the run folder by ``ExploredRun``)
    and ``tuning_queries`` of its training images drawn with ``seed``: validation queries, none a test query, so a
    knob tuned on them is not tuned on the queries it is scored on."""
    run = ExploredRun(run_dir, device=device)
    features = run.features()
    tuning = run.train_features(tuning_queries, seed=seed)
    return SearchFeatures(run.checkpoint.name, features.query.numpy(), features.gallery.numpy(), run.q_pids,
                          run.g_pids, run.q_camids, run.g_camids, tuning.features.numpy())


def with_fitted_distractors(features: SearchFeatures, num: int, seed: int = 0) -> SearchFeatures:
    """``features`` with ``num`` distractors (``fitted_distractors``: new identities fitted to the test gallery, which
    never match a query) appended to the gallery, as a deployed gallery is mostly people never searched for."""
    extra, extra_pids, extra_camids = fitted_distractors(features.gallery, features.g_pids, features.g_camids, num,
                                                         seed=seed)
    return dataclasses.replace(features, gallery=np.concatenate([features.gallery, extra]),
                               g_pids=np.concatenate([features.g_pids, extra_pids]),
                               g_camids=np.concatenate([features.g_camids, extra_camids]),
                               num_distractors=features.num_distractors + len(extra))


@dataclass
class ExactSearch:
    """Exact flat search, the reference of every approximate index: the list length ``k`` (``top_k``, at most the
    gallery), the flat index, its ranked ids for the test queries, its operating point on the whole gallery and
    ``alone``, the test gallery's own metrics (``evaluate_retrieved``) without the distractors."""

    k: int
    flat: GalleryIndex
    ids: np.ndarray
    point: dict[str, Any]
    alone: dict[str, Any]


def exact_search(features: SearchFeatures, top_k: int) -> ExactSearch:
    """Search the test queries exactly, in the test gallery alone and in the grown gallery."""
    k = min(top_k, len(features.gallery))
    test_gallery = features.gallery[:features.num_test_gallery]
    alone_ids = GalleryIndex("flat").add(test_gallery).search(features.query, min(k, len(test_gallery)))[1]
    alone = evaluate_retrieved(alone_ids, features.q_pids, features.g_pids[:features.num_test_gallery],
                               features.q_camids, features.g_camids[:features.num_test_gallery])
    flat = GalleryIndex("flat").add(features.gallery)
    ids = flat.search(features.query, k)[1]
    point, = operating_points(flat, features.query, *features.labels, ids, top_k=k)
    return ExactSearch(k, flat, ids, point, alone)


def search_summary(run_dir: str | os.PathLike, features: SearchFeatures, exact: ExactSearch) -> str:
    """What is searched and how well exact search does, without and with the distractors (three lines)."""
    k, alone, point = exact.k, exact.alone, exact.point
    return "\n".join([
        f"{features.checkpoint} of {run_dir}: {len(features.query)} queries, {features.num_test_gallery} gallery "
        f"images of {features.query.shape[1]}-d features; rank-1 {alone['cmc'][0]:.1%}, mAP@{k} {alone['mAP']:.1%} "
        "on the test gallery alone",
        f"with {features.num_distractors:,} fitted distractors ({len(features.gallery):,} images): rank-1 "
        f"{point['rank1']:.1%}, mAP@{k} {point['mAP_at_k']:.1%}, exact flat search {point['queries_per_s']:,.0f} "
        f"queries/s ({torch.get_num_threads()} threads)",
        f"validation queries for tuning: {len(features.tuning)} training-split images"])


@dataclass
class IndexComparison:
    """Every kind along its search knob on the test queries (``points``, one row per knob value, with its
    ``speedup`` over exact search and ``rank1_loss_points`` below it), each kind's ``tuned`` setting (``tune``'s
    result on the validation queries, ``"test"``: that setting's operating point on the test queries) and one
    line per kind saying both."""

    points: pd.DataFrame
    tuned: dict[str, dict[str, Any]]
    lines: list[str]


def compare_kind(kind: str, features: SearchFeatures, exact: ExactSearch,
                 target_recall: float) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """One kind built on the whole gallery, its knob tuned to ``target_recall`` (recall@1 against exact search) on
    the validation queries, then measured on the test queries at that setting and along ``KNOB_VALUES``:
    (rows of the points table, the tuned setting, its line)."""
    index = GalleryIndex(kind)
    if index.needs_training:
        index.train(features.gallery)
    index.add(features.gallery)
    tuned = index.tune(features.tuning, target_recall=target_recall, reference=exact.flat,
                       sample=len(features.tuning), k=exact.k)
    test, = operating_points(index, features.query, *features.labels, exact.ids, top_k=exact.k)
    tuned["test"] = test
    knob = index.search_knob
    values = [v for v in KNOB_VALUES[kind] if kind == "hnsw" or v <= index.params["nlist"]]
    rows = [{"kind": kind, "knob": f"{knob}={point.pop(knob)}", "index_bytes": index.nbytes, **point}
            for point in operating_points(index, features.query, *features.labels, exact.ids, values, top_k=exact.k)]
    setting = ", ".join(f"{name}={tuned[name]}" for name in (knob, "refine") if name in tuned)
    line = (f"{kind}: {index!r}; tuned at {setting} to recall@1 {tuned['recall_at_1']:.3f} on the validation queries; "
            f"on the test queries recall@1 {test['recall_at_1']:.3f}, rank-1 {test['rank1']:.1%}, "
            f"{test['queries_per_s']:,.0f} queries/s")
    return rows, tuned, line


def compare_indexes(features: SearchFeatures, exact: ExactSearch, kinds: list[str],
                    target_recall: float) -> IndexComparison:
    """:func:`compare_kind` for each of ``kinds``, the points set against exact search."""
    check_kinds(kinds)
    rows, tuned, lines = [], {}, []
    for kind in kinds:
        kind_rows, tuned[kind], line = compare_kind(kind, features, exact, target_recall)
        rows += kind_rows
        lines.append(line)
    points = pd.DataFrame(rows)
    points["speedup"] = points["queries_per_s"] / exact.point["queries_per_s"]
    points["rank1_loss_points"] = 100 * (exact.point["rank1"] - points["rank1"])
    return IndexComparison(points, tuned, lines)


def fastest_near_exact(points: pd.DataFrame, kinds: list[str], exact_point: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """Per kind, the fastest point within ``NEAR_EXACT_POINTS`` rank-1 points of exact search (``NEAR_EXACT_COLUMNS``),
    and the answer in words. Picked with the test labels: a reading of the curve, not a setting to deploy (that is
    the tuned one)."""
    near = points[points["rank1_loss_points"] <= NEAR_EXACT_POINTS]
    best = near.loc[near.groupby("kind")["queries_per_s"].idxmax()] if len(near) else near
    lines = [f"the fastest point within {NEAR_EXACT_POINTS:g} rank-1 point of exact search "
             f"({exact_point['queries_per_s']:,.0f} queries/s), per kind "
             "(picked on the test queries: a reading of the curve, not a tuned setting):"]
    lines += [f"  {row.kind}: {row.rank1_loss_points:.1f} rank-1 points below exact at {row.speedup:.1f}x its speed "
              f"({row.knob}, recall@1 {row.recall_at_1:.3f})" for row in best.itertuples()]
    lines += [f"  {kind}: none measured" for kind in sorted(set(kinds) - set(best["kind"]))]
    return best[NEAR_EXACT_COLUMNS], "\n".join(lines)


def write_retrieval_metrics(output_dir: str | os.PathLike, run_dir: str | os.PathLike, features: SearchFeatures,
                            exact: ExactSearch, comparison: IndexComparison) -> dict[str, Any]:
    """The notebook's ``metrics.json`` (the search's size, exact search alone and with the distractors, each kind's
    tuned setting and points, the figures in ``output_dir/figures``), written and returned."""
    metrics = {"run_dir": str(run_dir), "checkpoint": features.checkpoint, "num_query": len(features.query),
               "num_gallery": features.num_test_gallery, "distractors": features.num_distractors,
               "dim": int(features.query.shape[1]), "top_k": exact.k, "threads": torch.get_num_threads(),
               "tuning_queries": len(features.tuning),
               "rank1_alone": float(exact.alone["cmc"][0]), "mAP_alone": exact.alone["mAP"],
               "exact": exact.point, "tuned": comparison.tuned, "points": comparison.points.to_dict("records")}
    return write_page_metrics(output_dir, metrics)

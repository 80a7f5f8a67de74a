"""Market-1501-style ranking metrics (CMC, mAP, mINP) that never sort the gallery.

Protocol (docs/design.md, "Evaluation protocol"): for each query the gallery is ranked by distance with a *stable* sort
(ties keep gallery order); gallery entries with the query's pid AND camera are removed, and so are
junk entries (pid < 0, the Market-1501 convention); a query with no remaining match is skipped but
counted (``num_invalid_queries``).  CMC comes from the first correct match, AP is the mean precision
at each correct match, mINP the mean over queries of ``#correct / rank of the last correct match``.

How: a query's true matches are few, so instead of sorting the whole gallery row we sort only the
matches by (distance, gallery index), place gallery entries among them with ``searchsorted`` and
histogram the placements: the rank of the j-th match is ``j + 1`` plus the number of kept non-matches
placed before it - exactly the ranks of a full stable sort.  Only entries not farther than the query's
last match can precede a match, so usually only those few are placed.  :func:`evaluate_rank` (dense
matrix) and :func:`reidlab.evaluation.evaluate` (features) share this code and agree bit for bit when
given the same distances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from reidlab.evaluation.checks import as_label_array, check_positive_int

__all__ = ["evaluate_rank", "evaluate_retrieved", "RankingProblem"]

#: target number of distance entries handled at once by the dense path (bounds temporary memory)
_DENSE_CHUNK_ELEMENTS = 1 << 23


class RankingProblem:
    """Labels of a query/gallery split, grouped so each query's same-pid gallery entries are cheap to find.

    Junk gallery entries (pid < 0) are dropped once here: ``kept_columns`` maps the compacted gallery
    (what the ranking code sees) back to the original columns, ``None`` when nothing is dropped.
    Dropping columns keeps the relative order of the rest, so stable tie-breaking is unchanged.
    """

    def __init__(self, q_pids, g_pids, q_camids, g_camids, num_query: int | None = None,
                 num_gallery: int | None = None):
        self.q_pids = as_label_array(q_pids, "q_pids")
        self.q_camids = as_label_array(q_camids, "q_camids")
        g_pids = as_label_array(g_pids, "g_pids")
        g_camids = as_label_array(g_camids, "g_camids")
        for name, arr, expected, what in (
            ("q_pids", self.q_pids, num_query, "query rows"),
            ("q_camids", self.q_camids, len(self.q_pids), "q_pids"),
            ("g_pids", g_pids, num_gallery, "gallery columns"),
            ("g_camids", g_camids, len(g_pids), "g_pids"),
        ):
            if expected is not None and len(arr) != expected:
                raise ValueError(f"{name} has {len(arr)} entries but there are {expected} {what}")
        if len(self.q_pids) == 0:
            raise ValueError("the query set is empty: evaluation needs at least one query")
        if len(g_pids) == 0:
            raise ValueError("the gallery is empty: evaluation needs at least one gallery entry")
        if np.any(self.q_pids < 0):
            raise ValueError("query pids must be >= 0 (pid -1 marks junk images, which are gallery-only)")
        junk = g_pids < 0
        self.kept_columns = np.flatnonzero(~junk) if junk.any() else None
        if self.kept_columns is not None:
            g_pids, g_camids = g_pids[self.kept_columns], g_camids[self.kept_columns]
            if len(g_pids) == 0:
                raise ValueError("every gallery entry is junk (pid < 0): nothing to rank")
        self.g_pids, self.g_camids = g_pids, g_camids
        self.num_query, self.num_gallery = len(self.q_pids), len(g_pids)
        # CSR grouping of the gallery by pid (stable: members keep increasing gallery index)
        self._order = np.argsort(g_pids, kind="stable")
        self._pids, self._starts, self._counts = np.unique(g_pids[self._order], return_index=True,
                                                           return_counts=True)

    def same_pid_members(self, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gallery entries sharing the pid of queries ``rows``: (row in chunk, gallery index, same camera)."""
        qp = self.q_pids[rows]
        pos = np.searchsorted(self._pids, qp).clip(max=max(len(self._pids) - 1, 0))
        present = self._pids[pos] == qp
        counts = np.where(present, self._counts[pos], 0)
        total = int(counts.sum())
        row_of = np.repeat(np.arange(len(qp)), counts)
        first = np.cumsum(counts) - counts
        offset = np.arange(total) - np.repeat(first, counts)
        members = self._order[np.repeat(self._starts[pos], counts) + offset]
        same_cam = self.g_camids[members] == self.q_camids[rows][row_of]
        return row_of, members, same_cam

    def chunks(self, chunk_size: int) -> Iterator[slice]:
        for start in range(0, self.num_query, chunk_size):
            yield slice(start, min(start + chunk_size, self.num_query))


def _pack_rows(row_of: np.ndarray, values: np.ndarray, num_rows: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a padded [num_rows, width] matrix from (row, value) pairs sorted by row; also the row counts."""
    counts = np.bincount(row_of, minlength=num_rows)
    width = max(int(counts.max(initial=0)), 1)
    packed = np.full((num_rows, width), pad, dtype=np.int64)
    col = np.arange(len(row_of)) - np.repeat(np.cumsum(counts) - counts, counts)
    packed[row_of, col] = values
    return packed, counts


def top_k_match_ranks(ids: np.ndarray, problem: RankingProblem, rows: slice
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranks of the true matches of queries ``rows`` among their retrieved top K (approximate search).

    ``ids`` [b, K]: each query's retrieved gallery positions in the compacted gallery (junk removed), best
    first, -1 where nothing was retrieved. Same-pid same-camera entries are dropped as the protocol says, so
    a rank counts the kept entries up to it. Returns (ranks [b, width] zero-padded, true matches per query in
    the whole gallery, how many of them are among the K)."""
    b = ids.shape[0]
    retrieved = ids >= 0
    safe = np.where(retrieved, ids, 0)
    q_pids, q_camids = problem.q_pids[rows][:, None], problem.q_camids[rows][:, None]
    same_pid = retrieved & (problem.g_pids[safe] == q_pids)
    kept = retrieved & ~(same_pid & (problem.g_camids[safe] == q_camids))
    rank = np.cumsum(kept, axis=1)
    match_row, match_col = np.nonzero(same_pid & kept)
    ranks, found = _pack_rows(match_row, rank[match_row, match_col], b, pad=0)
    row_of, _, same_cam = problem.same_pid_members(rows)
    counts = np.bincount(row_of[~same_cam], minlength=b)
    width = max(int(counts.max(initial=0)), ranks.shape[1])
    return np.pad(ranks, ((0, 0), (0, width - ranks.shape[1]))), counts, found


def evaluate_retrieved(ids, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                       return_per_query: bool = False) -> dict:
    """Metrics of ranked lists that a search returned: ``ids`` [num_query, K] gallery positions, best first,
    -1 where nothing was retrieved (e.g. ``GalleryIndex.search``). The Market protocol as in
    :func:`evaluate_rank` (same pid and camera dropped, junk skipped), scored within the K: mAP@K (true matches
    beyond K add nothing; the divisor is all of a query's true matches), CMC up to K, mINP@K (0 when the last
    match lies beyond K), plus ``"top_k": K``."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be [num_query, k], got shape {ids.shape}")
    problem = RankingProblem(q_pids, g_pids, q_camids, g_camids, num_query=len(ids))
    if problem.kept_columns is not None:  # positions in the whole gallery -> in the junk-free one
        compact_of = np.full(len(as_label_array(g_pids, "g_pids")), -1)
        compact_of[problem.kept_columns] = np.arange(len(problem.kept_columns))
        ids = np.where(ids >= 0, compact_of[np.maximum(ids, 0)], -1)
    rows = slice(0, len(ids))
    acc = MetricAccumulator(problem.num_query)
    acc.add(rows, *top_k_match_ranks(ids, problem, rows))
    return {**acc.result(check_positive_int(max_rank, "max_rank"), return_per_query), "top_k": ids.shape[1]}


def _order_codes(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Non-negative int64 codes with the same order and ties as ``values``, and how many bits they need.

    float32: the IEEE bit pattern made monotone (``-0.0`` folded onto ``+0.0``); other dtypes: dense ranks.
    """
    if values.dtype == torch.float32:
        bits = (values + 0.0).view(torch.int32).long()
        return torch.where(bits >= 0, bits + (1 << 31), (1 << 31) - 1 - (bits & 0x7FFFFFFF)), 32
    distinct, codes = torch.unique(values, sorted=True, return_inverse=True)
    return codes, max(1, (len(distinct) - 1).bit_length())


def _count_preceding(sorted_keys: torch.Tensor, sorted_idx: torch.Tensor, keys: torch.Tensor,
                     key_idx: torch.Tensor | None) -> torch.Tensor:
    """For each (key, index) pair, how many entries of its row of the (key, index)-sorted list precede it.

    Dense 2-D ``searchsorted``; ``key_idx`` None means a key's index is its column (a full gallery row).
    Exact ties in the key are broken by gallery index, as a stable sort of the gallery would.
    """
    width = sorted_keys.shape[1]
    below = torch.searchsorted(sorted_keys, keys, side="left")
    tie = (sorted_keys.gather(1, below.clamp(max=width - 1)) == keys) & (below < width)
    rows, cols = tie.nonzero(as_tuple=True)
    if len(rows):
        tied_keys = keys[rows, cols]
        tied_idx = cols if key_idx is None else key_idx[rows, cols]
        pos = below[rows, cols]
        extra = torch.zeros_like(pos)
        while True:  # walk the tie group (ascending index) while its entries come before ours
            p = pos.clamp(max=width - 1)
            before = (pos < width) & (sorted_keys[rows, p] == tied_keys) & (sorted_idx[rows, p] < tied_idx)
            if not before.any():
                break
            extra += before
            pos = torch.where(before, pos + 1, width)
        below[rows, cols] += extra
    return below


def _place_candidates(keys: torch.Tensor, flat: torch.Tensor, sorted_keys: torch.Tensor,
                      sorted_idx: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, number of preceding matches) of the entries ``flat`` (row-major positions in ``keys``).

    Each entry and each match is encoded as one int64 ``(row, key code, gallery index)``, so ties need no
    special case and a single 1-D ``searchsorted`` places every entry among the matches of all rows.
    """
    b, n = keys.shape
    cand_rows = torch.div(flat, n, rounding_mode="floor")
    cand_cols = flat - cand_rows * n
    g_rows = real.nonzero(as_tuple=True)[0]
    codes, value_bits = _order_codes(torch.cat([keys.reshape(-1)[flat], sorted_keys[real]]))
    index_bits = max(1, n.bit_length())
    if max(1, (b - 1).bit_length()) + value_bits + index_bits > 63:
        raise ValueError(f"ranking chunk too large to encode ({b} rows x {n} gallery entries); use a smaller chunk")
    shift = value_bits + index_bits
    num_cand = len(flat)
    match_codes = (g_rows << shift) | (codes[num_cand:] << index_bits) | sorted_idx[real]
    cand_codes = (cand_rows << shift) | (codes[:num_cand] << index_bits) | cand_cols
    counts = real.sum(1)
    row_start = counts.cumsum(0) - counts
    return cand_rows, torch.searchsorted(match_codes, cand_codes) - row_start[cand_rows]


@contextlib.contextmanager
def _single_threaded(device: torch.device):
    """One intra-op thread on CPU for the many small tensor ops after the chunk-wide passes: with a few
    thousand elements each, thread start-up and waits (worse on a loaded machine) cost more than they save."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: a chunk where more than this fraction of entries can precede a match is placed densely (whole rows)
DENSE_CANDIDATE_FRACTION = 0.25


def match_ranks(keys: torch.Tensor, problem: RankingProblem, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of every true match of queries ``rows`` given their ranking keys [b, num_gallery].

    Returns (ranks [b, width] int64, ascending per row, zero-padded; number of matches per row).
    Smaller key = ranked first, exact ties in gallery order; the gallery is the compacted one (junk removed).

    Each gallery entry is placed among the query's matches sorted by (key, index); the rank of the j-th
    match is ``j + 1`` plus the number of non-matching kept entries placed at or before j.  Only entries
    with a key not above the last match can precede one: when they are few they alone are placed
    (:func:`_place_candidates`), otherwise whole rows are (:func:`_count_preceding`).
    """
    b, n = keys.shape
    device = keys.device
    row_of, members, same_cam = problem.same_pid_members(rows)
    good_idx, good_count = _pack_rows(row_of[~same_cam], members[~same_cam], b, pad=n)
    width = good_idx.shape[1]
    good_idx_t = torch.from_numpy(good_idx).to(device)
    real = good_idx_t < n  # real matches fill the first good_count slots of each row
    good_keys = keys.gather(1, good_idx_t.clamp(max=n - 1))
    if keys.is_floating_point():
        pad_key, low_key = torch.inf, -torch.inf
    else:
        pad_key, low_key = torch.iinfo(keys.dtype).max, torch.iinfo(keys.dtype).min
    sorted_keys, perm = torch.sort(good_keys.masked_fill(~real, pad_key), dim=1, stable=True)
    sorted_idx = good_idx_t.gather(1, perm)  # padding (index n, after every real index) stays last

    last_good = good_keys.masked_fill(~real, low_key).amax(1, keepdim=True)
    candidates = (keys <= last_good).view(-1).nonzero().squeeze(1)
    dense = len(candidates) > DENSE_CANDIDATE_FRACTION * b * n
    if dense:
        placed = _count_preceding(sorted_keys, sorted_idx, keys, None)
        placed += torch.arange(b, device=device).mul_(width + 1).unsqueeze(1)
        hist = torch.bincount(placed.view(-1), minlength=b * (width + 1))
    with _single_threaded(device):
        if not dense:
            cand_rows, placed = _place_candidates(keys, candidates, sorted_keys, sorted_idx, real)
            hist = torch.bincount(cand_rows * (width + 1) + placed, minlength=b * (width + 1))
        hist = hist.view(b, width + 1)
        # entries placed at m (after every match) never matter; remove the matches themselves (the j-th
        # match precedes exactly j matches) and the same-pid same-camera entries the protocol drops
        hist[:, :width] -= real.long()
        if same_cam.any():
            ex_idx, _ = _pack_rows(row_of[same_cam], members[same_cam], b, pad=n)
            ex_idx_t = torch.from_numpy(ex_idx).to(device)
            ex_keys = keys.gather(1, ex_idx_t.clamp(max=n - 1))
            ex_below = _count_preceding(sorted_keys, sorted_idx, ex_keys, ex_idx_t)
            r, c = (ex_idx_t < n).nonzero(as_tuple=True)
            hist.index_put_((r, ex_below[r, c]), torch.tensor(-1, device=device, dtype=hist.dtype), accumulate=True)
        negatives_before = hist[:, :width].cumsum(1)
        ranks = (torch.arange(1, width + 1, device=device) + negatives_before).masked_fill(~real, 0)
        return ranks.cpu().numpy(), good_count


class MetricAccumulator:
    """Collects per-query AP / INP / first-match rank chunk by chunk and reduces them to the result dict."""

    def __init__(self, num_query: int):
        self.ap = np.full(num_query, np.nan)
        self.inp = np.full(num_query, np.nan)
        self.first_rank = np.zeros(num_query, dtype=np.int64)
        self.num_matches = np.zeros(num_query, dtype=np.int64)

    def add(self, rows: slice, ranks: np.ndarray, counts: np.ndarray, found: np.ndarray | None = None) -> None:
        """``ranks`` [b, width]: 1-based ranks of each query's true matches, ascending, zero-padded; ``counts``:
        its number of true matches. ``found``: how many of them have a known rank (top-K search: those within
        the top K; the rest add nothing to AP, and INP is 0 as the last match lies beyond K)."""
        valid = counts > 0
        steps = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(ranks > 0, steps / np.maximum(ranks, 1), 0.0)
            ap = precision.cumsum(1)[:, -1] / counts  # sequential sum: independent of padding width
            last = ranks[np.arange(len(counts)), np.maximum(counts - 1, 0)]
            inp = counts / np.maximum(last, 1)
        if found is not None:
            inp = np.where(found == counts, inp, 0.0)
        self.ap[rows] = np.where(valid, ap, np.nan)
        self.inp[rows] = np.where(valid, inp, np.nan)
        self.first_rank[rows] = np.where(valid, ranks[:, 0], 0)
        self.num_matches[rows] = counts

    def result(self, max_rank: int, return_per_query: bool) -> dict:
        valid = self.num_matches > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError("no query has a correct match in the gallery once same-pid same-camera entries "
                             "are removed; check that query and gallery pids/camids come from the same split")
        hits = np.bincount(np.minimum(self.first_rank[valid], max_rank + 1), minlength=max_rank + 2)
        out = {
            "cmc": np.cumsum(hits[1:max_rank + 1]) / num_valid,
            "mAP": float(np.mean(self.ap[valid])),
            "mINP": float(np.mean(self.inp[valid])),
            "num_valid_queries": num_valid,
            "num_invalid_queries": int(len(valid) - num_valid),
        }
        if return_per_query:
            out.update(AP=self.ap, INP=self.inp, first_match_rank=self.first_rank, num_matches=self.num_matches)
        return out


def _dense_block(distmat, rows: slice, columns: np.ndarray | None) -> torch.Tensor:
    """Rows of a numpy / memmap / torch distance matrix as a fresh torch tensor (never writes to the input)."""
    if isinstance(distmat, torch.Tensor):
        block = distmat[rows] if columns is None else distmat[rows][:, torch.from_numpy(columns).to(distmat.device)]
        block = block.clone() if columns is None else block
    else:
        block = np.asarray(distmat[rows])
        block = np.array(block if columns is None else block[:, columns], copy=True)
        block = torch.from_numpy(block)
    if block.dtype in (torch.float16, torch.bfloat16):
        block = block.float()  # exact: keeps order, ties and NaN (checked below like any float)
    if not block.is_floating_point():
        if block.dtype == torch.bool:
            raise ValueError("distmat must hold numbers, got a boolean matrix")
        block = block.long()
    elif torch.isnan(block).any():
        bad = rows.start + int(torch.isnan(block).any(1).nonzero()[0])
        raise ValueError(f"distmat has NaN entries (first in query row {bad}); fix the features or distances")
    return block.contiguous()


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                  return_per_query: bool = False) -> dict:
    """CMC, mAP and mINP of a dense query x gallery distance matrix (Market-1501 protocol, module docstring).

    ``distmat`` may be a numpy array (read-only and memory-mapped are fine: it is read chunk by chunk and
    never written) or a torch tensor (CPU or CUDA).  Smaller distance = more similar; exact ties keep
    gallery order (stable sort).

    Returns a dict: ``cmc`` (float64 array of length ``max_rank``: ``cmc[k]`` is the fraction of valid
    queries whose first correct match is within the top ``k + 1`` kept gallery entries; every valid
    query has a match, so a query with fewer than ``max_rank`` candidates contributes 1 from its first
    match onwards - no stale or undefined tail), ``mAP``, ``mINP`` (fractions over valid queries),
    ``num_valid_queries``, ``num_invalid_queries``.  With ``return_per_query`` also ``AP``, ``INP``
    (float64 per query, NaN for a query without a valid match), ``first_match_rank`` (1-based, 0 when
    invalid) and ``num_matches``.
    """
    max_rank = check_positive_int(max_rank, "max_rank")
    shape = tuple(distmat.shape)
    if len(shape) != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {shape}")
    problem = RankingProblem(q_pids, g_pids, q_camids, g_camids, num_query=shape[0], num_gallery=shape[1])
    acc = MetricAccumulator(problem.num_query)
    chunk = max(1, _DENSE_CHUNK_ELEMENTS // max(problem.num_gallery, 1))
    for rows in problem.chunks(chunk):
        keys = _dense_block(distmat, rows, problem.kept_columns)
        acc.add(rows, *match_ranks(keys, problem, rows))
    return acc.result(max_rank, return_per_query)

"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) on sparse neighbour structures.

Computes the function of the authors' code (``re_ranking(...)`` of the CVPR 2017 release): with
``X = concat(query, gallery)`` of N images,

1. ``d(i, j) = |x_i - x_j|^2`` scaled per row by its maximum over all N (the original divides by each
   column's max and transposes; d is symmetric, so that is the row max);
2. ``R(i)``: the k-reciprocal set among the ``k1 + 1`` nearest neighbours (the image itself included);
3. expansion: every candidate ``c`` of ``R(i)`` whose own ``round(k1 / 2) + 1`` reciprocal set ``H(c)``
   shares more than 2/3 of its members with ``R(i)`` adds ``H(c)``;
4. ``V(i, .)``: ``exp(-d(i, j))`` on the expanded set, normalized to sum 1, zero elsewhere;
5. local query expansion: ``V(i, .)`` becomes the mean of the V rows of its ``k2`` nearest neighbours
   (skipped when ``k2 == 1``, as in the original);
6. Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_l min(V(i, l), V(j, l))``, blended as
   ``(1 - lambda) * jaccard + lambda * d`` for query rows and gallery columns.

Where the original holds N x N dense matrices (about 200 GB at MSMT17 scale), this keeps the k-nearest
neighbours ([N, k]), V as a sparse matrix (non-zeros only: a gallery image sharing no neighbour with the
query has ``m = 0`` and Jaccard distance exactly 1), and produces the q x g output chunk by chunk.
The neighbour search is a blocked torch matmul + running top-k on the features' device over the upper
triangle of the symmetric distance matrix, recording each row's maximum distance on the way (and, for
``re_ranking``, the query x gallery distances, so that the output needs no second product).
Differences from the original: V is kept in float64 (the release uses float32 or float16), and exact
distance ties in the neighbour lists are ordered by index (the original's ``np.argsort`` leaves their
order unspecified).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from reidlab.evaluation.checks import as_feature_tensor, check_positive_int

__all__ = ["re_ranking", "KReciprocalReranker"]

_CHUNK_ELEMENTS = 1 << 24
_PAIR_ROWS = 64


def _reciprocal_mask(neighbours: torch.Tensor, chunk: int) -> torch.Tensor:
    """mask[i, s]: image i is among the neighbours of its s-th neighbour (same list length)."""
    n = len(neighbours)
    mask = torch.empty(neighbours.shape, dtype=torch.bool)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        mask[rows] = (neighbours[neighbours[rows]] == rows[:, None, None]).any(-1)
    return mask


def _smallest_by_distance_then_index(dist: torch.Tensor, first_column: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k smallest entries of ``dist`` [r, b] under the order (distance, column), as (distances,
    column indices + first_column), [r, k] each, in no particular order.

    One top-(k + 1): where the (k + 1)-th value is above the k-th, the k smallest are one set and top-k found
    it. Rows whose k-th value is tied beyond the cut (rare: exact duplicates) are redone exactly: every entry
    below the k-th value is kept, and of those equal to it the first columns fill the row to k."""
    if k >= dist.shape[1]:
        columns = torch.arange(dist.shape[1], device=dist.device).expand(dist.shape[0], -1)
        return dist, columns + first_column
    values, columns = torch.topk(dist, k + 1, dim=1, largest=False, sorted=True)
    tied = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
    values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
    if len(tied):
        rows = dist[tied]
        kth = values[tied, k - 1 : k]
        below, equal = rows < kth, rows == kth
        keep = below | (equal & (equal.cumsum(1) <= k - below.sum(1, keepdim=True)))
        exact = keep.nonzero()[:, 1].view(len(tied), k)
        values[tied], columns[tied] = rows.gather(1, exact), exact
    return values, columns + first_column


class KReciprocalReranker:
    """Sparse state of k-reciprocal re-ranking; query rows of the re-ranked distance on demand.

    Building it costs one pass over the N x N distances (``block_size`` square blocks, upper triangle
    only; N x k memory); each call of :meth:`query_rows` then costs a sparse join plus one q-chunk x gallery
    product, or none with ``keep_query_distances``: the pass then keeps the query x gallery distances it
    computes anyway ([q, g] memory; :func:`re_ranking` writes its output into that buffer).
    ``chunk_size``: query rows per output chunk.
    """

    def __init__(self, q_feats, g_feats, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                 chunk_size: int | None = None, device=None, block_size: int = 2048,
                 keep_query_distances: bool = False):

        k1, k2 = check_positive_int(k1, "k1"), check_positive_int(k2, "k2")
        if not 0.0 <= lambda_value <= 1.0:
            raise ValueError(f"lambda_value must lie in [0, 1], got {lambda_value!r}")
        q = as_feature_tensor(q_feats, "q_feats", device)
        g = as_feature_tensor(g_feats, "g_feats", q.device)
        if len(q) == 0 or len(g) == 0:
            raise ValueError(f"re-ranking needs a non-empty query and gallery, got {len(q)} and {len(g)}")
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"q_feats have dimension {q.shape[1]} but g_feats have {g.shape[1]}")
        if q.dtype != g.dtype:
            q, g = q.double(), g.double()
        self.k1, self.k2, self.lambda_value = int(k1), int(k2), float(lambda_value)
        self.features = torch.cat([q, g])
        self.num_query, self.num_all = len(q), len(self.features)
        self.sq_norms = (self.features * self.features).sum(1)
        self.chunk_size = chunk_size or max(1, _CHUNK_ELEMENTS // self.num_all)
        self.block_size = check_positive_int(block_size, "block_size")
        self.query_distances = (torch.empty(len(q), len(g), dtype=q.dtype, device=q.device)
                                if keep_query_distances and self.lambda_value > 0 else None)
        neighbours, self.row_max = self._neighbours()
        self.V = self._build_v(neighbours)
        self._gallery_columns = self.V[self.num_query:].tocsc()  # column l -> gallery images using l

    # -- sparse state -------------------------------------------------------------------------------
    def _distance_rows(self, rows: slice, columns: slice = slice(None)) -> torch.Tensor:
        """Squared Euclidean distances as the original computes them: |x_i|^2 + |x_j|^2 - 2 x_i.x_j."""
        x = self.features
        base = self.sq_norms[rows, None] + self.sq_norms[None, columns]
        return torch.addmm(base, x[rows], x[columns].T, alpha=-2.0)

    def _neighbours(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, k] nearest neighbours (self included, sorted by (distance, index)) and each row's max distance.

        One pass over the upper triangle of the N x N distances in square blocks: block (I, J) updates the
        running top-k and maxima of rows I and, transposed, of rows J (d is symmetric), so the dominant
        matrix products cost half of a full N x N pass.  Query x gallery distances go to the cache on the way.
        """
        n, x = self.num_all, self.features
        k = min(max(self.k1 + 1, self.k2), n)
        best_dist = torch.full((n, k), torch.inf, dtype=x.dtype, device=x.device)
        best_idx = torch.full((n, k), n, dtype=torch.long, device=x.device)
        row_max = torch.full((n,), -torch.inf, dtype=x.dtype, device=x.device)

        def merge(rows: slice, columns: slice, dist: torch.Tensor, transposed: bool) -> None:
            # Updates the lists of `rows` from d(rows, columns), held in `dist` as [rows, columns] or, when
            # `transposed`, as [columns, rows] (no transposed copy: reductions and masks read it in place).
            # Only entries at or below a row's running k-th distance can enter its list: once a row has
            # seen k columns these are few, and are gathered sparsely; before that, the exact block top-k.
            # Both keep the (distance, index) order under exact ties (torch.topk alone picks arbitrarily
            # among equal values, which would make the lists depend on block_size).
            row_max[rows] = torch.maximum(row_max[rows], dist.amax(0 if transposed else 1))
            kth = best_dist[rows, k - 1]
            if bool(torch.isinf(kth).any()):
                block = dist.T if transposed else dist
                touched = torch.arange(rows.start, rows.stop, device=x.device)
                block_dist, block_idx = _smallest_by_distance_then_index(block, columns.start, min(k, block.shape[1]))
            else:
                hit_a, hit_b = (dist <= (kth[None, :] if transposed else kth[:, None])).nonzero(as_tuple=True)
                if not len(hit_a):
                    return
                values = dist[hit_a, hit_b]
                local_row, column = (hit_b, hit_a) if transposed else (hit_a, hit_b)
                if transposed:
                    order = local_row.argsort(stable=True)
                    local_row, column, values = local_row[order], column[order], values[order]
                touched, counts = torch.unique_consecutive(local_row, return_counts=True)
                starts = counts.cumsum(0) - counts
                slot = torch.arange(len(local_row), device=x.device) - starts.repeat_interleave(counts)
                width = int(counts.max())
                block_dist = torch.full((len(touched), width), torch.inf, dtype=x.dtype, device=x.device)
                block_idx = torch.full((len(touched), width), n, dtype=torch.long, device=x.device)
                row_of = torch.arange(len(touched), device=x.device).repeat_interleave(counts)
                block_dist[row_of, slot], block_idx[row_of, slot] = values, column + columns.start
                touched = touched + rows.start
            candidates = torch.cat([best_dist[touched], block_dist], dim=1)
            cand_idx = torch.cat([best_idx[touched], block_idx], dim=1)
            by_index = cand_idx.argsort(dim=1)
            candidates, cand_idx = candidates.gather(1, by_index), cand_idx.gather(1, by_index)
            top, pos = candidates.sort(dim=1, stable=True)
            best_dist[touched], best_idx[touched] = top[:, :k], cand_idx.gather(1, pos[:, :k])

        starts = range(0, n, self.block_size)
        for bi in starts:
            rows = slice(bi, min(bi + self.block_size, n))
            for bj in starts[bi // self.block_size:]:
                columns = slice(bj, min(bj + self.block_size, n))
                dist = self._distance_rows(rows, columns)
                self._cache_query_distances(rows, columns, dist)
                merge(rows, columns, dist, transposed=False)
                if bj != bi:
                    merge(columns, rows, dist, transposed=True)
        return best_idx.cpu(), row_max

    def _cache_query_distances(self, rows: slice, columns: slice, dist: torch.Tensor) -> None:
        """Keep block (rows, columns)'s query x gallery part: every such pair lies in the upper triangle."""
        if self.query_distances is None or rows.start >= self.num_query or columns.stop <= self.num_query:
            return
        q_end, g_start = min(rows.stop, self.num_query), max(columns.start, self.num_query)
        self.query_distances[rows.start:q_end, g_start - self.num_query:columns.stop - self.num_query] = \
            dist[:q_end - rows.start, g_start - columns.start:]

    def _expanded_sets(self, neighbours: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) pairs of every image's expanded k-reciprocal set, sorted, without duplicates."""
        n = self.num_all
        forward = neighbours[:, :min(self.k1 + 1, n)]
        half = neighbours[:, :min(int(np.around(self.k1 / 2)) + 1, n)]
        forward_recip = _reciprocal_mask(forward, max(1, (1 << 22) // forward.shape[1] ** 2))
        half_recip = _reciprocal_mask(half, max(1, (1 << 22) // half.shape[1] ** 2))
        half_size = half_recip.sum(1).double()
        chunk = max(1, (1 << 23) // (forward.shape[1] ** 2 * half.shape[1]))
        rows_out, cols_out = [], []
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            recip = forward_recip[rows]
            reciprocal_set = forward[rows].masked_fill(~recip, -1)  # R(i), -1 = not a member
            candidates = forward[rows]
            cand_half, cand_valid = half[candidates], half_recip[candidates]  # H(c): [b, k1+1, half]
            in_set = (cand_half[..., None] == reciprocal_set[:, None, None, :]).any(-1) & cand_valid
            accept = recip & (in_set.sum(-1).double() > 2 / 3 * half_size[candidates])
            members = torch.cat([reciprocal_set, cand_half.masked_fill(~(cand_valid & accept[..., None]), -1)
                                 .flatten(1)], dim=1)
            members = members.masked_fill(members < 0, n).sort(dim=1).values
            keep = members < n
            keep[:, 1:] &= members[:, 1:] != members[:, :-1]
            r, c = keep.nonzero(as_tuple=True)
            rows_out.append((r + start).numpy())
            cols_out.append(members[r, c].numpy())
        return np.concatenate(rows_out), np.concatenate(cols_out)

    def _scaled_pair_distances(self, rows: np.ndarray, cols: np.ndarray, neighbours: torch.Tensor) -> np.ndarray:
        """d(i, j) / row_max(i) for (row, column) pairs.

        Per block of rows, one matmul against the union of the block's columns, instead of gathering two
        feature vectors per pair. The blocks group rows by the smallest index in their neighbour list, so a
        block's rows are mostly neighbours of each other and share columns: the union stays small.
        """
        x, device = self.features, self.features.device
        out = np.empty(len(rows))
        order = np.argsort(neighbours.min(1).values.numpy(), kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        pair_position = position[rows]
        by_block = np.argsort(pair_position // _PAIR_ROWS, kind="stable")
        bounds = np.searchsorted(pair_position[by_block] // _PAIR_ROWS, np.arange(-(-self.num_all // _PAIR_ROWS) + 1))
        for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if lo == hi:
                continue
            pairs = by_block[lo:hi]
            block_rows = torch.from_numpy(order[block * _PAIR_ROWS:(block + 1) * _PAIR_ROWS]).to(device)
            block_cols = torch.from_numpy(cols[pairs]).to(device)
            union, column = torch.unique(block_cols, return_inverse=True)
            local = torch.from_numpy(pair_position[pairs] - block * _PAIR_ROWS).to(device)
            pair_rows = block_rows[local]
            dots = x.index_select(0, block_rows) @ x.index_select(0, union).T
            dist = self.sq_norms[pair_rows] + self.sq_norms[block_cols] - 2.0 * dots[local, column]
            out[pairs] = (dist / self.row_max[pair_rows]).double().cpu().numpy()
        return out

    def _build_v(self, neighbours: torch.Tensor) -> sp.csr_matrix:
        n = self.num_all
        rows, cols = self._expanded_sets(neighbours)
        scaled = self._scaled_pair_distances(rows, cols, neighbours)
        weight = np.exp(-scaled)
        weight /= np.bincount(rows, weights=weight, minlength=n)[rows]
        v = sp.csr_matrix((weight, (rows, cols)), shape=(n, n))
        if self.k2 != 1:
            k2 = min(self.k2, n)
            expand = sp.csr_matrix((np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2),
                                                              neighbours[:, :k2].reshape(-1).numpy())),
                                   shape=(n, n))
            v = (expand @ v).tocsr()
        v.sort_indices()
        return v

    # -- output ---------------------------------------------------------------------------------------
    def _min_overlap(self, rows: slice) -> np.ndarray:
        """[b, num_gallery] dense ``sum_l min(V(i, l), V(j, l))`` for query rows, by a sparse join on l."""
        num_gallery = self.num_all - self.num_query
        chunk = self.V[rows].tocoo()
        cols = self._gallery_columns
        starts = cols.indptr[chunk.col]
        counts = cols.indptr[chunk.col + 1] - starts
        entry = np.repeat(np.arange(len(counts)), counts)
        pos = np.arange(int(counts.sum())) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
        overlap = np.minimum(chunk.data[entry], cols.data[pos])
        flat = chunk.row[entry].astype(np.int64) * num_gallery + cols.indices[pos]
        b = rows.stop - rows.start
        return np.bincount(flat, weights=overlap, minlength=b * num_gallery).reshape(b, num_gallery)

    def query_rows(self, rows: slice) -> np.ndarray:
        """Re-ranked distances [b, num_gallery] (float32) of the queries ``rows``."""
        overlap = torch.from_numpy(self._min_overlap(rows))
        # (1 - m / (2 - m)) * (1 - lambda) + lambda * d / row_max, in place on [b, g] (fresh float64 temporaries
        # of that size cost more than the arithmetic), every rounding step as written
        final = torch.sub(2.0, overlap)
        torch.div(overlap, final, out=final)
        final = torch.sub(1.0, final, out=final).mul_(1.0 - self.lambda_value)
        if self.lambda_value > 0:
            dist = (self.query_distances[rows] if self.query_distances is not None
                    else self._distance_rows(rows, slice(self.num_query, None)))
            dist = torch.div(dist, self.row_max[rows, None]).cpu().double().mul_(self.lambda_value)
            final.add_(dist)
        return final.float().numpy()

    def iter_query_rows(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, distances) over all queries, ``chunk_size`` rows at a time."""
        for start in range(0, self.num_query, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, self.num_query))
            yield rows, self.query_rows(rows)


def re_ranking(q_feats, g_feats, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
               chunk_size: int | None = None, device=None, block_size: int = 2048) -> np.ndarray:
    """k-reciprocal re-ranked distances [num_query, num_gallery] (float32 numpy), Zhong et al. CVPR 2017.

    Same function as the authors' code on Euclidean features (module docstring); memory grows with
    N x k plus the dense output.  For evaluation without the dense output use
    ``reidlab.evaluation.evaluate(..., rerank=True)``.
    """
    reranker = KReciprocalReranker(q_feats, g_feats, k1=k1, k2=k2, lambda_value=lambda_value,
                                   chunk_size=chunk_size, device=device, block_size=block_size,
                                   keep_query_distances=True)
    cache = reranker.query_distances
    if cache is not None and cache.dtype == torch.float32 and cache.device.type == "cpu":
        out = cache.numpy()  # each chunk's rows are read, then overwritten by their output
    else:
        out = np.empty((reranker.num_query, reranker.num_all - reranker.num_query), dtype=np.float32)
    for rows, block in reranker.iter_query_rows():
        out[rows] = block
    return out

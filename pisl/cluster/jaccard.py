"""Jaccard distance from k-reciprocal encoding (Zhong et al. 2017), as the SpCL/PPLR/PISL
reference computes it for clustering, but on sparse matrices, with compiled loops over the
samples where scipy's sparse products were slower (expanded sets, query expansion, pair sums).
Only pairs whose encodings overlap get a stored distance; every other pair is at distance 1,
the largest possible.

Reference semantics kept exactly (``compute_jaccard_distance`` of pisl/utils/faiss_rerank.py in
taoxuefong/Diffusion-reid at 616e7c9, the same as PPLR's):
- the k-NN ranking has k1 columns, the sample itself first;
- N(i, k) = {j in R_i[:k+1] : i in R_j[:k+1]};
- a candidate c in N(i, k1) adds N(c, round(k1/2)) when more than 2/3 of it lies in N(i, k1);
- V_ij = softmax over the expanded set of -(2 - 2 f_i.f_j), then the mean of the V rows of the
  k2 nearest neighbours (self included);
- d_J(i, j) = 1 - m / (2 - m), m = sum_l min(V_il, V_jl), clamped at 0.
"""
import functools

import numba
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .knn import knn_self, squared_norms
from .pair_sums import pair_distances_above
from .threads import keeps_torch_threads


@numba.njit(parallel=True, cache=True, nogil=True)
def _reciprocal_lists(rank, k, k_half):
    """N(i, k) and N(i, k_half) of every row i, as lists in ranking order (-1 after their
    ends) with their lengths, from one read of each ranking that i's own holds."""
    n, width, half_width = rank.shape[0], min(k + 1, rank.shape[1]), min(k_half + 1, rank.shape[1])
    full, half = np.full((n, width), -1, dtype=np.int64), np.full((n, half_width), -1, dtype=np.int64)
    full_sizes, half_sizes = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        for p in range(width):
            j = rank[i, p]
            place = width  # where i stands in j's ranking (a loop without a break vectorises)
            for q in range(width):
                place = min(place, q if rank[j, q] == i else width)
            if place < width:
                full[i, full_sizes[i]] = j
                full_sizes[i] += 1
            if p < half_width and place < half_width:
                half[i, half_sizes[i]] = j
                half_sizes[i] += 1
    return full, full_sizes, half, half_sizes


def k_reciprocal_sets(rank, k):
    """Row i of the returned sparse 0/1 matrix (CSR, sorted indices) is the k-reciprocal
    neighbour set N(i, k)."""
    members, sizes = _reciprocal_lists(np.ascontiguousarray(rank, dtype=np.int64), k, k)[:2]
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    sets = sp.csr_matrix((np.ones(indptr[-1], np.float32), members[members >= 0], indptr), shape=(len(rank),) * 2)
    sets.sort_indices()
    return sets


@numba.njit(cache=True, nogil=True)
def _expanded_row(i, full, full_sizes, half, half_sizes, stamp, out):
    """Row i's expanded set into ``out`` (unsorted), its size returned. ``stamp`` (rows taken
    in ascending order) marks N(i, k1)'s members with 2 i + 2, for the overlaps, and the members
    added from accepted sets with 2 i + 1: below 2 i + 1, a row is not yet in i's set."""
    size = 0
    for p in range(full_sizes[i]):  # N(i, k1), marked for the overlaps
        j = full[i, p]
        stamp[j] = 2 * i + 2
        out[size] = j
        size += 1
    for p in range(full_sizes[i]):
        c = full[i, p]
        overlap = 0
        for q in range(half_sizes[c]):
            overlap += stamp[half[c, q]] == 2 * i + 2
        # float32, as the sparse formulation compares its float32 counts
        if np.float32(overlap) > np.float32(2.0 / 3.0) * np.float32(half_sizes[c]):
            for q in range(half_sizes[c]):
                j = half[c, q]
                if stamp[j] < 2 * i + 1:
                    stamp[j] = 2 * i + 1
                    out[size] = j
                    size += 1
    return size


@numba.njit(parallel=True, cache=True, nogil=True)
def _expanded_csr(full, full_sizes, half, half_sizes, chunk):
    """The expanded sets of every row as CSR (indptr, indices sorted), in two passes: their
    sizes, then their members; chunks of rows across threads, each with its own marks."""
    n = len(full_sizes)
    most = full.shape[1] * (1 + half.shape[1])
    num_chunks = (n + chunk - 1) // chunk
    sizes = np.zeros(n, dtype=np.int64)
    for c in numba.prange(num_chunks):
        stamp, out = np.zeros(n, dtype=np.int64), np.empty(most, dtype=np.int64)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            sizes[i] = _expanded_row(i, full, full_sizes, half, half_sizes, stamp, out)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(sizes)
    indices = np.empty(indptr[-1], dtype=np.int64)
    for c in numba.prange(num_chunks):
        stamp, out = np.zeros(n, dtype=np.int64), np.empty(most, dtype=np.int64)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            size = _expanded_row(i, full, full_sizes, half, half_sizes, stamp, out)
            indices[indptr[i]: indptr[i + 1]] = np.sort(out[:size])
    return indptr, indices


@keeps_torch_threads
def expanded_sets(rank, k1, chunk=4096):
    """Row i: N(i, k1) united with every N(c, round(k1/2)), c in N(i, k1), that overlaps it by
    more than two thirds; a sparse 0/1 matrix (CSR, sorted indices), compiled."""
    rank = np.ascontiguousarray(rank, dtype=np.int64)
    n = rank.shape[0]
    full, full_sizes, half, half_sizes = _reciprocal_lists(rank, k1, int(np.around(k1 / 2)))
    indptr, indices = _expanded_csr(full, full_sizes, half, half_sizes, chunk)
    return sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(n, n))


@numba.njit(parallel=True, cache=True, nogil=True)
def _distances_from_search(rows, cols, rank, knn_dist, sq_norms, out, found):
    """For each pair (rows[e], cols[e]) = (i, j): where j is among i's searched neighbours (at
    its first place p), out[e] = 2 - |f_i|^2 - |f_j|^2 + knn_dist[i, p]; else where i is among
    j's, 2 - |f_j|^2 - |f_i|^2 + knn_dist[j, p]; float32, left to right. ``found`` marks them."""
    two = np.float32(2)
    for e in numba.prange(rows.size):
        i, j = rows[e], cols[e]
        for a, b in ((i, j), (j, i)):
            hit = -1
            for p in range(rank.shape[1]):
                if rank[a, p] == b:
                    hit = p
                    break
            if hit >= 0:
                out[e] = two - sq_norms[a] - sq_norms[b] + knn_dist[a, hit]
                found[e] = True
                break


@keeps_torch_threads
def pair_distances(features, rows, cols, knn_result=None, chunk_size=1024):
    """2 - 2 f_i.f_j for each pair (rows[e], cols[e]), float32.

    With ``knn_result`` (squared distances, indices) from the search that built the ranking,
    pairs the search found (either way round; i's own row first) are read from it, since
    2 - 2 f_i.f_j = 2 - |f_i|^2 - |f_j|^2 + |f_i - f_j|^2 for any norms; gathering two
    feature rows per pair from memory is what costs the time at 2048 dimensions.
    """
    feats = torch.as_tensor(features).float()
    dist = np.empty(rows.size, dtype=np.float32)
    missing = np.arange(rows.size)
    if knn_result is not None:
        knn_dist, rank = knn_result
        found = np.zeros(rows.size, dtype=bool)
        _distances_from_search(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                               np.ascontiguousarray(rank, dtype=np.int64),
                               np.ascontiguousarray(knn_dist, dtype=np.float32), squared_norms(feats).numpy(),
                               dist, found)
        missing = np.flatnonzero(~found)
    for start in range(0, missing.size, chunk_size):
        m = missing[start: start + chunk_size]
        r, c = torch.as_tensor(rows[m]), torch.as_tensor(cols[m])
        # index_select copies the rows feats[r] would, faster; chunks this small stay in the cache
        dist[m] = (2 - 2 * (feats.index_select(0, r) * feats.index_select(0, c)).sum(1)).numpy()
    return dist


def encode(features, expanded, knn_result=None):
    """V: on each row's expanded set, softmax of -(2 - 2 cos) (float32, as the reference)."""
    expanded = expanded.tocsr()
    expanded.sort_indices()
    indptr, cols = expanded.indptr, expanded.indices
    rows = np.repeat(np.arange(expanded.shape[0]), np.diff(indptr))
    logits = -pair_distances(features, rows, cols, knn_result)
    # Softmax per row, shifted by the row's max logit for stability as F.softmax is.
    row_max = np.maximum.reduceat(logits, indptr[:-1]) if rows.size else logits
    weights = np.exp(logits - row_max[rows])
    weights /= np.add.reduceat(weights, indptr[:-1])[rows]
    return sp.csr_matrix((weights.astype(np.float32), cols, indptr), shape=expanded.shape)


@numba.njit(cache=True, nogil=True)
def _mean_row(i, neighbours, weight, indptr, indices, data, acc, seen, touched):
    """Row i of the mean of the rows ``neighbours[i]`` (ascending) of a CSR matrix, summed in
    float64 in that order from 0.0 (``weight`` x each value): its nonzero columns, sorted, at
    the front of ``touched`` (their count returned), their sums left in ``acc``."""
    found = 0
    for c in neighbours[i]:
        for e in range(indptr[c], indptr[c + 1]):
            col = indices[e]
            if not seen[col]:
                seen[col] = True
                touched[found] = col
                found += 1
            acc[col] += weight * np.float64(data[e])
    kept = 0
    for t in range(found):
        col = touched[t]
        seen[col] = False
        if acc[col] != 0.0:  # as scipy's sparse product, which stores only nonzero sums
            touched[kept] = col
            kept += 1
    touched[:kept].sort()
    return kept


@numba.njit(parallel=True, cache=True, nogil=True)
def _mean_rows(neighbours, weight, indptr, indices, data, chunk):
    """Every row's ``_mean_row`` as CSR (indptr, indices, float32 values), in two passes: the
    rows' sizes, then their entries; chunks of rows across threads, each with its own
    accumulator."""
    n = len(neighbours)
    num_chunks = (n + chunk - 1) // chunk
    sizes = np.zeros(n, dtype=np.int64)
    for c in numba.prange(num_chunks):
        acc, seen, touched = np.zeros(n, np.float64), np.zeros(n, np.bool_), np.empty(n, np.int64)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            sizes[i] = _mean_row(i, neighbours, weight, indptr, indices, data, acc, seen, touched)
            for col in touched[:sizes[i]]:
                acc[col] = 0.0
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    out_ptr[1:] = np.cumsum(sizes)
    out_cols = np.empty(out_ptr[-1], dtype=np.int64)
    out_data = np.empty(out_ptr[-1], dtype=np.float32)
    for c in numba.prange(num_chunks):
        acc, seen, touched = np.zeros(n, np.float64), np.zeros(n, np.bool_), np.empty(n, np.int64)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            kept = _mean_row(i, neighbours, weight, indptr, indices, data, acc, seen, touched)
            for t in range(kept):
                col = touched[t]
                out_cols[out_ptr[i] + t] = col
                out_data[out_ptr[i] + t] = np.float32(acc[col])
                acc[col] = 0.0
    return out_ptr, out_cols, out_data


@keeps_torch_threads
def query_expansion(V, rank, k2, chunk=4096):
    """Replace each row of V (CSR) by the mean of the rows of its k2 nearest neighbours: the
    float64 sums of scipy's sparse product (1/k2 x each value, neighbours in ascending order),
    as float32, compiled."""
    if k2 <= 1:
        return V
    V = V.tocsr()
    neighbours = np.sort(np.asarray(rank)[:, :k2], axis=1).astype(np.int64)
    indptr, indices, data = _mean_rows(neighbours, 1.0 / neighbours.shape[1], V.indptr.astype(np.int64),
                                       V.indices.astype(np.int64), V.data, chunk)
    return sp.csr_matrix((data, indices, indptr), shape=V.shape)


# Bytes of the pair sums per meeting of two entries, at most: a meeting adds to one pair's sum,
# and each pair kept costs its row, column (int64) and distance (float32) in the block's output
# (``pair_distances_above``; besides, its scratch output takes 96 bytes a row of the block and
# its accumulators 17 bytes per image per thread).
BYTES_PER_MEETING = 20


class MemoryBudgetError(MemoryError):
    """A step would need more memory than its configured budget (the message names the key)."""


@numba.njit(cache=True, nogil=True)
def _column_major(indptr, indices, data, col_begin):
    """The entries of a CSR matrix (``indptr``, ``indices``, ``data``; N rows) in column-major
    order by a counting sort from where each column begins: for each place there, the entry's
    row, value and key column x N + row; and for each row-major entry, its place. Rows come in
    ascending order within a column, as the row-major entries are read in order."""
    n, nnz = len(indptr) - 1, len(indices)
    col_rows = np.empty(nnz, dtype=np.int64)
    col_data = np.empty(nnz, dtype=data.dtype)
    place = np.empty(nnz, dtype=np.int64)
    col_keys = np.empty(nnz, dtype=np.int64)
    next_place = col_begin.astype(np.int64).copy()
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            col = indices[e]
            q = next_place[col]
            next_place[col] = q + 1
            col_rows[q], col_data[q], place[e], col_keys[q] = i, data[e], q, col * n + i
    return col_rows, col_data, place, col_keys


class ColumnMajor:
    """The entries of a CSR matrix V (N x N) in column-major order, rows ascending within each
    column, with where each row-major entry lands there: what the pair sums walk."""

    def __init__(self, V):
        self.V = V
        n = V.shape[0]
        self.rows = np.repeat(np.arange(n), np.diff(V.indptr))
        per_column = np.bincount(V.indices, minlength=V.shape[1])
        self.col_end = np.cumsum(per_column)
        self.col_begin = self.col_end - per_column
        self.col_rows, self.col_data, self.place, self.col_keys = _column_major(
            V.indptr.astype(np.int64), V.indices.astype(np.int64), V.data, self.col_begin)

    @functools.cached_property
    def row_order(self):
        """The rows in reverse Cuthill-McKee order of V's pattern: consecutive rows share
        columns, so the pair sums find what they read in the cache (row order has no locality
        where the images are shuffled)."""
        return reverse_cuthill_mckee((self.V + self.V.T).tocsr(), symmetric_mode=True).astype(np.int64)

    def meetings(self, min_col, entries=slice(None)):
        """For each row-major entry (i, l) of ``entries`` (a slice of V's entries): where the
        entries of column l that it meets begin in column-major order (from row max(i, min_col)
        on), and how many there are."""
        n = self.V.shape[0]
        cols = self.V.indices[entries]
        begin = self.place[entries]  # rows from i on: where (i, l) itself lands in its column
        if min_col > 0:  # and from min_col on: a search in the column-major keys
            begin = np.maximum(begin, np.searchsorted(self.col_keys, cols.astype(np.int64) * n + min_col))
        return begin, np.maximum(self.col_end[cols] - begin, 0)


def encoding_bytes(V, columns):
    """Bytes that the Jaccard step holds throughout: the encoding V (CSR) and its column-major
    copy (``ColumnMajor``), about 45 bytes per entry."""
    arrays = (V.data, V.indices, V.indptr, columns.rows, columns.col_rows, columns.col_data, columns.col_begin,
              columns.col_end, columns.place, columns.col_keys)
    return sum(a.nbytes for a in arrays)


def blocks_budget(V, columns, budget_bytes, budget_key):
    """What ``budget_bytes`` leaves for the blocks of pair sums once the encodings are held
    (``encoding_bytes``), so that the step's whole peak follows the budget. MemoryBudgetError
    naming ``budget_key`` where the encodings alone fill it (they grow with N times each
    image's neighbours; the blocks grow with how many images share them)."""
    held = encoding_bytes(V, columns)
    if held >= budget_bytes:
        raise MemoryBudgetError(
            f"the Jaccard encodings of {V.shape[0]} images take {held / 2 ** 20:.1f} MiB, more than "
            f"{budget_key} ({budget_bytes / 2 ** 20:.1f} MiB), which must also hold the pair sums. Raise "
            f"{budget_key} if the machine has the memory.")
    return budget_bytes - held


def row_blocks(meetings_per_row, start, budget_bytes, budget_key):
    """Consecutive blocks [a, b) of the rows start, start + 1, ... (``meetings_per_row`` holds
    theirs) whose pair sums each fit ``budget_bytes``. A row that cannot fit alone raises
    MemoryBudgetError naming ``budget_key``, before anything is allocated for it."""
    cost = np.asarray(meetings_per_row, dtype=np.float64) * BYTES_PER_MEETING
    stop = start + len(cost)
    worst = int(np.argmax(cost)) if len(cost) else 0
    if len(cost) and cost[worst] > budget_bytes:
        raise MemoryBudgetError(
            f"the Jaccard distance needs {cost[worst] / 2 ** 20:.1f} MiB for row {start + worst} alone "
            f"({int(meetings_per_row[worst])} meetings of k-reciprocal encodings: many images share its "
            f"neighbours, e.g. near-duplicates), more than {budget_key} ({budget_bytes / 2 ** 20:.1f} MiB). Raise "
            f"{budget_key} if the machine has the memory.")
    a = start
    while a < stop:
        # The longest run of rows from a whose summed cost fits (at least one row).
        total = np.cumsum(cost[a - start: stop - start])
        b = a + max(1, int(np.searchsorted(total, budget_bytes, side="right")))
        yield a, b
        a = b


def jaccard_rows(V, start, stop, min_col=0, max_distance=1.0, budget_bytes=2 ** 32, budget_key="CLUSTER.MEMORY_GB",
                 columns=None):
    """d_J(i, j) for the rows i in [start, stop) and the columns j >= max(i, min_col) whose
    encodings share a column and whose distance is at most ``max_distance``: yields
    (rows, columns, distances) per block of rows.

    m_ij = sum_l min(V_il, V_jl): each nonzero V_il meets the entries V_jl of its column l
    with j in range, and the minima are summed per (i, j) (the reference's per-row
    ``temp_min``; compiled, ``pair_distances_above``, the rows taken in ``row_order``). The
    rows go in blocks whose meetings fit ``budget_bytes``
    (``row_blocks``), so the peak memory follows the budget, not how the data is spread
    (images that share many neighbours make long columns). ``columns`` is V's
    ``ColumnMajor`` when the caller already has it.
    """
    cols = columns or ColumnMajor(V)
    first = V.indptr[start]  # only these rows' entries: a caller may ask for a few rows at a time
    begin, counts = cols.meetings(min_col, slice(first, V.indptr[stop]))
    per_row = np.bincount(cols.rows[first: V.indptr[stop]] - start, weights=counts, minlength=stop - start)
    # d <= max_distance  <=>  m >= 2 (1 - max_distance) / (2 - max_distance); the slack keeps
    # borderline pairs for the exact test on d below.
    min_overlap = 2 * (1 - max_distance) / (2 - max_distance) - 1e-6 if max_distance < 1 else 0.0
    for a, b in row_blocks(per_row, start, budget_bytes, budget_key):
        order = cols.row_order[(cols.row_order >= a) & (cols.row_order < b)]
        yield pair_distances_above(V, cols, a, b, min_col, min_overlap, max_distance, order=order)


def jaccard_from_encoding(V, max_distance=1.0, budget_bytes=2 ** 32, budget_key="CLUSTER.MEMORY_GB"):
    """d_J for every pair whose encodings share a column and whose distance is at most
    ``max_distance``, as a symmetric sparse CSR matrix, within ``budget_bytes`` for the
    encodings and the blocks of pair sums together (``blocks_budget``). m_ij is symmetric, so
    only j >= i is computed (``jaccard_rows``) and mirrored; time and memory grow with the
    number of entry meetings, about N x (nonzeros per row) x (per column) / 2, not with N^2."""
    V = V.tocsr()
    V.sort_indices()
    n = V.shape[0]
    columns = ColumnMajor(V)
    budget_bytes = blocks_budget(V, columns, budget_bytes, budget_key)
    blocks = list(jaccard_rows(V, 0, n, 0, max_distance, budget_bytes, budget_key, columns))
    r, c, d = (np.concatenate(x) for x in zip(*blocks)) if blocks else (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),)
    off = r != c
    return sp.csr_matrix((np.concatenate([d, d[off]]), (np.concatenate([r, c[off]]), np.concatenate([c, r[off]]))),
                         shape=(n, n))


def jaccard_encoding(features, k1=30, k2=6, knn_backend="auto", knn_result=None):
    """The query-expanded k-reciprocal encoding V (sparse N x N) of L2-normalised features."""
    if knn_result is None:
        knn_result = knn_self(features, k1, backend=knn_backend)
    rank = np.asarray(knn_result[1], dtype=np.int64)
    V = encode(features, expanded_sets(rank, k1), knn_result)
    V = query_expansion(V, rank, k2).tocsr()
    V.sort_indices()
    return V


def compute_jaccard_distance(features, k1=30, k2=6, knn_backend="auto", knn_result=None, max_distance=1.0,
                             memory_gb=4.0):
    """Sparse Jaccard distance of L2-normalised ``features`` (N x D). Pairs that are not
    stored are at distance 1, or, with ``max_distance`` < 1 (all DBSCAN needs for its eps),
    farther than ``max_distance``. ``knn_result`` (squared distances, indices; N x k1, nearest
    first) from :func:`knn_self` may be given to reuse a search. The pair sums run in blocks
    within ``memory_gb`` (``CLUSTER.MEMORY_GB``; MemoryBudgetError where one row exceeds it)."""
    V = jaccard_encoding(features, k1, k2, knn_backend, knn_result)
    return jaccard_from_encoding(V, max_distance, budget_bytes=memory_gb * 2 ** 30)

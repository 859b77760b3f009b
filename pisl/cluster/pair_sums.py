"""The Jaccard distance's pair sums, compiled: m_ij = sum_l min(V_il, V_jl) for a block of rows
i and every row j >= max(i, min_col) that shares a column with i, then
d_J = max(1 - m / (2 - m), 0) as float32, kept where m is above ``min_overlap`` and d_J is at
most ``max_distance``.

Each row i is summed in a dense float64 accumulator (Gustavson's row-by-row sparse product):
its entries l ascending, each meeting the entries of column l from row max(i, min_col) on.
Every m_ij therefore adds its terms in the order of l, from 0.0, in float64, which is the
order of ``np.bincount`` over the meetings in row-major order: the sums are the same to the
bit as the array formulation's, without the meetings' keys, their sort or their memory.
Rows are independent, so the threads split them without changing any result.
"""
import numba
import numpy as np

from .threads import keeps_torch_threads


@numba.njit(cache=True, nogil=True)
def _distance(m):
    """d_J from m_ij in float64, as float32."""
    return np.float32(max(1.0 - m / (2.0 - m), 0.0))


@numba.njit(cache=True, nogil=True)
def _rows(rows, indptr, indices, data, place, col_begin, col_end, col_rows, col_data, min_col, min_overlap,
          max_distance, acc, seen, touched, start, counts, where, out_cols, out_dist, cursor, limit):
    """Sums the ``rows`` one after the other: each row i's kept pairs' count into
    ``counts[i - start]``, and while they fit below ``limit``, its pairs (columns ascending)
    into ``out_cols``/``out_dist`` from ``cursor`` on, with where they begin into
    ``where[i - start]``. Returns whether every row's pairs fitted."""
    fitted = True
    for i in rows:
        found = 0
        for p in range(indptr[i], indptr[i + 1]):
            col = indices[p]
            v = data[p]
            if min_col <= i:  # the column's rows from i on begin where (i, col) itself lies
                q0 = place[p]
            else:
                q0 = col_begin[col] + np.searchsorted(col_rows[col_begin[col]: col_end[col]], min_col)
            for q in range(q0, col_end[col]):
                j = col_rows[q]
                if not seen[j]:
                    seen[j] = True
                    touched[found] = j
                    found += 1
                w = col_data[q]
                acc[j] += np.float64(v if v < w else w)
        # Reset the accumulator; keep the pairs within range at the front of ``touched`` (only
        # they are sorted: a row meets thousands of rows and keeps a few).
        kept = 0
        for t in range(found):
            j = touched[t]
            seen[j] = False
            m = acc[j]
            if m > min_overlap and _distance(m) <= max_distance:
                touched[kept] = j
                kept += 1
            else:
                acc[j] = 0.0
        row = touched[:kept]
        row.sort()
        fits = fitted and cursor + kept <= limit
        for t in range(kept):
            j = row[t]
            if fits:
                out_cols[cursor + t] = j
                out_dist[cursor + t] = _distance(acc[j])
            acc[j] = 0.0
        counts[i - start] = kept
        if fits:
            where[i - start] = cursor
            cursor += kept
        fitted = fits
    return fitted


@numba.njit(parallel=True, cache=True, nogil=True)
def _sum_chunks(order, start, n, chunk, indptr, indices, data, place, col_begin, col_end, col_rows, col_data, min_col,
                min_overlap, max_distance, counts, where, out_cols, out_dist, capacity):
    """The rows in ``order`` (a permutation of [start, start + len(order))), in chunks of
    ``chunk`` rows across threads, each with accumulators of its own and ``capacity`` pairs of
    the output from ``chunk index x capacity`` on. Returns which chunks overflowed theirs."""
    num_chunks = (len(order) + chunk - 1) // chunk
    overflowed = np.zeros(num_chunks, np.bool_)
    for c in numba.prange(num_chunks):
        acc = np.zeros(n, np.float64)
        seen = np.zeros(n, np.bool_)
        touched = np.empty(n, np.int64)
        overflowed[c] = not _rows(order[c * chunk: (c + 1) * chunk], indptr, indices, data, place, col_begin, col_end,
                                  col_rows, col_data, min_col, min_overlap, max_distance, acc, seen, touched, start,
                                  counts, where, out_cols, out_dist, c * capacity, (c + 1) * capacity)
    return overflowed


@numba.njit(parallel=True, cache=True, nogil=True)
def _sum_into_place(rows, start, n, chunk, indptr, indices, data, place, col_begin, col_end, col_rows, col_data,
                    min_col, min_overlap, max_distance, counts, out_ptr, out_cols, out_dist):
    """The ``rows`` summed again, in chunks across threads, each row's pairs written at
    ``out_ptr[i - start]`` (their counts are known: they fit exactly)."""
    where = np.zeros(counts.size, np.int64)
    for c in numba.prange((len(rows) + chunk - 1) // chunk):
        acc = np.zeros(n, np.float64)
        seen = np.zeros(n, np.bool_)
        touched = np.empty(n, np.int64)
        for t in range(c * chunk, min((c + 1) * chunk, len(rows))):
            r = rows[t] - start
            _rows(rows[t: t + 1], indptr, indices, data, place, col_begin, col_end, col_rows, col_data, min_col,
                  min_overlap, max_distance, acc, seen, touched, start, counts, where, out_cols, out_dist, out_ptr[r],
                  out_ptr[r] + counts[r])


@numba.njit(cache=True, nogil=True)
def _gather(counts, where, skip, scratch_cols, scratch_dist, out_cols, out_dist):
    """Each row's pairs, from where the pass left them, in row order (rows in ``skip`` are
    left to ``_sum_into_place``)."""
    cursor = 0
    for r in range(counts.size):
        if not skip[r]:
            out_cols[cursor: cursor + counts[r]] = scratch_cols[where[r]: where[r] + counts[r]]
            out_dist[cursor: cursor + counts[r]] = scratch_dist[where[r]: where[r] + counts[r]]
        cursor += counts[r]


@keeps_torch_threads
def pair_distances_above(V, columns, start, stop, min_col, min_overlap, max_distance, order=None, chunk=1024,
                         pairs_per_row=8):
    """(rows, columns, d_J) of the pairs of rows [start, stop) of the encoding ``V`` (CSR,
    sorted indices; ``columns`` is its ``ColumnMajor``) with columns j >= max(i, min_col),
    m_ij above ``min_overlap`` and d_J at most ``max_distance``: rows ascending, then columns.
    ``order`` (default: ascending) is the order in which the rows are summed, which changes
    the time only.

    One pass sums every row and leaves its pairs in a scratch output of ``pairs_per_row`` a
    row (a clustering keeps about 4 within its eps); the chunks of rows that keep more are
    summed again, once their counts say where their pairs go."""
    n = V.shape[0]
    args = (V.indptr, V.indices, V.data, columns.place, columns.col_begin, columns.col_end, columns.col_rows,
            columns.col_data, min_col, float(min_overlap), np.float32(max_distance))
    order = np.arange(start, stop) if order is None else np.ascontiguousarray(order, dtype=np.int64)
    counts = np.zeros(stop - start, np.int64)
    where = np.zeros(stop - start, np.int64)
    capacity = chunk * pairs_per_row
    num_chunks = (len(order) + chunk - 1) // chunk
    scratch_cols = np.empty(num_chunks * capacity, np.int64)
    scratch_dist = np.empty(num_chunks * capacity, np.float32)
    overflowed = _sum_chunks(order, start, n, chunk, *args, counts, where, scratch_cols, scratch_dist, capacity)
    out_cols = np.empty(int(counts.sum()), np.int64)
    out_dist = np.empty(out_cols.size, np.float32)
    redo = np.zeros(stop - start, np.bool_)
    for c in np.flatnonzero(overflowed):
        redo[order[c * chunk: (c + 1) * chunk] - start] = True
    _gather(counts, where, redo, scratch_cols, scratch_dist, out_cols, out_dist)
    if redo.any():
        out_ptr = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        _sum_into_place(np.flatnonzero(redo) + start, start, n, chunk, *args, counts, out_ptr, out_cols, out_dist)
    return np.repeat(np.arange(start, stop), counts), out_cols, out_dist

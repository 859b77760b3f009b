"""The k smallest distances of every row, kept while a search walks its blocks of dot products:
a max-heap per row (its largest kept distance on top), compiled with numba.

A block holds the dot products f_i . f_j of a run of rows i with a run of rows j (float32, or
int32 for 8-bit codes); the kernels turn each into the float32 squared distance
|f_i|^2 + |f_j|^2 - 2 f_i . f_j as they read it, in the order of ``knn_torch``'s formula (for
codes, integers below 2^24: exact in float32). A search that compares every pair offers each
heap about N distances, of which only a few hundred enter it. Most of the time therefore goes
into comparing distances with the heap's top, which these kernels do a run of 64 at a time (a
count that vectorises) before they look at single distances: much faster than comparing one by
one.
"""
import numba
import numpy as np

_RUN = 64  # distances compared at once with a heap's top: a loop over a slice of this many vectorises
_TILES = 4  # a block offered both ways is cut in this many runs of rows and of columns (``_add_both_ways``)


@numba.njit(nogil=True, cache=True)
def _replace_top(dist, index, d, i):
    """Put (d, i) in place of the top of the max-heap (dist, index) and sift it down."""
    k = dist.size
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and dist[child + 1] > dist[child]:
            child += 1
        if dist[child] <= d:
            break
        dist[pos], index[pos] = dist[child], index[child]
        pos = child
    dist[pos], index[pos] = d, i


@numba.njit(nogil=True, cache=True)
def _distance(row_norm, col_norm, dot):
    """|f_i|^2 + |f_j|^2 - 2 f_i . f_j in float32 (the norms are float32; dot + dot is 2 x dot
    in its own type, without a detour through float64)."""
    return row_norm + col_norm - np.float32(dot + dot)


@numba.njit(parallel=True, nogil=True, cache=True)
def _add_to_rows(dist, index, dots, row_norms, col_norms, row0, col0):
    """dots[r, c] = f_(row0 + r) . f_(col0 + c): offer each distance to row r's heap."""
    rows, cols = dots.shape
    for r in numba.prange(rows):
        heap_dist, heap_index = dist[row0 + r], index[row0 + r]
        row_norm = row_norms[r]
        for c0 in range(0, cols, _RUN):
            # Slices, not dots[r, c] over a range: numba vectorises a loop over a slice.
            run_dots, run_norms = dots[r, c0: c0 + _RUN], col_norms[c0: c0 + _RUN]
            top = heap_dist[0]
            below = 0
            for c in range(run_dots.size):
                below += _distance(row_norm, run_norms[c], run_dots[c]) < top
            if below:
                for c in range(run_dots.size):
                    d = _distance(row_norm, run_norms[c], run_dots[c])
                    if d < heap_dist[0]:
                        _replace_top(heap_dist, heap_index, d, col0 + c0 + c)


@numba.njit(nogil=True, cache=True)
def _add_tile(dist, index, dots, row_norms, col_norms, row0, col0, rows, cols):
    """The tile ``rows`` x ``cols`` (ranges) of a block offered to the heaps of its rows and of
    its columns in one read: each distance is compared with its row's top and its column's."""
    col_tops = np.empty(len(cols), np.float32)
    for c in cols:
        col_tops[c - cols.start] = dist[col0 + c, 0]
    for r in rows:
        heap_dist, heap_index = dist[row0 + r], index[row0 + r]
        row_norm = row_norms[r]
        for c0 in range(cols.start, cols.stop, _RUN):
            c1 = min(c0 + _RUN, cols.stop)
            run_dots, run_norms = dots[r, c0: c1], col_norms[c0: c1]
            run_tops = col_tops[c0 - cols.start: c1 - cols.start]
            top = heap_dist[0]
            below = 0
            for c in range(run_dots.size):
                d = _distance(row_norm, run_norms[c], run_dots[c])
                below += (d < top) | (d < run_tops[c])
            if below:
                for c in range(run_dots.size):
                    d = _distance(row_norm, run_norms[c], run_dots[c])
                    if d < heap_dist[0]:
                        _replace_top(heap_dist, heap_index, d, col0 + c0 + c)
                    if d < run_tops[c]:
                        j = col0 + c0 + c
                        _replace_top(dist[j], index[j], d, row0 + r)
                        run_tops[c] = dist[j, 0]


@numba.njit(parallel=True, nogil=True, cache=True)
def _add_both_ways(dist, index, dots, row_norms, col_norms, row0, col0):
    """A block whose rows and columns are different samples, offered to the heaps of both in
    one read (``_add_tile``): cut in _TILES x _TILES tiles, taken in _TILES rounds in which tile
    (t, (t + round) mod _TILES) goes to one thread, so that no two threads touch one heap; every
    heap gets its distances in the same order whatever the number of threads."""
    rows, cols = dots.shape
    row_step, col_step = -(-rows // _TILES), -(-cols // _TILES)
    for round_ in range(_TILES):
        for t in numba.prange(_TILES):
            u = (t + round_) % _TILES
            _add_tile(dist, index, dots, row_norms, col_norms, row0, col0,
                      range(t * row_step, min(rows, (t + 1) * row_step)), range(u * col_step, min(cols, (u + 1) * col_step)))


class RowHeaps:
    """The k smallest distances offered to each of n rows, with the rows they lead to."""

    def __init__(self, n, k):
        self.dist = np.full((n, k), np.inf, dtype=np.float32)
        self.index = np.full((n, k), -1, dtype=np.int64)

    def add(self, dots, row_norms, col_norms, row0, col0, both_ways=False):
        """Offer the squared distances of a block of dot products (CPU tensors or arrays):
        dots[r, c] = f_(row0 + r) . f_(col0 + c), with the squared norms of those rows
        (``row_norms``) and columns (``col_norms``), to the heaps of its rows, and with
        ``both_ways`` to those of its columns too (a symmetric search)."""
        dots = np.ascontiguousarray(np.asarray(dots))
        if dots.dtype not in (np.float32, np.int32):
            dots = dots.astype(np.float32)
        row_norms = np.ascontiguousarray(np.asarray(row_norms), dtype=np.float32)
        col_norms = np.ascontiguousarray(np.asarray(col_norms), dtype=np.float32)
        if both_ways:
            _add_both_ways(self.dist, self.index, dots, row_norms, col_norms, row0, col0)
        else:
            _add_to_rows(self.dist, self.index, dots, row_norms, col_norms, row0, col0)

    def result(self):
        """(distances, indices), each n x k, nearest first."""
        order = np.argsort(self.dist, axis=1, kind="stable")
        return np.take_along_axis(self.dist, order, 1), np.take_along_axis(self.index, order, 1)

"""The k smallest distances of every row, kept while a search walks its distance blocks: a
max-heap per row (its largest kept distance on top), compiled with numba.

A search that compares every pair offers each heap about N distances, of which only a few
hundred enter it. Most of the time therefore goes into comparing distances with the heap's top,
which these kernels do a run of 64 at a time (a count that vectorises) before they look at
single distances: much faster than comparing one by one.
"""
import numba
import numpy as np

_RUN = 64  # distances compared at once with a heap's top: a loop over a slice of this many vectorises


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


@numba.njit(parallel=True, nogil=True, cache=True)
def _add_to_rows(dist, index, block, row0, col0):
    """block[r, c] is the distance from row row0 + r to row col0 + c: offer each to row r's heap."""
    rows, cols = block.shape
    for r in numba.prange(rows):
        heap_dist, heap_index = dist[row0 + r], index[row0 + r]
        for c0 in range(0, cols, _RUN):
            run = block[r, c0: c0 + _RUN]
            top = heap_dist[0]
            below = 0
            for c in range(run.size):
                below += run[c] < top
            if below:
                for c in range(run.size):
                    if run[c] < heap_dist[0]:
                        _replace_top(heap_dist, heap_index, run[c], col0 + c0 + c)


@numba.njit(parallel=True, nogil=True, cache=True)
def _add_to_columns(dist, index, block, row0, col0):
    """The same block offered to the heaps of its columns (rows col0 + c), read row by row:
    each thread owns a run of columns, so no two threads touch one heap."""
    rows, cols = block.shape
    for run_start in numba.prange((cols + _RUN - 1) // _RUN):
        c0 = run_start * _RUN
        width = min(_RUN, cols - c0)
        tops = np.empty(width, np.float32)
        for c in range(width):
            tops[c] = dist[col0 + c0 + c, 0]
        for r in range(rows):
            run = block[r, c0: c0 + width]
            below = 0
            for c in range(width):
                below += run[c] < tops[c]
            if below:
                for c in range(width):
                    if run[c] < tops[c]:
                        _replace_top(dist[col0 + c0 + c], index[col0 + c0 + c], run[c], row0 + r)
                        tops[c] = dist[col0 + c0 + c, 0]


class RowHeaps:
    """The k smallest distances offered to each of n rows, with the rows they lead to."""

    def __init__(self, n, k):
        self.dist = np.full((n, k), np.inf, dtype=np.float32)
        self.index = np.full((n, k), -1, dtype=np.int64)

    def add(self, block, row0, col0, both_ways=False):
        """Offer block[r, c] (a CPU tensor or array), the distance between rows row0 + r and
        col0 + c, to the heaps of its rows, and with ``both_ways`` to those of its columns too
        (a symmetric search)."""
        block = np.ascontiguousarray(np.asarray(block), dtype=np.float32)
        _add_to_rows(self.dist, self.index, block, row0, col0)
        if both_ways:
            _add_to_columns(self.dist, self.index, block, row0, col0)

    def result(self):
        """(distances, indices), each n x k, nearest first."""
        order = np.argsort(self.dist, axis=1, kind="stable")
        return np.take_along_axis(self.dist, order, 1), np.take_along_axis(self.index, order, 1)

"""k-reciprocal re-ranking (Zhong et al. 2017) of query-gallery distances, with the sparse
Jaccard distance that clustering uses (on query + gallery together), computed for the query
rows that the ranking asks for, a block at a time, within a memory budget."""
import ctypes
import ctypes.util

import numpy as np
import torch

from ..cluster.jaccard import ColumnMajor, blocks_budget, jaccard_encoding, jaccard_rows
from .metrics import pairwise_distance


def _glibc_malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere. glibc keeps freed blocks of up to 32 MB in
    its heap for reuse; the blocks of re-ranking are of that size and of many sizes, so the
    heap grew far past the memory budget on hub-heavy images. Trimming after each block gives
    the memory back (``benchmarks/bench_eval_scale.py --rerank --features hubs`` measures it)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


# Bytes per query-gallery pair of a block of rows while it is re-ranked and ranked: its
# Jaccard, original and combined distances (float32) and the ranking's sort and running counts
# (about 40 bytes, pisl.evaluation.metrics.evaluate_rank).
BYTES_PER_RANKED_PAIR = 64


class ReRankedDistances:
    """(1 - lam) * Jaccard + lam * original squared distance, query x gallery, computed when
    rows are read: ``distances[a:b]`` is the b - a queries' rows (a NumPy array). The
    k-reciprocal encodings of query + gallery are built once; each block of query rows then
    costs only its own pair sums. ``memory_gb`` (``TEST.RERANK.MEMORY_GB``) holds the encodings
    (``blocks_budget``), and what they leave is shared: half for the pair sums
    (``MemoryBudgetError``, naming the key, where one query row alone exceeds it), half for the
    blocks of ``rows_per_block`` rows that the ranking reads."""

    def __init__(self, query_feats, gallery_feats, k1=20, k2=6, lam=0.3, memory_gb=4.0, metric="euclidean"):
        self.query, self.gallery = query_feats.float(), gallery_feats.float()
        self.num_query, self.lam, self.metric = len(query_feats), lam, metric
        self.V = jaccard_encoding(torch.cat([self.query, self.gallery]), k1, k2)
        self.columns = ColumnMajor(self.V)
        self.budget_bytes = blocks_budget(self.V, self.columns, memory_gb * 2 ** 30, "TEST.RERANK.MEMORY_GB") / 2
        self.rows_per_block = max(1, int(self.budget_bytes // (len(gallery_feats) * BYTES_PER_RANKED_PAIR)))

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("ReRankedDistances gives blocks of consecutive query rows: index it with a slice")
        start, stop, _ = rows.indices(self.num_query)
        nq = self.num_query
        jaccard = np.ones((stop - start, len(self.gallery)), dtype=np.float32)  # pairs not stored are at 1
        for r, c, d in jaccard_rows(self.V, start, stop, min_col=nq, budget_bytes=self.budget_bytes,
                                    budget_key="TEST.RERANK.MEMORY_GB", columns=self.columns):
            jaccard[r - start, c - nq] = d
        original = pairwise_distance(self.query[start:stop], self.gallery, self.metric).numpy()
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)  # the block's pair sums are freed: hand their memory back
        return (1 - self.lam) * jaccard + self.lam * original


def re_ranking(query_feats, gallery_feats, k1=20, k2=6, lam=0.3, memory_gb=4.0):
    """The whole re-ranked query x gallery array (for small sets; the evaluator reads
    ``ReRankedDistances`` a block at a time instead)."""
    return ReRankedDistances(query_feats, gallery_feats, k1, k2, lam, memory_gb)[:]

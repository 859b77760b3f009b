"""Jaccard distance from k-reciprocal encoding (Zhong et al. 2017), as the SpCL/PPLR/PISL
reference computes it for clustering, but on sparse matrices and without Python loops over
samples. Only pairs whose encodings overlap get a stored distance; every other pair is at
distance 1, the largest possible.

Reference semantics kept exactly (see shared/spec/reference.md 3.3):
- the k-NN ranking has k1 columns, the sample itself first;
- N(i, k) = {j in R_i[:k+1] : i in R_j[:k+1]};
- a candidate c in N(i, k1) adds N(c, round(k1/2)) when more than 2/3 of it lies in N(i, k1);
- V_ij = softmax over the expanded set of -(2 - 2 f_i.f_j), then the mean of the V rows of the
  k2 nearest neighbours (self included);
- d_J(i, j) = 1 - m / (2 - m), m = sum_l min(V_il, V_jl), clamped at 0.
"""
import numpy as np
import scipy.sparse as sp
import torch

from .knn import knn


def _rank_indicator(rank, k):
    """Sparse boolean N x N: row i marks the first min(k + 1, columns) entries of its ranking."""
    cols = rank[:, : k + 1]
    n = rank.shape[0]
    rows = np.repeat(np.arange(n), cols.shape[1])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols.ravel())), shape=(n, n))


def k_reciprocal_sets(rank, k):
    """Row i of the returned sparse 0/1 matrix is the k-reciprocal neighbour set N(i, k)."""
    forward = _rank_indicator(rank, k)
    return forward.multiply(forward.T).tocsr()


def expanded_sets(rank, k1):
    """Row i: N(i, k1) united with every N(c, round(k1/2)), c in N(i, k1), that overlaps it by
    more than two thirds."""
    full = k_reciprocal_sets(rank, k1)
    half = k_reciprocal_sets(rank, int(np.around(k1 / 2)))
    # overlap[i, c] = |N(i, k1) & N(c, k1/2)| for c in N(i, k1)
    overlap = full.multiply(full @ half.T).tocoo()
    half_sizes = np.asarray(half.sum(1)).ravel()
    rows, cols = overlap.row, overlap.col
    accept = overlap.data > (2.0 / 3.0) * half_sizes[cols]
    chosen = sp.csr_matrix((np.ones(accept.sum(), np.float32), (rows[accept], cols[accept])), shape=full.shape)
    expanded = full + chosen @ half
    expanded.data[:] = 1.0
    return expanded


def encode(features, expanded, chunk_size=4096):
    """V: on each row's expanded set, softmax of -(2 - 2 cos) (float32, as the reference)."""
    feats = torch.as_tensor(features).float()
    coo = expanded.tocoo()
    order = np.lexsort((coo.col, coo.row))
    rows, cols = coo.row[order], coo.col[order]
    dist = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, chunk_size * 64):
        r = torch.as_tensor(rows[start: start + chunk_size * 64])
        c = torch.as_tensor(cols[start: start + chunk_size * 64])
        dist[start: start + len(r)] = (2 - 2 * (feats[r] * feats[c]).sum(1)).numpy()
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=expanded.shape[0]))])
    # Softmax per row, shifted by the row's max logit for stability as F.softmax is.
    logits = -dist
    row_max = np.maximum.reduceat(logits, indptr[:-1]) if rows.size else logits
    weights = np.exp(logits - row_max[np.repeat(np.arange(len(row_max)), np.diff(indptr))])
    sums = np.add.reduceat(weights, indptr[:-1])
    weights /= np.repeat(sums, np.diff(indptr))
    return sp.csr_matrix((weights.astype(np.float32), cols, indptr), shape=expanded.shape)


def query_expansion(V, rank, k2):
    """Replace each row of V by the mean of the rows of its k2 nearest neighbours."""
    if k2 <= 1:
        return V
    n = rank.shape[0]
    cols = rank[:, :k2]
    rows = np.repeat(np.arange(n), cols.shape[1])
    mean = sp.csr_matrix((np.full(rows.size, 1.0 / cols.shape[1]), (rows, cols.ravel())), shape=(n, n))
    return (mean @ V.astype(np.float64)).astype(np.float32).tocsr()


def jaccard_from_encoding(V, row_chunk=256):
    """d_J for every pair whose encodings share a column, as a sparse CSR matrix.

    For a chunk of rows i, every nonzero V_il meets every nonzero V_jl of column l; the minima
    are summed per (i, j) in a chunk x N buffer, like the reference's per-row ``temp_min``.
    """
    V = V.tocsr()
    csc = V.tocsc()
    n = V.shape[0]
    col_len = np.diff(csc.indptr)
    out_rows, out_cols, out_vals = [], [], []
    for start in range(0, n, row_chunk):
        stop = min(start + row_chunk, n)
        block = V[start:stop].tocoo()
        counts = col_len[block.col]
        # For each (i, l, V_il): the column l's entries (j, V_jl), laid out flat.
        offsets = np.repeat(csc.indptr[block.col] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        j = csc.indices[offsets]
        mins = np.minimum(np.repeat(block.data, counts), csc.data[offsets])
        local_i = np.repeat(block.row, counts)
        overlap = np.bincount(local_i * n + j, weights=mins, minlength=(stop - start) * n).reshape(stop - start, n)
        r, c = np.nonzero(overlap)
        m = overlap[r, c]
        out_rows.append(r + start)
        out_cols.append(c)
        out_vals.append(np.maximum(1 - m / (2 - m), 0).astype(np.float32))
    rows, cols, vals = (np.concatenate(x) for x in (out_rows, out_cols, out_vals))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def compute_jaccard_distance(features, k1=30, k2=6, knn_backend="auto", rank=None):
    """Sparse Jaccard distance of L2-normalised ``features`` (N x D). Pairs that are not
    stored are at distance 1. ``rank`` (N x k1 nearest-first indices) may be given to reuse a
    search."""
    if rank is None:
        _, rank = knn(features, features, k1, backend=knn_backend)
    rank = np.asarray(rank, dtype=np.int64)
    V = encode(features, expanded_sets(rank, k1))
    return jaccard_from_encoding(query_expansion(V, rank, k2))

"""Jaccard distance from k-reciprocal encoding (Zhong et al. 2017), as the SpCL/PPLR/PISL
reference computes it for clustering, but on sparse matrices and without Python loops over
samples. Only pairs whose encodings overlap get a stored distance; every other pair is at
distance 1, the largest possible.

Reference semantics kept exactly (``compute_jaccard_distance`` of pisl/utils/faiss_rerank.py in
taoxuefong/Diffusion-reid at 616e7c9, the same as PPLR's):
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

from .knn import knn_self


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


def pair_distances(features, rows, cols, knn_result=None, chunk_size=8192):
    """2 - 2 f_i.f_j for each pair (rows[e], cols[e]), float32.

    With ``knn_result`` (squared distances, indices) from the search that built the ranking,
    pairs the search found (either way round) are read from it, since
    2 - 2 f_i.f_j = 2 - |f_i|^2 - |f_j|^2 + |f_i - f_j|^2 for any norms; gathering two
    feature rows per pair from memory is what costs the time at 2048 dimensions.
    """
    feats = torch.as_tensor(features).float()
    n = feats.shape[0]
    dist = np.empty(rows.size, dtype=np.float32)
    missing = np.arange(rows.size)
    if knn_result is not None:
        knn_dist, rank = (np.asarray(a) for a in knn_result)
        sq_norms = feats.pow(2).sum(1).numpy()
        i, j = np.repeat(np.arange(n), rank.shape[1]), rank.ravel().astype(np.int64)
        known = 2 - sq_norms[i] - sq_norms[j] + knn_dist.ravel()
        keys, first = np.unique(np.concatenate([i * n + j, j * n + i]), return_index=True)
        values = np.concatenate([known, known])[first]
        query = rows.astype(np.int64) * n + cols
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        found = keys[pos] == query
        dist[found] = values[pos[found]]
        missing = np.flatnonzero(~found)
    for start in range(0, missing.size, chunk_size):
        m = missing[start: start + chunk_size]
        r, c = torch.as_tensor(rows[m]), torch.as_tensor(cols[m])
        dist[m] = (2 - 2 * (feats[r] * feats[c]).sum(1)).numpy()
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


def query_expansion(V, rank, k2):
    """Replace each row of V by the mean of the rows of its k2 nearest neighbours."""
    if k2 <= 1:
        return V
    n = rank.shape[0]
    cols = rank[:, :k2]
    rows = np.repeat(np.arange(n), cols.shape[1])
    mean = sp.csr_matrix((np.full(rows.size, 1.0 / cols.shape[1]), (rows, cols.ravel())), shape=(n, n))
    return (mean @ V.astype(np.float64)).astype(np.float32).tocsr()


def _sums_above(keys, values, size, threshold):
    """(keys, sums) of the distinct integer ``keys`` in [0, size) whose sum of ``values`` is
    above ``threshold``. Each sum adds its values in array order, whichever way it is computed,
    so the result is the same to the bit: a dense buffer of ``size`` when that costs less than
    sorting the keys (below about 45,000 samples), else a stable sort, whose cost grows with
    the number of keys, not with ``size``. (Measured on 2 cores: one key sorted costs about as
    much as 40 buffer entries cleared and scanned.)"""
    if size <= 40 * keys.size:
        sums = np.bincount(keys, weights=values, minlength=size)
        above = np.flatnonzero(sums > threshold)
        return above, sums[above]
    order = torch.sort(torch.from_numpy(keys), stable=True).indices.numpy()
    keys = keys[order]
    is_start = np.r_[True, keys[1:] != keys[:-1]]
    # bincount adds in array order (np.add.reduceat sums pairwise, which changes the last bits).
    sums = np.bincount(np.cumsum(is_start) - 1, weights=values[order])
    above = sums > threshold
    return keys[is_start][above], sums[above]


def jaccard_from_encoding(V, max_distance=1.0, row_chunk=None):
    """d_J for every pair whose encodings share a column and whose distance is at most
    ``max_distance``, as a symmetric sparse CSR matrix.

    m_ij = sum_l min(V_il, V_jl) is symmetric, so only j >= i is computed: each nonzero V_il
    meets the entries V_jl, j >= i, of its column l, and the minima are summed per (i, j)
    (the reference's per-row ``temp_min``); the other half is mirrored. Time and memory grow
    with the number of such meetings, about N x (nonzeros per row) x (per column) / 2, not
    with N^2 (``_sums_above``). ``row_chunk`` rows are done at a time, by default as many as
    keep a dense buffer within 2^23 entries (64 MiB).
    """
    V = V.tocsr()
    V.sort_indices()
    n, nnz = V.shape[0], V.nnz
    row_chunk = row_chunk or max(16, min(1024, 2 ** 23 // max(n, 1)))
    rows = np.repeat(np.arange(n), np.diff(V.indptr))
    # The same entries in column-major order, and where each row-major entry lands there.
    order = np.lexsort((rows, V.indices))
    col_rows, col_data = rows[order], V.data[order]
    col_end = np.cumsum(np.bincount(V.indices, minlength=n))
    place = np.empty(nnz, dtype=np.int64)
    place[order] = np.arange(nnz)
    # d <= max_distance  <=>  m >= 2 (1 - max_distance) / (2 - max_distance); the slack keeps
    # borderline pairs for the exact test on d below.
    min_overlap = 2 * (1 - max_distance) / (2 - max_distance) - 1e-6 if max_distance < 1 else 0.0
    upper = []
    for start in range(0, n, row_chunk):
        stop = min(start + row_chunk, n)
        e = slice(V.indptr[start], V.indptr[stop])
        first = place[e]
        counts = col_end[V.indices[e]] - first  # column entries from row i on (i included)
        offsets = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        mins = np.minimum(np.repeat(V.data[e], counts), col_data[offsets]).astype(np.float64)
        local_i = np.repeat(rows[e] - start, counts)
        pairs, m = _sums_above(local_i * n + col_rows[offsets], mins, (stop - start) * n, min_overlap)
        d = np.maximum(1 - m / (2 - m), 0).astype(np.float32)
        keep = d <= max_distance
        upper.append((pairs[keep] // n + start, pairs[keep] % n, d[keep]))
    r, c, d = (np.concatenate(x) for x in zip(*upper))
    off = r != c
    return sp.csr_matrix((np.concatenate([d, d[off]]), (np.concatenate([r, c[off]]), np.concatenate([c, r[off]]))),
                         shape=(n, n))


def compute_jaccard_distance(features, k1=30, k2=6, knn_backend="auto", knn_result=None, max_distance=1.0):
    """Sparse Jaccard distance of L2-normalised ``features`` (N x D). Pairs that are not
    stored are at distance 1, or, with ``max_distance`` < 1 (all DBSCAN needs for its eps),
    farther than ``max_distance``. ``knn_result`` (squared distances, indices; N x k1, nearest
    first) from :func:`knn_self` may be given to reuse a search."""
    if knn_result is None:
        knn_result = knn_self(features, k1, backend=knn_backend)
    rank = np.asarray(knn_result[1], dtype=np.int64)
    V = encode(features, expanded_sets(rank, k1), knn_result)
    return jaccard_from_encoding(query_expansion(V, rank, k2), max_distance)

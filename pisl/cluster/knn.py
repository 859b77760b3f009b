"""k-nearest-neighbour search on L2-normalised features: exact (faiss when installed, GPU index
when faiss-gpu and CUDA are there, else a chunked torch search; a self-search that computes each
pair's distance once) and, for hundreds of thousands of samples on a CPU, approximate searches
in the features' principal directions: every pair there (``knn_pca``), or a graph index
(``knn_hnsw``, sub-quadratic). ``knn_graph`` picks one from the CLUSTER.KNN keys."""
import logging

import numba
import numpy as np
import torch

from .heaps import RowHeaps
from .threads import keeps_torch_threads

logger = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _use_faiss(backend):
    """Whether ``backend`` ("faiss", "torch" or "auto": faiss when importable) means faiss."""
    if backend == "faiss" and _faiss() is None:
        raise ImportError("faiss is not installed: pip install faiss-cpu (or faiss-gpu), or use backend 'torch'")
    return backend == "faiss" or (backend == "auto" and _faiss() is not None)


def squared_norms(rows, chunk_size=65536):
    """|f_i|^2 of each row, a chunk of rows at a time: ``rows.pow(2)`` whole would copy the
    matrix (8 GiB at a million 2048-d rows). Each row's sum is the same as whole."""
    return torch.cat([rows[i: i + chunk_size].pow(2).sum(1) for i in range(0, len(rows), chunk_size)])


def knn_torch(query, base, k, chunk_size=2048, max_block=2 ** 27):
    """Exact k-NN by squared Euclidean distance, chunked over queries (at most ``chunk_size``,
    and at most ``max_block`` distances, 512 MiB, at once). Returns (dist, index) NumPy arrays
    of shape (Nq, k), nearest first."""
    query, base = torch.as_tensor(query).float(), torch.as_tensor(base).float()
    base_sq = squared_norms(base)
    chunk_size = max(1, min(chunk_size, max_block // max(1, len(base))))
    dists, idxs = [], []
    for start in range(0, len(query), chunk_size):
        q = query[start: start + chunk_size]
        d = q.pow(2).sum(1, keepdim=True) + base_sq.unsqueeze(0) - 2 * q @ base.t()
        top = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(top.values)
        idxs.append(top.indices)
    return torch.cat(dists).cpu().numpy(), torch.cat(idxs).cpu().numpy()


def knn_faiss(query, base, k):
    faiss = _faiss()
    query = np.ascontiguousarray(torch.as_tensor(query).float().cpu().numpy())
    base = np.ascontiguousarray(torch.as_tensor(base).float().cpu().numpy())
    index = faiss.IndexFlatL2(base.shape[1])
    if torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), torch.cuda.current_device(), index)
    index.add(base)
    return index.search(query, k)


def knn(query, base, k, backend="auto"):
    """k-NN of every ``query`` row among ``base`` rows: ``backend`` is "faiss", "torch" or
    "auto" (faiss when importable). Returns (squared distances, indices), each (Nq, k)."""
    if k > len(base):
        raise ValueError(f"k={k} neighbours asked among only {len(base)} samples")
    if _use_faiss(backend):
        return knn_faiss(query, base, k)
    if torch.cuda.is_available():
        query, base = torch.as_tensor(query).cuda(), torch.as_tensor(base).cuda()
    return knn_torch(query, base, k)


class _TorchTopK:
    """Running k smallest distances per row, merged block by block with torch.topk."""

    def __init__(self, n, k, device):
        self.k = k
        self.dist = torch.full((n, k), float("inf"), device=device)
        self.index = torch.zeros((n, k), dtype=torch.long, device=device)

    def add(self, dots, row_norms, col_norms, row0, col0, both_ways=False):
        """As ``RowHeaps.add``."""
        dist = row_norms.float()[:, None] + col_norms.float()[None, :] - 2 * dots.float()
        self._add(dist, row0, col0)
        if both_ways:
            self._add(dist.t().contiguous(), col0, row0)

    def _add(self, dist, start, col_start):
        rows = slice(start, start + len(dist))
        top = dist.topk(min(self.k, dist.shape[1]), dim=1, largest=False)
        cand_dist = torch.cat([self.dist[rows], top.values], 1)
        cand_index = torch.cat([self.index[rows], top.indices + col_start], 1)
        best = cand_dist.topk(self.k, dim=1, largest=False, sorted=True)
        self.dist[rows], self.index[rows] = best.values, cand_index.gather(1, best.indices)

    def result(self):
        return self.dist.cpu().numpy(), self.index.cpu().numpy()


@keeps_torch_threads  # once a search, not once a block
def _symmetric_search(rows, norms, selector, dots, block_size):
    """Offer every pair of ``rows`` once to ``selector`` (``RowHeaps`` or ``_TorchTopK``):
    the blocks of the upper block triangle, each to its row samples and its column samples;
    ``dots(a, b)`` gives a block of dot products. Returns the selector's result.

    The diagonal blocks go first: where the rows come in ``cell_order``, a row's block holds
    rows near it, so its heap starts with a small top and far fewer of the later distances
    enter it (an insertion costs far more than a comparison)."""
    n = len(rows)
    starts = range(0, n, block_size)
    pairs = [(a, a) for a in starts] + [(a, b) for a in starts for b in starts if b > a]
    for a, b in pairs:
        selector.add(dots(rows[a: a + block_size], rows[b: b + block_size]), norms[a: a + block_size],
                     norms[b: b + block_size], a, b, both_ways=b != a)
    return selector.result()


def knn_self(features, k, backend="auto", block_size=1024):
    """k-NN of every row of ``features`` among all rows, itself included: the same result as
    ``knn(features, features, k)`` (up to float rounding), as (squared distances, indices).

    The distance matrix is symmetric, so only its upper block triangle is computed and each
    block feeds the top-k of both its row samples and its column samples: about half the
    multiply-adds of a full search, which is most of the pseudo-label step on a CPU. With
    faiss-gpu and CUDA the full GPU search is faster still and is used instead. ``backend``
    picks the top-k selection: "faiss" or "auto" (faiss when importable), compiled heaps on a
    CPU (``RowHeaps``) and faiss's search on a GPU; "torch", torch's top-k.
    """
    feats = torch.as_tensor(features).float()
    n = len(feats)
    if k > n:
        raise ValueError(f"k={k} neighbours asked among only {n} samples")
    use_faiss = _use_faiss(backend)
    if torch.cuda.is_available():
        if use_faiss and hasattr(_faiss(), "StandardGpuResources"):
            return knn_faiss(feats, feats, k)
        feats = feats.cuda()
    # The compiled heaps live in host memory: on CUDA the selection stays on the GPU with torch.
    selector = RowHeaps(n, k) if use_faiss and not feats.is_cuda else _TorchTopK(n, k, feats.device)
    return _symmetric_search(feats, squared_norms(feats), selector, lambda a, b: a @ b.t(), block_size)


# 8-bit codes of at most this many columns have squared distances below 2^24 (4 x 127^2 each):
# integers that float32 holds exactly.
MAX_CODE_DIM = 1040


def int8_codes(rows):
    """The rows rounded to 8-bit integers on one scale (the largest |coordinate| becomes 127):
    the squared distance between two codes is then an exact integer (``knn_codes``)."""
    largest = rows.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return torch.round(rows * (127 / largest)).to(torch.int8)


@numba.njit(parallel=True, nogil=True, cache=True)
def _nearest_pivots(dots, pivot_norms):
    """For each row of ``dots`` (its dot products with the pivots), the pivot that minimises
    |pivot|^2 - 2 row . pivot (the first on a tie): its nearest pivot, |row|^2 being the same
    for every pivot."""
    nearest = np.empty(len(dots), dtype=np.int64)
    for r in numba.prange(len(dots)):
        best, best_value = 0, pivot_norms[0] - 2 * dots[r, 0]
        for p in range(1, dots.shape[1]):
            value = pivot_norms[p] - 2 * dots[r, p]
            if value < best_value:
                best, best_value = p, value
        nearest[r] = best
    return nearest


@keeps_torch_threads
def cell_order(codes, cells=1024, chunk_size=65536):
    """An order of the rows of 8-bit ``codes`` that puts rows near each other in the code
    space near each other in the order: the rows grouped by their nearest of ``cells`` pivots
    (evenly spaced rows), by exact integer distance (the first pivot on a tie), so the order is
    the same on every device and thread count. Returns a NumPy permutation."""
    n = len(codes)
    pivots = codes[:: -(-n // cells)]
    pivot_norms = pivots.int().pow(2).sum(1).int().cpu().numpy()
    nearest = []
    for i in range(0, n, chunk_size):
        chunk = codes[i: i + chunk_size]
        # Integers below 2^24 (at most MAX_CODE_DIM columns): exact in float32 on CUDA too.
        dots = (chunk.float() @ pivots.float().t()).int() if codes.is_cuda else torch._int_mm(chunk, pivots.t())
        nearest.append(_nearest_pivots(dots.cpu().numpy(), pivot_norms))
    return np.argsort(np.concatenate(nearest), kind="stable")


def knn_codes(codes, k, backend="auto", block_size=1024, order=None):
    """k-NN of every row of 8-bit ``codes`` among all rows, itself included, by their squared
    distance computed exactly in integers, as (distances, indices) N x k, nearest first.

    The same symmetric search as ``knn_self``, with the dot products of the codes from an 8-bit
    integer matrix product (``torch._int_mm``: faster than the float32 product on a CPU with
    VNNI instructions). With at most 1040 columns every distance is an integer below
    2^24, exact in float32: on CUDA, or with ``backend`` "torch", the codes are multiplied as
    float32 and give the same integers; ties aside, every device gives the same neighbours.
    With ``order`` (a permutation, ``cell_order``) the rows are searched in that order, which
    changes nothing but the time and which of two equally near rows is kept."""
    n, dim = codes.shape
    if k > n:
        raise ValueError(f"k={k} neighbours asked among only {n} samples")
    if dim > MAX_CODE_DIM:
        raise ValueError(f"{dim} columns of 8-bit codes: at most {MAX_CODE_DIM} keep their distances exact in float32")
    if order is not None:
        dist, index = knn_codes(codes[torch.as_tensor(order, device=codes.device)], k, backend, block_size)
        back = np.empty_like(order)
        back[order] = np.arange(n)
        return dist[back], order[index[back]]
    norms = codes.int().pow(2).sum(1).float()
    if _use_faiss(backend) and not codes.is_cuda:
        return _symmetric_search(codes, norms, RowHeaps(n, k), lambda a, b: torch._int_mm(a, b.t()), block_size)
    return _symmetric_search(codes.float(), norms, _TorchTopK(n, k, codes.device), lambda a, b: a @ b.t(), block_size)


# The principal directions come from at most this many evenly spaced rows, so their cost does
# not grow with N (docs/benchmarks.md measures the recall and ARI of the candidates they give).
PCA_SAMPLE_ROWS = 32768


def pca_basis(features, dim, sample_rows=PCA_SAMPLE_ROWS, oversample=64, power_iterations=2):
    """About the top-``dim`` principal directions of the rows (D x dim, orthonormal columns)
    and their mean, from at most ``sample_rows`` evenly spaced rows, by a randomised range
    finder (Halko, Martinsson and Tropp, 2011): dim + ``oversample`` random directions (from a
    fixed seed) multiplied ``power_iterations`` + 1 times by the centred sample's covariance and
    orthonormalised, then the principal directions within the subspace they span. A few matrix
    products instead of the D x D covariance and its eigendecomposition: the search needs a
    subspace that keeps nearly all of the rows' variance, not the exact directions."""
    if len(features) > sample_rows:
        features = features[:: -(-len(features) // sample_rows)]
    mean = features.mean(0)
    centred = features - mean
    width = min(features.shape[1], dim + oversample)
    subspace = torch.randn(features.shape[1], width, generator=torch.Generator().manual_seed(0)).to(features.device)
    for _ in range(power_iterations + 1):
        subspace = torch.linalg.qr(centred.t() @ (centred @ subspace)).Q
    inside = centred @ subspace
    _, directions = torch.linalg.eigh((inside.t() @ inside).double())  # ascending variance
    return (subspace.double() @ directions[:, -dim:].flip(1)).float(), mean


def _projected(feats, dim, chunk_size=65536):
    """The rows in their top ``dim`` principal directions (centred), N x dim, a chunk of rows
    at a time: (f - mean) @ basis as f @ basis - mean @ basis, without a centred copy."""
    basis, mean = pca_basis(feats, dim)
    shift = -(mean @ basis)
    return torch.cat([torch.addmm(shift, feats[i: i + chunk_size], basis) for i in range(0, len(feats), chunk_size)])


@numba.njit(parallel=True, nogil=True, cache=True)
def _mutual_places(candidates):
    """For each (i, p) with j = candidates[i, p] < i and i among j's candidates (first at place
    q): j x c + q, the flat place of the same pair in j's row; -1 elsewhere."""
    n, c = candidates.shape
    places = np.full((n, c), -1, dtype=np.int64)
    for i in numba.prange(n):
        for p in range(c):
            j = candidates[i, p]
            if 0 <= j < i:
                for q in range(c):
                    if candidates[j, q] == i:
                        places[i, p] = j * c + q
                        break
    return places


@keeps_torch_threads
def _candidate_distances(feats, candidates, chunk_size=512, order=None):
    """Squared distances from each row to the rows of its ``candidates`` (N x c indices),
    float32 N x c. faiss reads each candidate row once, in place (``fvec_L2sqr_by_idx``: much
    faster than gathering the rows with torch, which copies them first), and a pair that both
    rows hold as candidates is computed once, for the lower row, and copied: faiss's distance is
    the same to the bit either way round. The rows are taken in ``order`` (a permutation; none:
    as they come): rows near each other share candidates, which then come from the cache. Without
    faiss, or on CUDA, torch gathers the rows in chunks."""
    faiss = _faiss()
    if faiss is not None and not feats.is_cuda:
        rows = np.ascontiguousarray(feats.numpy())
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        places = _mutual_places(candidates)
        mutual = places >= 0
        ids = np.where(mutual, -1, candidates)  # faiss skips -1
        dist = np.empty(candidates.shape, dtype=np.float32)
        if order is None:
            faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(dist), faiss.swig_ptr(rows), faiss.swig_ptr(rows),
                                    faiss.swig_ptr(ids), rows.shape[1], len(rows), candidates.shape[1])
        else:  # the same distances (fvec_L2sqr), for (row, candidate) pairs listed in that order
            query = np.repeat(np.asarray(order, dtype=np.int64), candidates.shape[1])
            ids = np.ascontiguousarray(ids[order])
            listed = np.empty(ids.size, dtype=np.float32)
            faiss.pairwise_indexed_L2sqr(rows.shape[1], ids.size, faiss.swig_ptr(rows), faiss.swig_ptr(query),
                                         faiss.swig_ptr(rows), faiss.swig_ptr(ids), faiss.swig_ptr(listed))
            dist[order] = listed.reshape(ids.shape)
        dist[mutual] = dist.ravel()[places[mutual]]
        return torch.from_numpy(dist)
    candidates = torch.as_tensor(candidates).to(feats.device)
    sq_norms = squared_norms(feats)
    dist = []
    for i in range(0, len(feats), chunk_size):
        cand = candidates[i: i + chunk_size]
        gathered = torch.index_select(feats, 0, cand.reshape(-1)).view(*cand.shape, -1)  # faster than feats[cand]
        dots = torch.bmm(gathered, feats[i: i + chunk_size, :, None]).squeeze(2)
        dist.append(sq_norms[i: i + chunk_size, None] + sq_norms[cand] - 2 * dots)
    return torch.cat(dist)


def _refined(feats, candidates, k, order=None):
    """The k nearest of each row's ``candidates`` (N x c indices; -1 where a search found
    fewer) by exact squared distance on the full features, as (distances, indices) NumPy
    arrays N x k, nearest first; the rows' distances are computed in ``order`` (a permutation,
    ``_candidate_distances``). Rows left with fewer than k candidates are searched exactly."""
    candidates = np.asarray(candidates, dtype=np.int64)
    missing = candidates < 0
    candidates = np.where(missing, np.arange(len(candidates))[:, None], candidates)
    dist = _candidate_distances(feats, candidates, order=order)
    dist[torch.from_numpy(missing).to(dist.device)] = float("inf")
    top = dist.topk(k, dim=1, largest=False, sorted=True)
    dist, index = top.values.cpu().numpy(), np.take_along_axis(candidates, top.indices.cpu().numpy(), 1)
    short = np.flatnonzero(np.isinf(dist[:, -1]))
    if short.size:
        dist[short], index[short] = knn(feats[torch.as_tensor(short)], feats, k, backend="torch")
    return dist, index


def knn_pca(features, k, dim=128, refine=2, backend="auto"):
    """Approximate k-NN of every row among all rows (itself included), as (squared distances,
    indices) N x k, nearest first: the rows projected to their top ``dim`` principal directions
    and rounded to 8-bit codes (``int8_codes``) are searched exhaustively (``knn_codes``) for
    ``refine`` x k candidates, whose exact distances on the full features pick the k. Both
    steps take the rows in ``cell_order``, which only makes them faster.

    Pooled CNN features put most of their variance in a few hundred directions, so the
    projected search finds the true neighbours among its candidates at D / dim of the exact
    search's cost, and 8-bit products cost a fraction of float32 ones; the rounding only has to
    keep a row's true k among its refine x k candidates (``benchmarks/bench_cluster_scale.py``
    measures the recall). The search still compares every pair: its cost grows with N^2.
    """
    feats = torch.as_tensor(features).float()
    if torch.cuda.is_available():
        feats = feats.cuda()
    n = len(feats)
    if k > n:
        raise ValueError(f"k={k} neighbours asked among only {n} samples")
    if dim >= feats.shape[1]:
        return knn_self(feats, k, backend=backend)
    codes = int8_codes(_projected(feats, dim))
    order = cell_order(codes)  # near rows together: fewer heap insertions, candidates from the cache
    candidates = knn_codes(codes, min(n, refine * k), backend=backend, order=order)[1]
    return _refined(feats, candidates, k, order=order)


def _faiss_index_input(features, k, dim, method):
    """What the faiss indexes (``knn_hnsw``, ``knn_ivf``) start from: faiss (an ImportError
    naming CLUSTER.KNN.METHOD ``method`` without it), the features as float32 and their
    projection to the top ``dim`` principal directions as a contiguous NumPy array."""
    faiss = _faiss()
    if faiss is None:
        raise ImportError(f"CLUSTER.KNN.METHOD {method} needs faiss: pip install faiss-cpu, or use pca or exact")
    feats = torch.as_tensor(features).float()
    if k > len(feats):
        raise ValueError(f"k={k} neighbours asked among only {len(feats)} samples")
    projected = feats if dim >= feats.shape[1] else _projected(feats, dim)
    return faiss, feats, np.ascontiguousarray(projected.cpu().numpy())


def knn_hnsw(features, k, dim=128, refine=2, ef_search=192, links=64, ef_construction=64):
    """Approximate k-NN of every row among all rows (itself included), as (squared distances,
    indices) N x k, nearest first, in about N log N time: the rows projected to their top
    ``dim`` principal directions go into a faiss HNSW graph (``links`` neighbours a node,
    built with ``ef_construction``); each row's ``refine`` x k candidates come from a search
    that keeps ``ef_search`` rows in its frontier, and their exact distances on the full
    features pick the k.

    In 128 dimensions a distance costs 16 times less than in 2048, so the graph is cheap to
    build, and its greedy search finds nearly all of a row's true neighbours. Its cost should
    grow as N log N, but on 2 CPU cores up to a few hundred thousand rows it was measured slower
    than ``knn_pca`` (random memory access; ``benchmarks/bench_cluster_scale.py`` measures
    both), so ``auto`` does not choose it. The graph is
    built with one thread: parallel inserts would make the graph, and so the pseudo-labels,
    differ from run to run.
    """
    faiss, feats, projected = _faiss_index_input(features, k, dim, "hnsw")
    n = len(feats)
    index = faiss.IndexHNSWFlat(projected.shape[1], links)
    index.hnsw.efConstruction = ef_construction
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(projected)
    finally:
        faiss.omp_set_num_threads(threads)
    wanted = min(n, refine * k)
    index.hnsw.efSearch = max(ef_search, wanted)
    _, candidates = index.search(projected, wanted)
    return _refined(feats, candidates, k)


def ivf_lists(n):
    """The inverted file's number of lists for n rows: about 4 sqrt(n), so that a list holds
    about sqrt(n) / 4 rows and the probed lists' scan grows as n^1.5, not n^2."""
    return max(1, min(n // 39, int(round(4 * n ** 0.5))))


def knn_ivf(features, k, dim=128, refine=2, probes=32, lists=0, train_iterations=10):
    """Approximate k-NN of every row among all rows (itself included), as (squared distances,
    indices) N x k, nearest first, in about N^1.5 time: the rows projected to their top ``dim``
    principal directions are split by k-means into ``lists`` cells (0: ``ivf_lists(N)``,
    about 4 sqrt(N)) held in a faiss inverted file; each row's ``refine`` x k candidates come
    from the rows of its ``probes`` nearest cells, and their exact distances on the full
    features pick the k. Every step is deterministic: the k-means starts from a fixed seed and
    each row's search is independent of the others'."""
    faiss, feats, projected = _faiss_index_input(features, k, dim, "ivf")
    n = len(feats)
    lists = lists or ivf_lists(n)
    quantizer = faiss.IndexFlatL2(projected.shape[1])  # the cells' centres, held beside the index
    index = faiss.IndexIVFFlat(quantizer, projected.shape[1], lists)
    index.cp.niter, index.cp.seed = train_iterations, 0
    # k-means on 64 evenly spaced rows a list: enough for the cells, a fraction of the rows.
    index.train(projected[:: max(1, n // (64 * lists))])
    index.add(projected)
    index.nprobe = min(probes, lists)
    wanted = min(n, refine * k)
    _, candidates = index.search(projected, wanted)  # -1 where the probed cells hold fewer rows
    return _refined(feats, candidates, k)


def knn_graph(features, k, method="auto", exact_below=50000, backend="auto", pca_dim=128, refine=2, ef_search=192,
              ivf_probes=32):
    """The k-NN of every row among all rows for the pseudo-labels, as (squared distances,
    indices) N x k, nearest first. ``method``: "exact" (``knn_self``), "pca" (``knn_pca``
    with ``pca_dim`` and ``refine``), "hnsw" (``knn_hnsw``, also with ``ef_search``), "ivf"
    (``knn_ivf``, with ``ivf_probes``) or "auto": exact below ``exact_below`` rows or on CUDA
    (where exact is fast), else pca, which on 2 CPU cores was measured faster than hnsw, and
    whose labels agree with exact search's where ivf's do not, or only with so many probes that
    it is slower (``benchmarks/bench_cluster_scale.py``)."""
    if method == "auto":
        method = "exact" if len(features) < exact_below or torch.cuda.is_available() else "pca"
    if method == "exact":
        return knn_self(features, k, backend=backend)
    if method == "pca":
        return knn_pca(features, k, dim=pca_dim, refine=refine, backend=backend)
    if method == "hnsw":
        return knn_hnsw(features, k, dim=pca_dim, refine=refine, ef_search=ef_search)
    if method == "ivf":
        return knn_ivf(features, k, dim=pca_dim, refine=refine, probes=ivf_probes)
    raise KeyError(f"Unknown k-NN method '{method}': use exact, pca, hnsw, ivf or auto")

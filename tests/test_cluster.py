import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from pisl.cluster import (apply_outlier_policy, camera_proxies, cluster_centroids, cluster_features,
                          compute_jaccard_distance, dbscan_sparse, k_reciprocal_sets, knn, knn_graph, knn_hnsw, knn_ivf,
                          knn_pca, knn_self, knn_torch, per_camera_standardised)
from pisl.cluster.jaccard import (BYTES_PER_MEETING, ColumnMajor, MemoryBudgetError, encode, encoding_bytes,
                                  expanded_sets, jaccard_encoding, jaccard_from_encoding, pair_distances, query_expansion,
                                  row_blocks)
from pisl.cluster.knn import (_candidate_distances, _mutual_places, cell_order, int8_codes, ivf_lists, knn_codes,
                              pca_basis)
from pisl.cluster.pair_sums import pair_distances_above
from pisl.evaluation.rerank import BYTES_PER_RANKED_PAIR, ReRankedDistances

from pisl.testing import REPO

spec = importlib.util.spec_from_file_location("bench_cluster", os.path.join(REPO, "benchmarks", "bench_cluster.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_knn_torch_hand_case():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.5, 0.0]])
    d, i = knn_torch(pts, pts, 2)
    assert i.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    assert d[:, 1].tolist() == pytest.approx([1.0, 1.0, 0.25, 0.25])


def test_knn_faiss_and_torch_agree():
    feats = F.normalize(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    d1, i1 = knn(feats, feats, 10, backend="faiss")
    d2, i2 = knn(feats, feats, 10, backend="torch")
    assert (i1 == i2).mean() > 0.99 and np.allclose(d1, d2, atol=1e-5)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_knn_self_equals_full_search(backend):
    # 103 rows in blocks of 8: many off-diagonal blocks, a last block of 7 rows, narrower than k.
    # Unnormalised rows check the norm terms of the distance.
    feats = torch.randn(103, 16, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.5, 2, 103)[:, None]
    d_full, i_full = knn_torch(feats, feats, 10)
    d_self, i_self = knn_self(feats, 10, backend=backend, block_size=8)
    assert np.array_equal(i_self, i_full)
    assert np.allclose(d_self, d_full, atol=1e-4)


def test_knn_self_hand_case():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.5, 0.0]])
    d, i = knn_self(pts, 2, backend="torch", block_size=3)
    assert i.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    assert d[:, 1].tolist() == pytest.approx([1.0, 1.0, 0.25, 0.25])


def test_int8_codes_hand_case():
    rows = torch.tensor([[0.5, -1.0], [0.25, 0.0]])
    assert int8_codes(rows).tolist() == [[64, -127], [32, 0]]  # x 127 / 1.0, rounded half to even


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_knn_codes_gives_the_exact_integer_distances(backend):
    # 8-bit integer products (faiss: compiled heaps) or float32 ones (torch): the same exact
    # integers, in blocks of 8 with a last block narrower than k.
    codes = torch.randint(-127, 128, (103, 24), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    full = (codes.long()[:, None] - codes.long()[None]).pow(2).sum(2)
    dist, index = knn_codes(codes, 10, backend=backend, block_size=8)
    assert np.array_equal(dist.astype(np.int64), full.sort(1).values[:, :10].numpy())
    assert np.array_equal(full.gather(1, torch.from_numpy(index)).numpy(), dist.astype(np.int64))
    assert (index[:, 0] == np.arange(103)).all()


def test_cell_order_groups_the_rows_by_their_nearest_pivot():
    codes = torch.randint(-127, 128, (300, 16), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    pivots = codes[::10]  # 30 cells: every 10th row
    dist = (codes.long()[:, None] - pivots.long()[None]).pow(2).sum(2)
    nearest = dist.argmin(1).numpy()  # the first pivot on a tie, as cell_order
    order = cell_order(codes, cells=30)
    assert np.array_equal(order, np.argsort(nearest, kind="stable"))
    assert np.array_equal(cell_order(codes, cells=30, chunk_size=7), order)  # chunks change nothing


def test_knn_codes_in_cell_order_finds_the_same_distances():
    codes = torch.randint(-127, 128, (203, 24), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    plain = knn_codes(codes, 10, block_size=16)
    dist, index = knn_codes(codes, 10, block_size=16, order=cell_order(codes, cells=8))
    assert np.array_equal(dist, plain[0])  # exact integers: only ties may pick other rows
    full = (codes.long()[:, None] - codes.long()[None]).pow(2).sum(2)
    assert np.array_equal(full.gather(1, torch.from_numpy(index)).numpy(), dist.astype(np.int64))


def test_pca_basis_spans_the_top_principal_directions():
    # 6 strong directions and weak noise: the randomised range finder must recover their span.
    gen = torch.Generator().manual_seed(0)
    strong = torch.linalg.qr(torch.randn(40, 6, generator=gen)).Q
    feats = torch.randn(500, 6, generator=gen) * torch.arange(6, 0, -1) @ strong.t() + 0.01 * torch.randn(500, 40, generator=gen)
    basis, mean = pca_basis(feats, 6)
    assert torch.allclose(basis.t() @ basis, torch.eye(6), atol=1e-5)
    assert torch.linalg.svdvals(strong.t() @ basis).min() > 0.999  # the same subspace
    assert torch.allclose(mean, feats.mean(0))


def test_mutual_candidates_are_computed_once_with_the_bits_of_both():
    import faiss
    feats = F.normalize(torch.randn(200, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    candidates = knn_self(feats, 12)[1]
    places = _mutual_places(candidates)
    i, p = np.argwhere(places >= 0)[0]
    j, q = divmod(places[i, p], 12)
    assert j < i and candidates[i, p] == j and candidates[j, q] == i
    assert ((places >= 0) == [[0 <= j < i and i in candidates[j] for j in row] for i, row in enumerate(candidates)]).all()
    every = np.empty(candidates.shape, dtype=np.float32)  # each pair computed from both of its rows
    faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(every), faiss.swig_ptr(feats.numpy()), faiss.swig_ptr(feats.numpy()),
                            faiss.swig_ptr(candidates), 64, 200, 12)
    assert np.array_equal(_candidate_distances(feats, candidates).numpy(), every)
    order = np.random.default_rng(0).permutation(200)  # rows taken in another order: the same bits
    assert np.array_equal(_candidate_distances(feats, candidates, order=order).numpy(), every)


def test_the_compiled_kernels_leave_torch_on_its_thread_count():
    # numba's parallel kernels share the OpenMP runtime with torch and can leave its thread count
    # at numba's: one thread would become two, and torch's sums with it. 3,000 rows: blocks
    # offered both ways (the tiled kernel), a fresh process: the kernels' first run.
    code = ("import torch, torch.nn.functional as F; torch.set_num_threads(1); from pisl.cluster import cluster_features; "
            "cluster_features(F.normalize(torch.randn(3000, 32), dim=1), 0.5, 20, 6); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.split()[-1] == "1"


def test_k_reciprocal_sets_hand_case():
    # 0 and 1 rank each other first; 2 ranks 1 but 1 does not rank 2 within k+1 = 2 columns.
    rank = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    sets = k_reciprocal_sets(rank, 1).toarray()
    assert sets.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("n,k1,k2,seed", [(300, 20, 6, 0), (500, 30, 6, 1), (200, 10, 1, 2)])
def test_sparse_jaccard_equals_reference_loop(n, k1, k2, seed):
    feats = bench.clustered_features(n, 32, seed=seed, ids_fraction=0.08, noise=1.5)
    knn_result = knn(feats, feats, k1)
    rank = knn_result[1]
    ref = bench.reference_jaccard(feats.numpy(), rank, k1, k2)
    ours = compute_jaccard_distance(feats, k1, k2, knn_result=knn_result)
    dense = np.ones((n, n), dtype=np.float32)
    coo = ours.tocoo()
    dense[coo.row, coo.col] = coo.data
    assert np.abs(dense - ref).max() < 1e-5
    # Every pair the reference puts closer than 1 is stored.
    assert np.array_equal(ref < 1 - 1e-6, dense < 1 - 1e-6)
    # With max_distance, exactly the pairs within it are stored, with the same values.
    near = compute_jaccard_distance(feats, k1, k2, knn_result=knn_result, max_distance=0.6).tocoo()
    assert np.array_equal(np.sort(near.row * n + near.col), np.flatnonzero(dense.ravel() <= 0.6))
    assert np.allclose(near.data, dense[near.row, near.col])


@pytest.mark.parametrize("k1", [20, 7])
def test_compiled_expanded_sets_equal_the_sparse_products(k1):
    # The formulation on scipy's sparse matrices, with its float32 counts and threshold.
    feats = bench.clustered_features(700, 16, seed=5, ids_fraction=0.05, noise=1.5)
    rank = knn(feats, feats, 25)[1]
    full, half = k_reciprocal_sets(rank, k1), k_reciprocal_sets(rank, int(np.around(k1 / 2)))
    overlap = full.multiply(full @ half.T).tocoo()
    accept = overlap.data > (2.0 / 3.0) * np.asarray(half.sum(1)).ravel()[overlap.col]
    chosen = sp.csr_matrix((np.ones(accept.sum(), np.float32), (overlap.row[accept], overlap.col[accept])),
                           shape=full.shape)
    expected = (full + chosen @ half).tocsr()
    expected.sort_indices()
    ours = expanded_sets(rank, k1)
    assert np.array_equal(ours.indptr, expected.indptr) and np.array_equal(ours.indices, expected.indices)
    assert chosen.nnz > 0  # some sets were expanded


def test_compiled_query_expansion_has_the_bits_of_the_sparse_product():
    feats = bench.clustered_features(500, 16, seed=6, ids_fraction=0.05, noise=1.5)
    knn_result = knn(feats, feats, 20)
    V = encode(feats, expanded_sets(knn_result[1], 20), knn_result)
    cols = knn_result[1][:, :6]
    mean = sp.csr_matrix((np.full(cols.size, 1.0 / 6), (np.repeat(np.arange(500), 6), cols.ravel())), shape=V.shape)
    expected = (mean @ V.astype(np.float64)).astype(np.float32).tocsr()
    expected.sort_indices()
    ours = query_expansion(V, knn_result[1], 6)
    assert np.array_equal(ours.indptr, expected.indptr) and np.array_equal(ours.indices, expected.indices)
    assert np.array_equal(ours.data.view(np.int32), expected.data.view(np.int32))


def test_pair_distances_from_knn_equal_computed_ones():
    # Features of norm != 1, so the conversion from squared L2 to 2 - 2 f.f is exercised.
    feats = 1.5 * bench.clustered_features(400, 32, seed=4)
    knn_result = knn(feats, feats, 20)
    expanded = expanded_sets(knn_result[1], 20).tocoo()
    from_knn = pair_distances(feats, expanded.row, expanded.col, knn_result)
    computed = pair_distances(feats, expanded.row, expanded.col)
    assert np.allclose(from_knn, computed, atol=1e-5)
    assert np.allclose(computed, 2 - 2 * (feats[expanded.row] * feats[expanded.col]).sum(1).numpy(), atol=1e-6)


def test_dbscan_on_sparse_equals_dense_reference_labels():
    feats = bench.clustered_features(600, 32, seed=3, ids_fraction=0.06, noise=1.8)
    knn_result = knn(feats, feats, 30)
    rank = knn_result[1]
    ref = bench.reference_labels(feats.numpy(), rank, eps=0.6, k1=30, k2=6)
    ours = cluster_features(feats, eps=0.6, knn_result=knn_result).labels
    assert ref.max() > 3 and (ref == -1).any()  # a case with clusters and outliers
    assert np.array_equal(ours, ref)


def test_dbscan_sparse_counts_explicit_zero_distances():
    import scipy.sparse as sp

    # Three points at distance 0 from each other: explicit zeros must count as neighbours.
    dist = sp.csr_matrix((np.zeros(9), (np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3))), shape=(3, 3))
    assert dbscan_sparse(dist, eps=0.5, min_samples=3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="eps"):
        dbscan_sparse(dist, eps=1.0)


def test_outlier_policies():
    labels = np.array([0, -1, 1, -1, 0])
    assert apply_outlier_policy(labels, "drop").tolist() == [0, -1, 1, -1, 0]
    assert apply_outlier_policy(labels, "singleton").tolist() == [0, 2, 1, 3, 0]
    with pytest.raises(KeyError):
        apply_outlier_policy(labels, "keep")


def test_centroids_and_camera_proxies_hand_case():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    labels = np.array([0, 0, 1, 1, -1])
    cams = np.array([0, 1, 0, 0, 1])
    cent = cluster_centroids(feats, labels)
    s = 2 ** -0.5
    assert np.allclose(cent.numpy(), [[s, s], [1 / 5 ** 0.5, 2 / 5 ** 0.5]])
    proxies, pids, cids = camera_proxies(feats, labels, cams)
    assert pids.tolist() == [0, 0, 1] and cids.tolist() == [0, 1, 0]
    assert np.allclose(proxies.numpy(), [[1, 0], [0, 1], [1 / 5 ** 0.5, 2 / 5 ** 0.5]])


def test_per_camera_standardised_hand_case():
    feats = torch.tensor([[1.0, 0.0], [0.0, 4.0], [3.0, 2.0], [0.0, 8.0]])
    cams = np.array([0, 1, 0, 1])
    # Camera 0: mean (2, 1), std (1, 1). Camera 1: mean (0, 6), std (0, 2): a constant
    # dimension becomes 0, not a division by zero.
    s = 2 ** -0.5
    assert np.allclose(per_camera_standardised(feats, cams).numpy(), [[-s, -s], [0, -1], [s, s], [0, 1]])


def test_per_camera_standardised_clusters_follow_identity_not_camera():
    # Two identities seen by two cameras; each camera adds a large offset of its own.
    g = torch.Generator().manual_seed(0)
    identity = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    camera = torch.tensor([[0, 0, 5.0, 0], [0, 0, 0, 5.0]])
    pids = np.repeat([0, 1, 0, 1], 6)
    cams = np.repeat([0, 0, 1, 1], 6)
    feats = identity[pids] + camera[cams] + 0.05 * torch.randn(24, 4, generator=g)
    raw = cluster_features(F.normalize(feats, dim=1), eps=0.5, k1=8, k2=2).labels
    standardised = cluster_features(per_camera_standardised(feats, cams), eps=0.5, k1=8, k2=2).labels
    # Raw features: each cluster holds one camera. Standardised: each holds one identity, seen
    # by both cameras (standardising also scales up the noise, so a few images are outliers).
    assert all(len(set(cams[raw == c])) == 1 for c in set(raw) - {-1})
    clusters = set(standardised) - {-1}
    assert len(clusters) == 2 and (standardised >= 0).mean() > 0.8
    assert all(len(set(pids[standardised == c])) == 1 and len(set(cams[standardised == c])) == 2 for c in clusters)


def test_pair_sums_hand_case():
    # Row 0 = {0: .5, 1: .5}, 1 = {0: .25, 1: .75}, 2 = {2: 1}, 3 = {1: .5, 2: .5}.
    rows, cols = [0, 0, 1, 1, 2, 3, 3], [0, 1, 0, 1, 2, 1, 2]
    V = sp.csr_matrix((np.array([.5, .5, .25, .75, 1, .5, .5], np.float32), (rows, cols)), shape=(4, 4))
    r, c, d = pair_distances_above(V, ColumnMajor(V), 0, 4, min_col=0, min_overlap=0.0, max_distance=1.0)
    # m_01 = .25 + .5 = .75: d = 1 - .75 / 1.25 = .4; m = .5 for 0-3, 1-3, 2-3: d = 2 / 3; 0-2 share nothing.
    assert list(zip(r.tolist(), c.tolist())) == [(0, 0), (0, 1), (0, 3), (1, 1), (1, 3), (2, 2), (2, 3), (3, 3)]
    assert d.tolist() == pytest.approx([0, .4, 2 / 3, 0, 2 / 3, 0, 2 / 3, 0])
    r, c, d = pair_distances_above(V, ColumnMajor(V), 0, 2, min_col=2, min_overlap=0.0, max_distance=0.5)
    assert r.size == 0  # rows 0 and 1 meet column 3 only, at 2/3
    r, c, _ = pair_distances_above(V, ColumnMajor(V), 0, 2, min_col=2, min_overlap=0.0, max_distance=1.0)
    assert list(zip(r.tolist(), c.tolist())) == [(0, 3), (1, 3)]


def test_pair_sums_equal_sequential_float64_sums_to_the_bit_in_any_row_order():
    _, V = _encoding()
    n = V.shape[0]
    dense = V.toarray()
    columns = ColumnMajor(V)
    expected = {}
    for i in range(n):
        for j in range(i, n):
            shared = (dense[i] > 0) & (dense[j] > 0)
            if shared.any():
                # l ascending, from 0.0, in float64: np.cumsum adds in order (np.sum would not).
                m = np.cumsum(np.minimum(dense[i], dense[j])[shared].astype(np.float64))[-1]
                expected[i, j] = np.float32(max(1 - m / (2 - m), 0))
    assert len(expected) > 2 * n  # more pairs than a scratch of 1 a row holds: its chunks are summed again
    for order in (None, np.arange(n)[::-1], np.random.default_rng(0).permutation(n), columns.row_order):
        for pairs_per_row in (1, n):  # chunks summed again, or not
            r, c, d = pair_distances_above(V, columns, 0, n, 0, 0.0, 1.0, order=order, pairs_per_row=pairs_per_row)
            assert dict(zip(zip(r.tolist(), c.tolist()), d.tolist())) == {k: float(v) for k, v in expected.items()}
            assert np.array_equal(np.lexsort((c, r)), np.arange(r.size))  # rows, then columns, ascending


def test_labels_at_market_size_equal_the_reference_loop():
    """12,936 x 2048 (Market-1501's training set): the exact method's labels are those of the
    reference's plain loops (about a minute and 2.7 GiB for the dense reference)."""
    feats = bench.clustered_features(12936, 2048)
    knn_result = knn_self(feats, 30)
    ours = cluster_features(feats, eps=0.6, knn_result=knn_result).labels
    ref = bench.reference_labels(feats.numpy(), knn_result[1], 0.6, 30, 6)
    assert ours.max() > 100 and np.array_equal(ours, ref)


def low_rank_features(n=400, dim=64, rank=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, rank, generator=gen) @ torch.randn(rank, dim, generator=gen), dim=1)


def test_pca_knn_is_exact_when_the_features_span_fewer_directions():
    feats = low_rank_features()
    exact = knn_self(feats, 10)
    approx = knn_pca(feats, 10, dim=8, refine=3)
    assert np.array_equal(approx[1], exact[1]) and np.allclose(approx[0], exact[0], atol=1e-5)
    # Too few directions lose neighbours: the recall measures something.
    coarse = knn_pca(feats, 10, dim=2, refine=1)[1]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(coarse, exact[1])]) < 9.5


def test_hnsw_knn_is_exact_when_the_features_span_fewer_directions_and_repeats_itself():
    feats = low_rank_features(n=600)
    exact = knn_self(feats, 10)
    approx = knn_hnsw(feats, 10, dim=8, refine=3)
    assert np.array_equal(approx[1], exact[1]) and np.allclose(approx[0], exact[0], atol=1e-5)
    assert np.array_equal(knn_hnsw(feats, 10, dim=8, refine=3)[1], approx[1])  # one-thread build: reproducible
    # Too few directions lose neighbours: the recall measures something.
    coarse = knn_hnsw(feats, 10, dim=2, refine=1)[1]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(coarse, exact[1])]) < 9.5


def test_ivf_knn_is_exact_when_every_cell_is_probed_and_loses_neighbours_with_few():
    feats = low_rank_features(n=800, dim=64, rank=64)
    exact = knn_self(feats, 10)
    lists = ivf_lists(800)
    assert lists == 20  # 800 // 39: each cell gets enough rows for its k-means
    full = knn_ivf(feats, 10, dim=64, refine=3, probes=lists)
    assert np.array_equal(full[1], exact[1]) and np.allclose(full[0], exact[0], atol=1e-5)
    assert np.array_equal(knn_ivf(feats, 10, dim=8, refine=3, probes=4)[1], knn_ivf(feats, 10, dim=8, refine=3, probes=4)[1])
    few = knn_ivf(feats, 10, dim=64, refine=1, probes=1)[1]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(few, exact[1])]) < 9.5
    # Cells too small for refine x k candidates: those rows are searched exactly, no -1 or repeat.
    short = knn_ivf(feats[:100], 30, dim=64, refine=1, probes=1, lists=50)
    assert (short[1] >= 0).all() and all(len(set(row)) == 30 for row in short[1].tolist())


def test_knn_graph_auto_switches_at_the_threshold():
    feats = low_rank_features(dim=64, rank=64)
    exact = knn_self(feats, 10)[1]
    assert np.array_equal(knn_graph(feats, 10, method="auto", exact_below=401)[1], exact)
    # Above the threshold (on a CPU) auto is pca, which with 2 of 64 directions loses neighbours.
    above = knn_graph(feats, 10, method="auto", exact_below=400, pca_dim=2, refine=1)[1]
    assert not np.array_equal(above, exact)
    assert np.array_equal(above, knn_graph(feats, 10, method="pca", pca_dim=2, refine=1)[1])
    with pytest.raises(KeyError, match="Unknown k-NN method 'annoy'"):
        knn_graph(feats, 10, method="annoy")


def _encoding(n=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n // 10, 16, generator=gen)
    feats = F.normalize(centres[torch.arange(n) % (n // 10)] + 0.4 * torch.randn(n, 16, generator=gen), dim=1)
    return feats, jaccard_encoding(feats, k1=10, k2=3)


def test_jaccard_in_blocks_equals_one_block_to_the_bit():
    _, V = _encoding()
    whole = jaccard_from_encoding(V, max_distance=1.0, budget_bytes=2 ** 40)
    cols = ColumnMajor(V)
    per_row = np.bincount(cols.rows, weights=cols.meetings(0)[1])
    budget = 8 * BYTES_PER_MEETING * per_row.mean()  # a few rows' meetings: dozens of blocks
    assert len(list(row_blocks(per_row, 0, budget, "KEY"))) > 20
    # The budget also holds the encodings: what they leave sizes the blocks.
    blocked = jaccard_from_encoding(V, max_distance=1.0, budget_bytes=budget + encoding_bytes(V, cols))
    assert (whole != blocked).nnz == 0 and whole.nnz > 0


def test_jaccard_budget_holds_the_encodings_first():
    _, V = _encoding()
    held = encoding_bytes(V, ColumnMajor(V))
    assert held == pytest.approx(45 * V.nnz, rel=0.2)  # 4 + 4 (CSR), 8 + 8 + 4 + 8 + 8 (column-major) a nonzero
    with pytest.raises(MemoryBudgetError, match=r"encodings of 300 images take .* more than CLUSTER.MEMORY_GB"):
        jaccard_from_encoding(V, budget_bytes=held)


def test_jaccard_memory_guard_names_the_key_on_a_hub():
    # Hand-made encoding: every row shares column 0 (one image in everybody's neighbourhood),
    # so row 0 meets all N entries of that column.
    n = 1000
    V = sp.csr_matrix((np.full(2 * n, 0.5, np.float32), (np.repeat(np.arange(n), 2), np.c_[np.zeros(n), np.arange(n)].ravel())),
                      shape=(n, n))
    V.sum_duplicates()
    V.sort_indices()
    cols = ColumnMajor(V)
    assert np.bincount(cols.rows, weights=cols.meetings(0)[1])[0] == n  # row 0 meets all of column 0
    held = encoding_bytes(V, cols)
    with pytest.raises(MemoryBudgetError, match=r"row 0 alone .* more than CLUSTER.MEMORY_GB"):
        jaccard_from_encoding(V, budget_bytes=held + BYTES_PER_MEETING * n / 2)
    jaccard_from_encoding(V, budget_bytes=held + BYTES_PER_MEETING * n)  # the encodings and one row's worth


def test_re_ranked_rows_read_in_blocks_equal_the_full_jaccard_block():
    feats, _ = _encoding(n=200)
    q, g = feats[:30], feats[30:]
    reranked = ReRankedDistances(q, g, k1=10, k2=3, lam=0.3)
    full = compute_jaccard_distance(feats, 10, 3).tocoo()  # the whole matrix, as re-ranking computed it before
    dense = np.ones((200, 200), dtype=np.float32)  # pairs not stored are at 1
    dense[full.row, full.col] = full.data
    dense = dense[:30, 30:]
    original = ((q[:, None] - g[None]) ** 2).sum(2).numpy()
    expected = 0.7 * dense + 0.3 * original
    blocks = np.concatenate([reranked[0:7], reranked[7:30]])
    assert np.allclose(blocks, expected, atol=1e-5) and np.allclose(reranked[:], blocks)
    with pytest.raises(MemoryBudgetError, match="TEST.RERANK.MEMORY_GB"):
        ReRankedDistances(q, g, k1=10, k2=3, memory_gb=1e-9)[0:5]
    # Half of what the encodings leave sizes the blocks the ranking reads: 10 rows of 170 gallery pairs here.
    budget_gb = (encoding_bytes(reranked.V, reranked.columns) + 2 * 10 * 170 * BYTES_PER_RANKED_PAIR) / 2 ** 30
    assert ReRankedDistances(q, g, k1=10, k2=3, memory_gb=budget_gb).rows_per_block == 10


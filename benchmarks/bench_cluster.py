#!/usr/bin/env python
"""Time the pseudo-label step (k-NN + Jaccard + DBSCAN) of pisl.cluster against a plain-loop
implementation of the reference algorithm, on random L2-normalised features, and check that
both give identical labels. The reference searches with a full faiss k-NN, as its code does;
pisl uses its symmetric self-search (knn_self).

    python benchmarks/bench_cluster.py --sizes 12936 32621 --dim 2048

Features are drawn as noisy copies of random "identity" centres so that DBSCAN finds real
clusters (pure noise would give none and test nothing). Peak memory is the process's peak
resident set size after each stage (ru_maxrss), so it is cumulative: run sizes one per process
(--sizes N) for separate peaks.
"""
import argparse
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pisl.cluster import cluster_features
from pisl.cluster.knn import knn, knn_self


def reference_jaccard(features, rank, k1=30, k2=6):
    """The SpCL/PPLR/PISL ``compute_jaccard_distance`` after its k-NN search: per-sample Python
    loops and dense N x N float32 matrices, as in the reference code."""
    n = features.shape[0]
    feats = torch.as_tensor(features).float()

    def k_reciprocal_neigh(i, k):
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.where(backward == i)[0]]

    nn_k1 = [k_reciprocal_neigh(i, k1) for i in range(n)]
    nn_k1_half = [k_reciprocal_neigh(i, int(np.around(k1 / 2))) for i in range(n)]
    V = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        k_recip = nn_k1[i]
        expansion = k_recip
        for candidate in k_recip:
            cand_set = nn_k1_half[candidate]
            if len(np.intersect1d(cand_set, k_recip)) > 2 / 3 * len(cand_set):
                expansion = np.append(expansion, cand_set)
        expansion = np.unique(expansion)
        dist = 2 - 2 * torch.mm(feats[i].unsqueeze(0), feats[expansion].t())
        V[i, expansion] = F.softmax(-dist, dim=1).view(-1).numpy()
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i, :] = np.mean(V[rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp_min = np.zeros((1, n), dtype=np.float32)
        nonzero = np.where(V[i, :] != 0)[0]
        for col in nonzero:
            temp_min[0, inv_index[col]] += np.minimum(V[i, col], V[inv_index[col], col])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    jaccard[jaccard < 0] = 0.0
    return jaccard


def reference_labels(features, rank, eps, k1, k2, min_samples=4):
    from sklearn.cluster import DBSCAN

    dist = reference_jaccard(features, rank, k1, k2)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=-1).fit_predict(dist)


def clustered_features(n, dim, seed=0, ids_fraction=0.06, noise=0.9):
    """n unit vectors around n * ids_fraction random centres."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(2, int(n * ids_fraction))
    centres = torch.randn(num_ids, dim, generator=gen)
    labels = torch.randint(num_ids, (n,), generator=gen)
    feats = centres[labels] + noise * torch.randn(n, dim, generator=gen) * (centres.norm(dim=1).mean() / dim ** 0.5)
    return F.normalize(feats, dim=1)


def peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[12936, 32621])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--k1", type=int, default=30)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--skip-reference-above", type=int, default=20000,
                        help="sizes above this run only the library (the dense reference needs N^2 x 12 bytes)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dim {args.dim}, eps {args.eps}, "
          f"k1 {args.k1}, k2 {args.k2}")
    print(f"{'N':>7} {'impl':>10} {'knn s':>7} {'jaccard+dbscan s':>17} {'total s':>8} {'peak RSS GiB':>12} "
          f"{'clusters':>8} {'outliers':>8}")
    for n in args.sizes:
        feats = clustered_features(n, args.dim)
        start = time.perf_counter()
        knn_result = knn_self(feats, args.k1)
        knn_s = time.perf_counter() - start
        start = time.perf_counter()
        labels = cluster_features(feats, eps=args.eps, k1=args.k1, k2=args.k2, knn_result=knn_result).labels
        ours_s = time.perf_counter() - start
        print(f"{n:>7} {'pisl':>10} {knn_s:>7.2f} {ours_s:>17.2f} {knn_s + ours_s:>8.2f} {peak_gib():>12.2f} "
              f"{labels.max() + 1:>8} {(labels < 0).sum():>8}", flush=True)
        if n > args.skip_reference_above:
            print(f"{n:>7} {'reference':>10}  skipped (dense N x N matrices)")
            continue
        start = time.perf_counter()
        rank = knn(feats, feats, args.k1, backend="faiss")[1]
        ref_knn_s = time.perf_counter() - start
        start = time.perf_counter()
        ref = reference_labels(feats.numpy(), rank, args.eps, args.k1, args.k2)
        ref_s = time.perf_counter() - start
        print(f"{n:>7} {'reference':>10} {ref_knn_s:>7.2f} {ref_s:>17.2f} {ref_knn_s + ref_s:>8.2f} {peak_gib():>12.2f} "
              f"{ref.max() + 1:>8} {(ref < 0).sum():>8}")
        same = np.array_equal(ref, labels)
        print(f"{n:>7} labels identical: {same}; speed-up k-NN {ref_knn_s / knn_s:.1f}x, jaccard+dbscan "
              f"{ref_s / ours_s:.1f}x, whole step {(ref_knn_s + ref_s) / (knn_s + ours_s):.1f}x", flush=True)
        if not same:
            sys.exit(f"labels differ at N={n}")


if __name__ == "__main__":
    main()

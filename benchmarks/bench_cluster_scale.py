#!/usr/bin/env python
"""The pseudo-label step at VeRi-Wild / MSMT17 scale: per-stage time (k-NN, Jaccard, DBSCAN),
peak memory, recall@k of the k-NN against exact search and ARI of the labels against exact
labels, for each k-NN method, on generated features with re-ID structure.

    python benchmarks/bench_cluster_scale.py --sizes 12936 32621 130000 280000 --dims 2048 1280 \\
        --methods exact pca:128 hnsw:128
    python benchmarks/bench_cluster_scale.py --features hubs --sizes 80000 --dims 64 --methods exact --memory-gb 2
    python benchmarks/bench_cluster_scale.py --real feats.npz      # check the generator against real features
    ... --record records/tools/cluster_scale_NAME.json              # also keep the rows as a record

Features (``reid_like_features``): identities with about 9.5 images each over 6 cameras;
each image is its identity's centre plus its camera's offset plus noise, in a low-rank
subspace with a decaying spectrum, plus isotropic noise, L2-normalised; fitted to real
features of a trained model (see the function). ``--real`` takes an .npz of real features (``tools/extract_features.py``)
and prints, for them and for generated features of the same size and dimension, the exact
method's cluster count and neighbour statistics, so that the generator's parameters can be
checked against a trained model. ``--features hubs`` (``hub_features``): low-dimensional
noise with near-duplicate groups, the case that makes the Jaccard step's memory grow; its
peak follows ``--memory-gb`` (CLUSTER.MEMORY_GB).

Each (size, dim, method) runs in a process of its own, so that its peak resident memory
(ru_maxrss) is its own. Recall@k is measured on --recall-queries random rows against their
exact neighbours (brute force over all rows), so it is available at every size; ARI needs the
exact labels and is given where the exact method ran (--exact-max).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score
from tabulate import tabulate

from pisl.cluster import cluster_features, knn, knn_graph
from pisl.utils.provenance import write_record

K1, K2, EPS = 30, 6, 0.6


def reid_like_features(n, dim, seed=0, images_per_id=9.5, cameras=6, rank=96, camera_scale=0.5, noise=0.95,
                       isotropic=0.5, mean_scale=0.3, ids_per_look=3, look_spread=0.8,
                       chunk_rows=65536):
    """n L2-normalised features of n / images_per_id identities seen by ``cameras`` cameras.
    Returns (features, identity of each row).

    An identity's centre lies near one of n / (images_per_id x ids_per_look) "looks" (people
    dressed alike, whom clustering may merge); each image adds its camera's offset and noise,
    in a ``rank``-dimensional subspace whose spectrum decays as 1 / sqrt(i), plus a shared
    mean direction and isotropic noise. The defaults were fitted to the features of a
    supervised MobileNetV2 on CUHK03-NP (--real): the exact method's cluster count, share of
    clustered images and neighbour distances, and the energy in the top 16 and 64 principal
    directions (51 % and 75 % for both); the generated tail beyond them is heavier than the
    real one, which makes the principal-direction search's recall here a pessimistic figure."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(2, round(n / images_per_id))
    basis = torch.linalg.qr(torch.randn(dim, rank, generator=gen))[0] * torch.arange(1, rank + 1).pow(-0.5)
    looks = torch.randn(max(1, num_ids // ids_per_look), rank, generator=gen)
    centre = looks[torch.randint(len(looks), (num_ids,), generator=gen)] + look_spread * torch.randn(num_ids, rank, generator=gen)
    ids = torch.randint(num_ids, (n,), generator=gen)
    cams = torch.randint(cameras, (n,), generator=gen)
    camera = torch.randn(cameras, rank, generator=gen) * camera_scale
    latent = centre[ids] + camera[cams] + noise * torch.randn(n, rank, generator=gen)
    mean = F.normalize(torch.rand(dim, generator=gen), dim=0) * mean_scale
    # In row chunks, so that a million rows peak at their own 8 GiB (float32 at 2048-d) and not
    # three times that; torch draws the same numbers in chunks as in one call.
    feats = torch.empty(n, dim)
    for a in range(0, n, chunk_rows):
        rows = slice(a, a + chunk_rows)
        noisy = (F.normalize(latent[rows] @ basis.t(), dim=1) + mean
                 + isotropic * torch.randn(len(latent[rows]), dim, generator=gen) / dim ** 0.5)
        feats[rows] = F.normalize(noisy, dim=1)
    return feats, ids.numpy()


def hub_features(n, dim=64, seed=0, duplicate_share=0.1, group_size=50, duplicate_noise=0.02):
    """n L2-normalised low-dimensional features that stress the Jaccard distance's memory:
    isotropic noise (no identity structure, so neighbourhoods overlap widely and the
    k-reciprocal encodings of most rows share columns) plus ``duplicate_share`` of the rows in
    near-duplicate groups of ``group_size`` (a static camera's frames of one person). Returns
    (features, group of each row; -1 for the noise rows)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=gen)
    groups = torch.full((n,), -1, dtype=torch.long)
    num_groups = int(n * duplicate_share) // group_size
    members = torch.randperm(n, generator=gen)[: num_groups * group_size]
    groups[members] = torch.arange(num_groups).repeat_interleave(group_size)
    centres = torch.randn(num_groups, dim, generator=gen)
    feats[members] = centres[groups[members]] + duplicate_noise * torch.randn(len(members), dim, generator=gen)
    return F.normalize(feats, dim=1), groups.numpy()


FEATURES = {"reid": reid_like_features, "hubs": hub_features}


def neighbour_stats(feats, labels):
    """Cluster count, share clustered, and the mean squared distance to the 1st, 10th and 30th
    neighbour (self excluded), from the exact search."""
    dist = knn_graph(feats, K1 + 1, method="exact")[0]
    return {"clusters": int(labels.max()) + 1, "clustered %": 100 * float((labels >= 0).mean()),
            "d1": float(dist[:, 1].mean()), "d10": float(dist[:, 10].mean()), "d30": float(dist[:, 30].mean())}


def check_against_real(path, methods, seed, recall_queries):
    """Cluster count and neighbour statistics of real features and of generated ones of the same
    size and dimension; then, on the real features, each approximate method's recall@30 and ARI
    against the exact labels."""
    real = F.normalize(torch.as_tensor(np.load(path)["features"]).float(), dim=1)
    rows, exact_labels = [], None
    # CUHK03-NP, the real set this was checked on, has 2 cameras; the scale runs use 6.
    for name, feats in (("real " + os.path.basename(path), real),
                        ("generated", reid_like_features(len(real), real.shape[1], seed, cameras=2)[0])):
        labels = cluster_features(feats, EPS, K1, K2, knn_options=dict(method="exact")).labels
        exact_labels = labels if exact_labels is None else exact_labels
        rows.append({"features": name, "N x D": f"{len(feats)} x {feats.shape[1]}", **neighbour_stats(feats, labels)})
    print(tabulate(rows, headers="keys", tablefmt="pipe", floatfmt=".3f"))
    rows = []
    for method in methods:
        if method == "exact":
            continue
        knn_result = knn_graph(real, K1, **method_options(method))
        labels = cluster_features(real, EPS, K1, K2, knn_result=knn_result).labels
        rows.append({"real features": method, "recall@30": recall_at_k(real, knn_result[1], recall_queries, seed),
                     "clusters": int(labels.max()) + 1, "ARI vs exact": adjusted_rand_score(exact_labels, labels)})
    print(tabulate(rows, headers="keys", tablefmt="pipe", floatfmt=".3f"))


def method_options(method):
    """knn_graph's options for "exact", "pca:DIM", "hnsw:DIM[:EF_SEARCH]" or "ivf:DIM[:PROBES]"."""
    name, dim, extra = (method.split(":") + ["", ""])[:3]
    options = dict(method=name, **({"pca_dim": int(dim)} if dim else {}))
    if extra:
        options[{"hnsw": "ef_search", "ivf": "ivf_probes"}[name]] = int(extra)
    return options


def recall_at_k(feats, knn_index, queries, seed):
    rows = np.random.default_rng(seed).choice(len(feats), min(queries, len(feats)), replace=False)
    exact = knn(feats[rows], feats, K1, backend="torch")[1]
    return float(np.mean([len(np.intersect1d(a, b)) / K1 for a, b in zip(knn_index[rows], exact)]))


def run_one(args):
    """One (size, dim, method) in this process; prints one JSON line."""
    # The compiled kernels (top-k heaps, pair sums) compile on their first call after an install
    # (numba caches them), once for each type they are given: a small clustering with the same
    # method first, so that the times are those of every epoch.
    options = method_options(args.method)
    small = FEATURES[args.features](2000, args.dim, seed=args.seed + 1)[0]
    cluster_features(small, EPS, K1, K2, knn_options=options)
    feats, true_ids = FEATURES[args.features](args.size, args.dim, seed=args.seed)
    method = options["method"]
    start = time.perf_counter()
    knn_result = knn_graph(feats, K1, **options)
    knn_s = time.perf_counter() - start
    # The peak so far (features, generator, k-NN): what the Jaccard step's budget does not cover.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    result = cluster_features(feats, EPS, K1, K2, knn_result=knn_result, memory_gb=args.memory_gb)
    labels = result.labels
    out = {"features": args.features, "N": args.size, "dim": args.dim, "method": args.method, "knn s": knn_s,
           **{f"{k} s": v for k, v in result.seconds.items()},
           "total s": knn_s + sum(result.seconds.values()),
           "peak RSS GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
           "peak RSS before clustering GiB": before,
           "clusters": int(labels.max()) + 1, "ARI vs true ids": adjusted_rand_score(true_ids[labels >= 0], labels[labels >= 0])
           if (labels >= 0).any() else float("nan")}
    out["recall@30"] = 1.0 if method == "exact" else recall_at_k(feats, knn_result[1], args.recall_queries, args.seed)
    if args.labels:
        if method == "exact":
            np.save(args.labels, labels)
        elif os.path.isfile(args.labels):
            out["ARI vs exact"] = adjusted_rand_score(np.load(args.labels), labels)
    print(json.dumps(out), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[12936, 32621, 130000, 280000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2048])
    parser.add_argument("--methods", nargs="+", default=["exact", "pca:128", "hnsw:128", "ivf:128"],
                        help="exact, pca:DIM, hnsw:DIM[:EF_SEARCH] or ivf:DIM[:PROBES] (CLUSTER.KNN.METHOD with "
                             "CLUSTER.KNN.PCA_DIM DIM and CLUSTER.KNN.EF_SEARCH or CLUSTER.KNN.IVF_PROBES)")
    parser.add_argument("--exact-max", type=int, default=140000, help="run the exact method up to this size")
    parser.add_argument("--labels-dir", help="keep the exact method's labels here (default: a temporary folder), so "
                                             "that a later call's ARI can use them without running it again")
    parser.add_argument("--recall-queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", choices=sorted(FEATURES), default="reid",
                        help="reid: identities with camera offsets (fitted to real features); hubs: hub_features")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="CLUSTER.MEMORY_GB, the Jaccard step's budget")
    parser.add_argument("--real", help="an .npz of real features: compare the generator with them and exit")
    parser.add_argument("--record", help="also write the rows, with what made them (commit, command, CPU), to this "
                                         "JSON file (benchmarks/tables.py reads it)")
    for name in ("--size", "--dim", "--method", "--labels"):  # one configuration, run in a child process
        parser.add_argument(name, help=argparse.SUPPRESS, type=int if name in ("--size", "--dim") else str)
    args = parser.parse_args()
    if args.real:
        return check_against_real(args.real, args.methods, args.seed, args.recall_queries)
    if args.size:
        return run_one(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; k1 {K1}, k2 {K2}, eps {EPS}", flush=True)
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.labels_dir or tmp
        os.makedirs(folder, exist_ok=True)
        for size in args.sizes:
            for dim in args.dims:
                # The exact method's labels, for the ARI of the others.
                labels = os.path.join(folder, f"{args.features}_{size}_{dim}_seed{args.seed}.npy")
                for method in args.methods:
                    if method == "exact" and (size > args.exact_max or os.path.isfile(labels)):
                        continue
                    cmd = [sys.executable, __file__, "--size", str(size), "--dim", str(dim), "--method", method,
                           "--labels", labels, "--seed", str(args.seed), "--features", args.features,
                           "--memory-gb", str(args.memory_gb),
                           "--recall-queries", str(args.recall_queries)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
                        failed.append({"features": args.features, "N": size, "dim": dim, "method": method,
                                       "error": lines[-1]})
                        continue
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                    print(json.dumps(rows[-1]), flush=True)
    print(tabulate(rows, headers="keys", tablefmt="pipe", floatfmt=".3f"))
    if args.record:
        settings = {"k1": K1, "k2": K2, "eps": EPS, "threads": torch.get_num_threads(), "seed": args.seed,
                    "memory_gb": args.memory_gb, "recall_queries": args.recall_queries}
        print(f"Record: {write_record(args.record, {'settings': settings, 'rows': rows, 'failed': failed})}")
    if failed:
        sys.exit(f"{len(failed)} configuration(s) failed: " + "; ".join(f"{f['N']} x {f['dim']} {f['method']}: "
                                                                        f"{f['error']}" for f in failed))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Evaluation at MSMT17 size: time and peak memory of ``evaluate_rank`` on generated features
(11,659 queries x 82,161 gallery images, 2048-d by default, 15 cameras), and the check that the
chunked result equals one computed in a single chunk on a subset.

    python benchmarks/bench_eval_scale.py [--queries 11659 --gallery 82161 --dim 2048 --chunk-size 1024]
    python benchmarks/bench_eval_scale.py --rerank --memory-gb 2                 # TEST.RERANK.ENABLED True
    python benchmarks/bench_eval_scale.py --rerank --features hubs --dim 64 --queries 8000 --gallery 72000

With --rerank the distances are k-reciprocal re-ranked (``ReRankedDistances``, a block of query
rows at a time within --memory-gb, TEST.RERANK.MEMORY_GB); --features hubs draws
``hub_features`` (low-dimensional noise with near-duplicate groups, the case that makes the
Jaccard pair sums large) instead of identities. Peak memory is the process's peak resident
set size (ru_maxrss), features included. ``--record FILE`` also writes the measurement as a JSON
record with its provenance (``benchmarks/tables.py`` reads it).
"""
import argparse
import resource
import sys
import time

import numpy as np
import torch

from pisl.evaluation.metrics import evaluate_rank
from pisl.evaluation.rerank import ReRankedDistances
from pisl.utils.provenance import write_record
from bench_cluster_scale import hub_features, reid_like_features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=11659)
    parser.add_argument("--gallery", type=int, default=82161)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--cameras", type=int, default=15)
    parser.add_argument("--chunk-size", type=int, default=1024, help="TEST.CHUNK_SIZE")
    parser.add_argument("--check-queries", type=int, default=300, help="queries of the one-chunk equality check")
    parser.add_argument("--rerank", action="store_true", help="re-rank (TEST.RERANK.ENABLED True, K1 20, K2 6, LAMBDA 0.3)")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="TEST.RERANK.MEMORY_GB")
    parser.add_argument("--features", choices=["reid", "hubs"], default="reid")
    parser.add_argument("--record", metavar="FILE", help="also write the measurement as a JSON record")
    args = parser.parse_args()
    n = args.queries + args.gallery
    if args.features == "hubs":
        feats, groups = hub_features(n, args.dim)
        ids = np.where(groups >= 0, groups, np.arange(n) + n)  # a noise row is an identity of its own
    else:
        feats, ids = reid_like_features(n, args.dim, cameras=args.cameras, images_per_id=n / 4101)  # MSMT17: 4,101 ids
    cams = np.random.default_rng(0).integers(args.cameras, size=n)
    q, g = slice(0, args.queries), slice(args.queries, n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    start = time.perf_counter()
    distmat = ReRankedDistances(feats[q], feats[g], 20, 6, 0.3, args.memory_gb) if args.rerank else None
    encoded = time.perf_counter() - start
    peak_encoded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    res = evaluate_rank(feats[q], feats[g], ids[q], ids[g], cams[q], cams[g], chunk_size=args.chunk_size, distmat=distmat)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    what = (f"re-ranked (encodings {encoded:.1f} s, peak RSS after them {peak_encoded:.2f} GiB; budget {args.memory_gb} "
            f"GiB)") if args.rerank else "plain"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.features} {args.queries} x {args.gallery} x "
          f"{args.dim}, {what}, chunk {args.chunk_size}: {seconds:.1f} s, peak RSS {peak:.2f} GiB (features and "
          f"generator {before:.2f} GiB)")
    print({k: round(v, 4) for k, v in res.items()})
    same = None
    if not args.rerank:
        c = slice(0, args.check_queries)
        sub = dict(query_feats=feats[q][c], gallery_feats=feats[g], q_pids=ids[q][c], g_pids=ids[g],
                   q_camids=cams[q][c], g_camids=cams[g])
        one, chunked = evaluate_rank(**sub, chunk_size=args.check_queries), evaluate_rank(**sub, chunk_size=37)
        same = all(abs(one[k] - chunked[k]) < 1e-9 for k in one)
        print(f"{args.check_queries} queries in one chunk vs chunks of 37: {'equal' if same else 'DIFFERENT'} {one}")
    if args.record:
        headers = ["features", "queries", "gallery", "dim", "distances", "seconds", "peak RSS GiB", "mAP",
                   "chunked = one chunk"]
        rows = [[args.features, args.queries, args.gallery, args.dim,
                 f"re-ranked within {args.memory_gb} GiB" if args.rerank else "plain", seconds, peak, res["mAP"],
                 "-" if same is None else same]]
        write_record(args.record, {"headers": headers, "rows": rows, "chunk_size": args.chunk_size})
    if same is False:
        sys.exit(1)


if __name__ == "__main__":
    main()

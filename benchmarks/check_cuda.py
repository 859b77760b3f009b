#!/usr/bin/env python
"""End-to-end check of the CUDA path in a few minutes; run it on a machine with a GPU.

    python benchmarks/check_cuda.py [--workdir /tmp/pisl_cuda]

1. One epoch of the PISL demo (synthetic data) on MODEL.DEVICE cuda with fp16 autocast and
   loss scaling, evaluated at the end (tools/train_net.py, exit status 0).
2. Feature extraction of the synthetic gallery with that model (tools/extract_features.py).
3. The pseudo-label k-NN on the GPU (exact; faiss-gpu when importable) against the CPU's on
   20,000 x 2048 generated features: the share of identical neighbours.
4. ONNX export of the model with its parts (tools/export_onnx.py --with-parts).
Prints one line per check and exits 1 if any failed, 2 when no CUDA device is visible.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from bench_cluster_scale import reid_like_features  # noqa: E402
from pisl.cluster import knn_graph  # noqa: E402

DEMO = os.path.join(REPO, "projects", "PISL", "configs", "demo.yml")


def tool(name, *args):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", name), *args], capture_output=True, text=True)
    return proc, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/pisl_cuda_check")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("Error: no CUDA device is visible (torch.cuda.is_available() is False)", file=sys.stderr)
        sys.exit(2)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    run, data = os.path.join(args.workdir, "run"), os.path.join(args.workdir, "datasets")
    results = []
    proc, seconds = tool("train_net.py", "--config-file", DEMO, "--overwrite", "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED",
                         "True", "SOLVER.AMP.DTYPE", "float16", "SOLVER.MAX_EPOCH", "1", "DATASETS.ROOT", data, "OUTPUT_DIR", run)
    results.append(("PISL demo epoch, cuda, fp16", proc.returncode == 0 and os.path.isfile(os.path.join(run, "results.json")),
                    f"{seconds:.0f} s", proc.stderr[-1500:]))
    weights = ["MODEL.WEIGHTS", os.path.join(run, "model_final.pth"), "DATASETS.ROOT", data]
    gallery = next(os.path.join(d, "bounding_box_test") for d, subdirs, _ in os.walk(data) if "bounding_box_test" in subdirs)
    feats_path = os.path.join(args.workdir, "feats.npz")
    proc, seconds = tool("extract_features.py", "--config-file", DEMO, "--input", gallery, "--output", feats_path, *weights)
    ok = proc.returncode == 0 and np.load(feats_path)["features"].shape[0] == len(os.listdir(gallery))
    results.append(("extraction, cuda", ok, f"{seconds:.0f} s", proc.stderr[-1500:]))
    feats = reid_like_features(20000, 2048)[0]
    start = time.perf_counter()
    gpu = knn_graph(feats, 30, method="exact")[1]
    seconds = time.perf_counter() - start
    torch_cpu = torch.topk(torch.cdist(feats[:2000], feats), 30, largest=False).indices.numpy()
    agree = float(np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(gpu[:2000], torch_cpu)]))
    results.append(("pseudo-label k-NN, 20,000 x 2048 on the GPU", agree > 0.99, f"{seconds:.1f} s, agreement {agree:.4f}", ""))
    proc, seconds = tool("export_onnx.py", "--config-file", DEMO, "--with-parts", "--output",
                         os.path.join(args.workdir, "pisl.onnx"), *weights)
    results.append(("ONNX export with parts", proc.returncode == 0, f"{seconds:.0f} s", proc.stdout[-300:] + proc.stderr[-1500:]))
    for name, ok, figure, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {figure}")
        if not ok:
            print(detail)
    sys.exit(0 if all(ok for _, ok, _, _ in results) else 1)


if __name__ == "__main__":
    main()

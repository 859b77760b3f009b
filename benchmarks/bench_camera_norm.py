#!/usr/bin/env python
"""How well an untrained model's features cluster, as they are and standardised per camera
(CLUSTER.PER_CAMERA_NORM), on the training images of a config's dataset. The true identities
only measure the clusters (purity, ARI, share of clusters that span several cameras). Also
prints the untrained model's test metrics: the floor a trained model is compared with.

    python benchmarks/bench_camera_norm.py --config-file projects/PISL/configs/demo.yml --seeds 0 1 --eps 0.2 0.3

The model is built with random weights (or the config's ImageNet weights) under each seed;
MODEL.WEIGHTS is not loaded. A few seconds a seed on the synthetic demo data.
"""
import argparse

import numpy as np
import torch.nn.functional as F
from tabulate import tabulate

from pisl.cluster import cluster_features, per_camera_standardised
from pisl.config import load_config
from pisl.data import build_test_loader
from pisl.data.datasets import DATASET_REGISTRY
from pisl.engine.cluster_hook import cluster_diagnostics
from pisl.evaluation import ReidEvaluator, extract_features
from pisl.modeling import build_model
from pisl.utils.env import seed_all


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.2, 0.3, 0.6])
    parser.add_argument("opts", nargs="*", default=[], metavar="KEY VALUE")
    args = parser.parse_args()
    cfg = load_config(args.config_file, args.opts)
    dataset = DATASET_REGISTRY.get(cfg.DATASETS.NAMES[0]).from_config(cfg)
    items = dataset.train
    pids = np.unique([pid for _, pid, _ in items], return_inverse=True)[1]
    camids = np.array([cam for _, _, cam in items])
    rows, untrained = [], []
    for seed in args.seeds:
        seed_all(seed)
        model = build_model(cfg).eval()
        for name, metrics in ReidEvaluator(cfg, dataset).evaluate(model).items():
            untrained.append([seed, name, metrics["mAP"], metrics["Rank-1"]])
        feats = extract_features(model, build_test_loader(cfg, items), model.cluster_features)[0]["global"]
        for name, clustered in (("as extracted", F.normalize(feats, dim=1)),
                                ("standardised per camera", per_camera_standardised(feats, camids))):
            for eps in args.eps:
                labels = cluster_features(clustered, eps, cfg.CLUSTER.K1, cfg.CLUSTER.K2, cfg.CLUSTER.MIN_SAMPLES).labels
                stats = cluster_diagnostics(labels, camids, pids)
                rows.append([seed, name, eps, stats["clusters"], stats["clustered images"], stats.get("purity %", 0.0),
                             stats.get("ARI", 0.0), stats["multi-camera clusters %"]])
    print(f"{len(items)} training images of {cfg.DATASETS.NAMES[0]}, {len(set(camids.tolist()))} cameras, "
          f"untrained {cfg.MODEL.BACKBONE.NAME}:")
    print(tabulate(rows, headers=["seed", "features", "eps", "clusters", "clustered images", "purity %", "ARI",
                                  "multi-camera clusters %"], floatfmt=".3g"))
    print("The untrained models on the test split:")
    print(tabulate(untrained, headers=["seed", "feature", "mAP", "Rank-1"], floatfmt=".2f"))


if __name__ == "__main__":
    main()

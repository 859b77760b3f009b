#!/usr/bin/env python
"""Pictures of a trained model or a run, as PNG files (needs matplotlib: pip install -e ".[vis]").

    python tools/visualize.py ranked   --config-file F --output ranked.png MODEL.WEIGHTS W   # + ranked_cmc.png
    python tools/visualize.py curves   --run OUTPUT_DIR [OUTPUT_DIR ...] --output curves.png
    python tools/visualize.py parts    --config-file F --output parts.png MODEL.WEIGHTS W    # PISL part boxes
    python tools/visualize.py clusters --run OUTPUT_DIR [--epoch E] --output clusters.png

ranked: random queries of the first test set with their top gallery images (green: same
identity) and, beside it, the CMC curve (``<output>_cmc.png``). curves: mAP and rank-1 per
evaluated epoch from the runs' metrics.jsonl, one line per run and feature. parts: the part boxes that the model's
``cluster_features`` gives (PISL: the DDIM-sampled boxes) on 16 test images, and the spread of
the boxes over --num-images images against the stripes; their statistics are printed. clusters: a montage of pseudo-
identities and outliers of one epoch (default: the last) from the run's saved pseudo-labels.
"""
import glob
import os
import sys

import numpy as np
import torch

from pisl import visualization as vis
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.config import ConfigError
from pisl.data import build_dataset, build_test_loader
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser, OneLineErrorParser
from pisl.engine.hooks import metrics_file
from pisl.evaluation import extract_features, pairwise_distance, rank_metrics, with_misalignment


def ranked(args, cfg):
    dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
    predictor = Predictor(cfg)
    qf, gf = (predictor([p for p, _, _ in items]) for items in (dataset.query, dataset.gallery))
    dist = pairwise_distance(qf, gf, cfg.TEST.METRIC)
    written = vis.save(vis.ranked_lists(dataset.query, dataset.gallery, dist, args.num_queries, args.topk, args.seed),
                       args.output)
    as_tensor = lambda items, k: torch.tensor([item[k] for item in items])
    cmc, _, _, valid = rank_metrics(dist, as_tensor(dataset.query, 1), as_tensor(dataset.gallery, 1),
                                    as_tensor(dataset.query, 2), as_tensor(dataset.gallery, 2), max_rank=20)
    cmc_path = os.path.splitext(args.output)[0] + "_cmc.png"
    return [written, vis.save(vis.cmc_curve({dataset.name: 100 * cmc[valid].float().mean(0).numpy()}), cmc_path)]


def parts(args, cfg):
    dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
    items = [dataset.gallery[i] for i in np.random.default_rng(args.seed).permutation(len(dataset.gallery))[: args.num_images]]
    model = Predictor(cfg).model
    if not hasattr(model, "describe_boxes"):  # a meta-architecture with part boxes offers it (PISL)
        raise ConfigError(f"{cfg.MODEL.META_ARCHITECTURE} has no part boxes to draw (no describe_boxes method)")
    loader = build_test_loader(cfg, items)
    feats, idx = extract_features(model, loader, with_misalignment(model.cluster_features))
    images = [loader.dataset.framed(i) for i in idx.tolist()]  # as the model saw them (INPUT.MISALIGN)
    table, picture = model.describe_boxes(feats, images, f"{len(idx)} images of {dataset.name}")
    print(table)
    return [vis.save(picture, args.output)]


def curves(args):
    if len(args.run) == 1:
        name = os.path.basename(os.path.normpath(args.run[0]))
        return [vis.save(vis.epoch_curves(metrics_file(args.run[0]), title=f"run {name}"), args.output)]
    # Runs of a benchmark often share their last folder name (seed1/row, seed2/row): label by the last two.
    labels = [os.path.join(*os.path.normpath(run).split(os.sep)[-2:]) for run in args.run]
    return [vis.save(vis.epoch_curves({label: metrics_file(run) for label, run in zip(labels, args.run)},
                                      title=f"{len(args.run)} runs"), args.output)]


def clusters(args):
    folder = os.path.join(args.run, "pseudo_labels")
    epochs = sorted(glob.glob(os.path.join(folder, "epoch_*.npz")))
    if not epochs:
        raise FileNotFoundError(f"No saved pseudo-labels in {folder} (an unsupervised run writes them each epoch)")
    path = os.path.join(folder, f"epoch_{args.epoch:03d}.npz") if args.epoch is not None else epochs[-1]
    saved = np.load(path)
    with open(os.path.join(folder, "items.txt")) as f:
        paths = f.read().splitlines()
    epoch = int(os.path.basename(path)[len("epoch_"):-len(".npz")])
    title = f"run {os.path.basename(os.path.normpath(args.run))}: pseudo-identities of epoch {epoch}"
    return [vis.save(vis.cluster_montage(paths, saved["labels"], saved["camids"], args.num_clusters, args.per_cluster,
                                         args.seed, title), args.output)]


@exit_on_bad_input
def main():
    commands = {"ranked": ranked, "parts": parts, "curves": curves, "clusters": clusters}
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    command = sys.argv[1]
    with_config = command in ("ranked", "parts")
    # Only the config commands take KEY VALUE overrides (and flags among them); the others
    # need a plain parser, whose --run takes several folders.
    parser = (ConfigArgumentParser if with_config else OneLineErrorParser)(prog=f"visualize.py {command}")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="which random queries / images / clusters")
    if with_config:
        parser.add_argument("--num-queries", type=int, default=6)
        parser.add_argument("--topk", type=int, default=8)
        parser.add_argument("--num-images", type=int, default=200)
    else:
        parser.add_argument("--run", required=True, nargs="+" if command == "curves" else None,
                            help="the run's OUTPUT_DIR (curves: one or more, drawn together)")
        parser.add_argument("--epoch", type=int, default=None)
        parser.add_argument("--num-clusters", type=int, default=5)
        parser.add_argument("--per-cluster", type=int, default=8)
    args = parser.parse_args(sys.argv[2:])
    if with_config:
        written = commands[command](args, checked_config(args.config_file, args.opts, need_weights=True))
    else:
        written = commands[command](args)
    print("Wrote " + ", ".join(written))


if __name__ == "__main__":
    main()

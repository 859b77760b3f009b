#!/usr/bin/env python
"""What MODEL.NORM_BATCH costs: a training step (forward and backward) of a config's backbone and
BN neck with plain BatchNorm over the whole batch, against ghost batches of NORM images.

    python benchmarks/bench_norm.py [--config-file F] [--norm 16] [--repeats 5] [--iters 10] [--record FILE]

Random images of the config's training size, a batch of SOLVER.IMS_PER_BATCH, one process. The
two settings alternate (plain, ghost, plain, ...) so that a machine's drift hits both; the
table gives the median over repeats of the mean step time, and the ratio.
"""
import argparse
import statistics
import time

import torch

from pisl.config import load_config
from pisl.modeling import build_model
from pisl.modeling.norm import apply_norm_batch
from pisl.utils.env import processor_description
from pisl.utils.provenance import write_record
from tabulate import tabulate


def step_time(model, images, iters):
    model.train()
    start = time.perf_counter()
    for _ in range(iters):
        features = model.heads(model.backbone(images))["features"] if hasattr(model, "heads") else model(images)
        features.pow(2).mean().backward()
    return (time.perf_counter() - start) / iters


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="projects/PISL/configs/cuhk03np.yml")
    parser.add_argument("--norm", type=int, default=16, help="ghost batch size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--record", default="")
    args = parser.parse_args()
    cfg = load_config(args.config_file, ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.NORM_BATCH", "0"])
    torch.manual_seed(0)
    images = torch.randn(cfg.SOLVER.IMS_PER_BATCH, 3, *cfg.INPUT.SIZE_TRAIN)
    models = {"plain": build_model(cfg, 10), f"ghost {args.norm}": build_model(cfg, 10)}
    apply_norm_batch(models[f"ghost {args.norm}"], args.norm, cfg.SOLVER.IMS_PER_BATCH, 1)
    times = {name: [] for name in models}
    for name, model in models.items():  # warm-up
        step_time(model, images, 1)
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(step_time(model, images, args.iters))
    medians = {name: statistics.median(t) for name, t in times.items()}
    plain = medians["plain"]
    rows = [[name, f"{1000 * m:.1f}", f"{m / plain:.3f}"] for name, m in medians.items()]
    print(f"{cfg.MODEL.BACKBONE.NAME} {cfg.INPUT.SIZE_TRAIN[0]}x{cfg.INPUT.SIZE_TRAIN[1]}, batch "
          f"{cfg.SOLVER.IMS_PER_BATCH}, {processor_description(torch.device('cpu'))}")
    print(tabulate(rows, headers=["BatchNorm", "ms a step (median)", "x plain"], tablefmt="pipe"))
    if args.record:
        write_record(args.record, {"ms_per_step": {k: 1000 * v for k, v in medians.items()},
                                   "all_ms": {k: [1000 * x for x in v] for k, v in times.items()}}, cfg)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Cost of PISL's diffusion-STN parts against PPLR's stripes, on the same backbone and batch.

    python benchmarks/bench_pisl.py                       # cuhk03np.yml vs cuhk03np_stripes.yml
    python benchmarks/bench_pisl.py --iters 20 MODEL.DEVICE cuda
    python benchmarks/bench_pisl.py --record records/tools/bench_pisl_cuhk03np.json   # also as a record

Times (medians, the two models taking turns) (1) one training iteration (SimpleTrainer's
step: forward, all configured losses, backward, optimizer step) and (2) the per-epoch feature
extraction of the clustering hook (``cluster_features``: global feature plus parts, i.e. a
DDIM sample of PISL.DIFFUSION.SAMPLE_STEPS steps for PISL), for the two configs, and prints
the seconds and the ratios. Inputs are random images of the configured
sizes: data loading is the same for both and is left out. Pseudo-labels are clusters of
DATALOADER.NUM_INSTANCE consecutive images over two cameras, so every loss has work to do.
Trailing KEY VALUE pairs override both configs. ``--record FILE`` also writes the table as a
JSON record with its provenance and the PISL config (``benchmarks/tables.py`` reads it).
"""
import argparse
import itertools
import statistics
import time

import numpy as np
import torch
from tabulate import tabulate

from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.engine import PseudoLabels, SimpleTrainer, notify_pseudo_labels
from pisl.modeling import build_model
from pisl.solver import build_optimizer
from pisl.utils.env import resolve_device, seed_all
from pisl.utils.provenance import write_record


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_images(n, size, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), generator=gen).float()


@torch.no_grad()
def extract(model, images, batch_size):
    """``cluster_features`` over ``images``, in batches; returns (seconds, features)."""
    model.eval()
    sync(model.device)
    start = time.perf_counter()
    chunks = [model.cluster_features({"images": images[i:i + batch_size]}) for i in range(0, len(images), batch_size)]
    sync(model.device)
    return time.perf_counter() - start, {k: torch.cat([c[k] for c in chunks]).cpu() for k in chunks[0]}


def trainer_for(model, optimizer, batch):
    """The core's SimpleTrainer, so that the timed step is the one a run takes; it is fed the
    same batch at every step (its ``before_epoch`` would need a real loader)."""
    trainer = SimpleTrainer(model, None, optimizer)
    trainer._data_iter = itertools.repeat(batch)
    return trainer


def prepare(cfg, args):
    """A trainer (model, optimizer, a pseudo-labelled batch; pseudo-labels from a first,
    untimed extraction) and the extraction images."""
    seed_all(cfg.SEED)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    n, k = args.extract_images, cfg.DATALOADER.NUM_INSTANCE
    images = random_images(n, cfg.INPUT.SIZE_TEST, 0)
    _, feats = extract(model, images, cfg.TEST.IMS_PER_BATCH)
    labels, camids = np.arange(n) // k, np.arange(n) % 2
    # An epoch past the label-smoothing switch, so PSC runs its agreement-aware branch.
    epoch = cfg.PISL.PSC.LS_START_EPOCH
    notify_pseudo_labels(model, PseudoLabels(epoch, feats, labels, camids, np.arange(n), int(labels.max()) + 1))
    b = cfg.SOLVER.IMS_PER_BATCH
    batch = {"images": random_images(b, cfg.INPUT.SIZE_TRAIN, 1), "targets": torch.as_tensor(labels[:b]),
             "camids": torch.as_tensor(camids[:b]), "index": torch.arange(b)}
    return trainer_for(model, optimizer, batch), images


@exit_on_bad_input
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="projects/PISL/configs/cuhk03np.yml")
    parser.add_argument("--baseline-config", default="projects/PISL/configs/cuhk03np_stripes.yml")
    parser.add_argument("--iters", type=int, default=10, help="timed training iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--extract-images", type=int, default=1024, help="images in the timed extraction")
    parser.add_argument("--repeats", type=int, default=3, help="timed extractions (median reported)")
    parser.add_argument("--record", metavar="FILE", help="also write the table as a JSON record")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for both configs")
    args = parser.parse_args()

    setups, cfgs = {}, {}
    for name, path in (("stripes (PPLR)", args.baseline_config), ("PISL", args.config_file)):
        cfgs[name] = cfg = checked_config(path, args.opts, need_data=False)
        setups[name] = prepare(cfg, args)
        print(f"{name}: {path}, {cfg.PISL.PART_GENERATOR}, losses {list(cfg.MODEL.LOSSES.NAMES)}", flush=True)
    # The two models take turns, so that slow phases of the machine (and the allocator warming
    # up, which alone made whichever model ran second look 2x faster) hit both alike.
    iters, extracts = {name: [] for name in setups}, {name: [] for name in setups}
    for i in range(args.warmup + args.iters):
        for name, (trainer, _) in setups.items():
            start = time.perf_counter()
            trainer.run_step()
            sync(trainer.model.device)  # the step queues device work without waiting for it
            if i >= args.warmup:
                iters[name].append(time.perf_counter() - start)
    for _ in range(args.repeats):
        for name, (trainer, images) in setups.items():
            extracts[name].append(extract(trainer.model, images, cfgs[name].TEST.IMS_PER_BATCH)[0])
    b, p = ((statistics.median(iters[n]), statistics.median(extracts[n])) for n in ("stripes (PPLR)", "PISL"))
    setting = (f"torch {torch.__version__}, device {resolve_device(cfg.MODEL.DEVICE)}, {torch.get_num_threads()} threads, "
               f"backbone {cfg.MODEL.BACKBONE.NAME}, batch {cfg.SOLVER.IMS_PER_BATCH} x {tuple(cfg.INPUT.SIZE_TRAIN)}, "
               f"{cfg.PISL.NUM_PARTS} parts, {cfg.PISL.DIFFUSION.SAMPLE_STEPS} DDIM steps, "
               f"extraction of {args.extract_images} images")
    print(setting)
    headers = ["", "stripes (PPLR)", "PISL", "ratio", "target"]
    rows = [["training iteration (s)", b[0], p[0], p[0] / b[0], 1.5],
            ["feature extraction (s)", b[1], p[1], p[1] / b[1], 1.3]]
    print(tabulate(rows, headers=headers, floatfmt=".3f", tablefmt="pipe"))
    if args.record:
        write_record(args.record, {"setting": setting, "headers": headers, "rows": rows}, cfgs["PISL"])


if __name__ == "__main__":
    main()

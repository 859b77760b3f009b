#!/usr/bin/env python
"""Feature extraction with 1 and N processes: the clustering hook's per-epoch pass over the
training set (``extract_features`` with the model's ``cluster_features``), sharded over ranks
and gathered.

    python benchmarks/bench_extract.py --config-file projects/PISL/configs/cuhk03np.yml --procs 1,2 \\
        MODEL.BACKBONE.PRETRAIN_PATH path/to/mobilenet_v2_imagenet.pth

Prints the seconds per process count (one untimed warm-up batch first), the speed-up, and the
largest difference between the N-process features and the 1-process ones (they must agree).
On a CPU the processes share the machine's cores; on GPUs each process has its own device.
Trailing KEY VALUE pairs override the config.
"""
import os
import tempfile
import time

import torch
from tabulate import tabulate

from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.config import load_config
from pisl.data import build_dataset, build_test_loader
from pisl.engine import build_train_items, launch
from pisl.engine.defaults import ConfigArgumentParser
from pisl.evaluation import extract_features
from pisl.modeling import build_model
from pisl.utils import comm
from pisl.utils.env import seed_all


def run(args, out_path):
    cfg = load_config(args.config_file, args.opts)
    seed_all(cfg.SEED)  # the same weights in every process
    model = build_model(cfg)
    items, _ = build_train_items([build_dataset(n, cfg) for n in cfg.DATASETS.NAMES], keep_labels=False)
    items = items[: args.limit] if args.limit else items
    loader = build_test_loader(cfg, items)
    with torch.no_grad():
        model.eval()
        model.cluster_features(next(iter(loader)))  # warm-up: allocator, threads, lazy init
    comm.synchronize()
    start = time.perf_counter()
    feats, idx = extract_features(model, loader, model.cluster_features)
    comm.synchronize()
    seconds = time.perf_counter() - start
    if comm.is_main_process():
        torch.save({"seconds": seconds, "feats": feats, "idx": idx, "images": len(items)}, out_path)


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--limit", type=int, default=0, help="first N training images only (0 = all)")
    args = parser.parse_args()
    checked_config(args.config_file, args.opts)  # bad input fails here, not in every process
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for procs in map(int, args.procs.split(",")):
            out = os.path.join(tmp, f"{procs}.pt")
            launch(run, procs, args=(args, out))
            result = torch.load(out, weights_only=True)
            reference = reference or result
            diff = max((result["feats"][k] - reference["feats"][k]).abs().max().item() for k in result["feats"])
            rows.append([procs, result["images"], f"{result['seconds']:.2f}",
                         f"{reference['seconds'] / result['seconds']:.2f}x", f"{diff:.2e}"])
    print(tabulate(rows, headers=["processes", "images", "seconds", "speed-up", "max |diff| vs first"], tablefmt="pipe"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Print one markdown table from several output folders (results.json or eval_results.json,
wall_seconds when present, and the per-epoch evaluations in metrics.json).

    python tools/collect_results.py logs/cuhk03np/cluster_contrast logs/cuhk03np/pisl
"""
import json
import os
import sys

from tabulate import tabulate


def load(folder):
    for name in ("results.json", "eval_results.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path) as f:
                return next(iter(json.load(f).values()))
    return None


def wall(folder):
    path = os.path.join(folder, "wall_seconds")
    return f"{int(open(path).read()) / 60:.1f} min" if os.path.isfile(path) else "-"


def per_epoch(folder):
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return ""
    out = []
    for line in open(path):
        rec = json.loads(line)
        keys = [k for k in rec if k.endswith("/mAP")]
        if keys:
            r1 = rec[keys[0].replace("/mAP", "/Rank-1")]
            out.append(f"e{rec['epoch']}: {rec[keys[0]]:.1f}/{r1:.1f}")
    return ", ".join(out)


def main(folders):
    rows = []
    for folder in folders:
        res = load(folder)
        if res is None:
            rows.append([os.path.basename(folder), "missing", "", "", "", "", ""])
            continue
        rows.append([os.path.basename(folder)] + [f"{res[k]:.1f}" for k in ("mAP", "Rank-1", "Rank-5", "Rank-10")]
                    + [wall(folder), per_epoch(folder)])
    print(tabulate(rows, headers=["run", "mAP", "R1", "R5", "R10", "wall", "mAP/R1 per evaluated epoch"], tablefmt="pipe"))


if __name__ == "__main__":
    main(sys.argv[1:])

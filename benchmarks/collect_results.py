#!/usr/bin/env python
"""Print one markdown table from several output folders (results.json or eval_results.json,
wall_seconds when present, and the per-epoch evaluations in metrics.jsonl).

    python benchmarks/collect_results.py logs/cuhk03np/cluster_contrast logs/cuhk03np/pisl
    python benchmarks/collect_results.py --seeds logs/cuhk03np_seeds ROW [ROW ...] [--paired-to REF [REF ...]]
    python benchmarks/collect_results.py --record RUN_DIR RECORD_DIR
    python benchmarks/collect_results.py --same-start START_RUN_DIR START_RECORD_DIR
    python benchmarks/collect_results.py --same-config RECORD_DIR CONFIG_FILE [KEY VALUE ...]
    python benchmarks/collect_results.py --terms RUN_DIR [PREFIX]

``--seeds`` reads LOG_ROOT/seed*/ROW for each row and prints mean +- std (sample std) over the
seeds that finished, the global+parts mAP where evaluated, and the last clustering's
diagnostics (means over seeds) from the runs' clustering histories; the starting model
(LOG_ROOT/imagenet or LOG_ROOT/source, evaluated once) comes first. ``--paired-to`` adds, for
each row and reference row, the mean +- std over their common seeds of the per-seed mAP
difference (row - reference), of the main feature and, where both rows have parts, of
global+parts. Both tables also give the mAP averaged over the last
``LATE_EPOCHS`` evaluated epochs, where a run was evaluated that often: a run's mAP swings by
1-2 points from one epoch to the next, so a difference that holds for the final epoch and for
this average does not hang on one evaluation (no epoch is chosen by its test score). It does
not replace seeds: on CUHK01 seeds 1-3 its paired stds were as large as the final epoch's.

``--terms`` prints a run's epoch means of the loss and of each term (``epoch_mean/*`` in its
metrics) and its mAP after each evaluated epoch; PREFIX keeps the columns that start with it:
loss terms (e.g. PSCLoss, with their sum) or other per-epoch figures (e.g. parts/at_bound,
cluster/purity). A quoted wildcard, e.g. ``--terms 'RECORDS/seed*/ROW' PSCLoss``, averages each
figure over the runs it matches.

``--record`` copies what a finished run is judged by (results, per-step metrics, log, config,
wall time, clustering history, what made it; not the checkpoints) into RECORD_DIR, the bulky
files gzipped and the log without the merged config that ``config.yaml.gz`` keeps, small enough
to commit:
a benchmark longer than one session continues from its records, and its table can be
re-printed from them.

``--same-config`` exits 2, naming each key that differs, unless CONFIG_FILE with the overrides
merges the config recorded in RECORD_DIR (``config_differences``): a row whose config changed
must be recorded under a new name, never mixed with its old records.

``--same-start`` exits 2 unless a fresh evaluation of the starting model gives the recorded
figures: new runs pair with recorded ones only when they start from the same model on a CPU
that rounds floats the same way (a source model retrained on an AVX512 CPU evaluated to 21.35
mAP on CUHK01, against 23.08 recorded on AVX2).
"""
import glob
import gzip
import json
import os
import shutil
import sys

import numpy as np
import torch
from tabulate import tabulate




def record_path(folder, name):
    """A run folder's or a record's file ``name``: as the run wrote it, or gzipped as records keep it."""
    path = os.path.join(folder, name)
    return path + ".gz" if not os.path.isfile(path) and os.path.isfile(path + ".gz") else path


def open_text(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


def metrics_path(folder):
    """A run's or record's metrics (JSON Lines): metrics.jsonl, gzipped or not, or metrics.json
    as runs before it wrote."""
    path = record_path(folder, "metrics.jsonl")
    return path if os.path.isfile(path) else record_path(folder, "metrics.json")


def load(folder):
    for name in ("results.json", "eval_results.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path) as f:
                return next(iter(json.load(f).values()))
    return None


LATE_EPOCHS = 3


def late_map(folder):
    """Mean main-feature mAP of the last LATE_EPOCHS evaluated epochs (metrics.jsonl), or None
    where the run was evaluated fewer times."""
    path = metrics_path(folder)
    if not os.path.isfile(path):
        return None
    by_epoch = {}
    for line in open_text(path):
        rec = json.loads(line)
        # "DATASET/mAP" is the main feature; "DATASET/global+parts/mAP" the other one
        by_epoch.update({rec["epoch"]: v for k, v in rec.items() if k.endswith("/mAP") and k.count("/") == 1})
    late = [by_epoch[e] for e in sorted(by_epoch)[-LATE_EPOCHS:]]
    return float(np.mean(late)) if len(late) == LATE_EPOCHS else None


def wall(folder):
    path = os.path.join(folder, "wall_seconds")
    return f"{int(open(path).read()) / 60:.1f} min" if os.path.isfile(path) else "-"


def per_epoch(folder):
    path = metrics_path(folder)
    if not os.path.isfile(path):
        return ""
    out = []
    for line in open_text(path):
        rec = json.loads(line)
        keys = [k for k in rec if k.endswith("/mAP")]
        if keys:
            r1 = rec[keys[0].replace("/mAP", "/Rank-1")]
            out.append(f"e{rec['epoch']}: {rec[keys[0]]:.1f}/{r1:.1f}")
    return ", ".join(out)


RECORDED = ["results.json", "eval_results.json", "wall_seconds", "provenance.json"]
HISTORY = os.path.join("pseudo_labels", "history.json")
# Kept gzipped in a record: the bulk of it.
COMPRESSED = ["metrics.jsonl", "metrics.json", "log.txt", "config.yaml"]


CONFIG_DUMP = "Running with config:"


def without_config_dump(log):
    """A run's log without the merged config that its first lines print (``Running with config:``
    and the YAML under it, up to the next logged line): a record keeps that config once, in
    ``config.yaml.gz``."""
    kept, in_dump = [], False
    for line in log.splitlines(keepends=True):
        if in_dump and not line.startswith("["):
            continue
        in_dump = line.rstrip().endswith(CONFIG_DUMP)
        kept.append(line)
    return "".join(kept)


def write_gzip(path, data):
    """``data`` (bytes) gzipped to ``path``, with no time stamp: the same run gives the same bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(data)


def clustering_history(folder):
    """The clustering hook's per-epoch diagnostics: its history.json, or (runs from before it
    wrote one) the history in the last checkpoint; [] when neither is there."""
    path = record_path(folder, HISTORY)
    if os.path.isfile(path):
        with open_text(path) as f:
            return json.load(f)
    path = os.path.join(folder, "last_checkpoint.pth")
    if not os.path.isfile(path):
        return []
    return torch.load(path, weights_only=True)["hooks"].get("ClusteringHook", {}).get("history", [])


def last_clustering(folder):
    history = clustering_history(folder)
    return history[-1] if history else None


def record(run_dir, record_dir):
    if load(run_dir) is None:
        print(f"Error: {run_dir} has no results.json: the run did not finish, nothing recorded", file=sys.stderr)
        sys.exit(2)
    os.makedirs(record_dir, exist_ok=True)
    for name in RECORDED + COMPRESSED:
        source = os.path.join(run_dir, name)
        if not os.path.isfile(source):
            continue
        if name in COMPRESSED:
            with open(source, "rb") as f:
                data = f.read()
            if name == "log.txt":
                data = without_config_dump(data.decode()).encode()
            write_gzip(os.path.join(record_dir, name + ".gz"), data)
        else:
            shutil.copy2(source, os.path.join(record_dir, name))
    history = clustering_history(run_dir)
    if history:  # an --eval-only run clusters nothing
        os.makedirs(os.path.join(record_dir, "pseudo_labels"), exist_ok=True)
        write_gzip(os.path.join(record_dir, HISTORY + ".gz"), json.dumps(history, indent=1).encode())


# Keys a run does not read, given another key's value: they may differ between a record and now.
INERT = {("PISL.PART_GENERATOR", "stripes"): ("PISL.DIFFUSION.", "PISL.STN.", "PISL.SCD."),
         ("PISL.DIFFUSION.BOXES", "partition"): ("PISL.DIFFUSION.BOX_LIMITS",),
         ("PISL.DIFFUSION.BOXES", "affine"): ("PISL.DIFFUSION.MIN_PART_HEIGHT", "PISL.SCD.BARRIER_TARGET")}
# Keys retired from the code, with the value that turned them off: a record that has one at
# that value ran what the code runs now (docs/pisl_parts.md, "Retired options", lists what each one gave).
RETIRED = {"PISL.DIFFUSION.STN_PATCH_SHARE": 0.0, "PISL.DIFFUSION.EQUAL_PARTS": False, "PISL.SCD.W_OVERLAP": 0.0,
           "PISL.PSC.KL_GRADIENT": "features", "PISL.PSC.KL_RAMP_ITERS": 0}


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def config_differences(record_dir, config_file, opts):
    """The keys whose value in the config a run of ``config_file`` + ``opts`` would merge differs
    from the record's config.yaml: one line each. A key the record lacks (added to the code after
    it) counts as equal when it has its default, which keeps the earlier behaviour, and a key
    retired since at the value that turned it off (``RETIRED``) as absent; OUTPUT_DIR and keys
    the run does not read (``INERT``) are left out."""
    import yaml
    from pisl.config import get_cfg, load_config

    now = flat(yaml.safe_load(load_config(config_file, opts, check=False).dump()))
    defaults = flat(yaml.safe_load(get_cfg().dump()))
    with open_text(record_path(record_dir, "config.yaml")) as f:
        recorded = flat(yaml.safe_load(f))
    inert = tuple(p for (key, value), prefixes in INERT.items() if now.get(key) == value for p in prefixes)
    lines = []
    for key in sorted(set(now) | set(recorded)):
        if key == "OUTPUT_DIR" or key.startswith(inert):
            continue
        old = recorded.get(key, defaults.get(key, "<absent>"))
        if key not in now and key in RETIRED and old == RETIRED[key]:
            continue
        if now.get(key, "<absent>") != old:
            lines.append(f"{key}: recorded {old!r}, now {now.get(key, '<absent>')!r}")
    return lines


def same_config(record_dir, config_file, opts):
    """Exit 2, naming each differing key, unless a run of ``config_file`` + ``opts`` would merge
    the config of the record in ``record_dir``."""
    lines = config_differences(record_dir, config_file, opts)
    if lines:
        print(f"Error: {record_dir} was recorded with another config than {config_file} merges now; record the "
              "changed row under a new name (or another RECORD_ROOT) instead of mixing them:\n  " + "\n  ".join(lines),
              file=sys.stderr)
        sys.exit(2)


def same_start(run_dir, record_dir, tolerance=1e-6):
    now, recorded = load(run_dir), load(record_dir)
    differ = [f"{key} {now[key]:.6f} (recorded {recorded[key]:.6f})" for key in recorded
              if key in now and abs(now[key] - recorded[key]) > tolerance]
    if differ:
        print(f"Error: the starting model {run_dir} does not evaluate as recorded in {record_dir}: "
              f"{', '.join(differ)}. Runs from it would not pair with the recorded runs (another source model, or "
              "a CPU that rounds differently, e.g. AVX512 vs AVX2): record them under another RECORD_ROOT.",
              file=sys.stderr)
        sys.exit(2)
    print(f"The starting model evaluates as recorded: mAP {now['mAP']:.2f}")


def global_parts_map(results):
    """A run's final global+parts mAP (results.json), or None for a model without parts."""
    return next((v["mAP"] for k, v in results.items() if k.endswith("/global+parts")), None)


def mean_std(values, fmt="{:.2f}"):
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} +- {fmt.format(np.std(values, ddof=1))}"


def seeds_table(log_root, rows):
    diag_formats = {"clusters": "{:.0f}", "clustered images": "{:.0f}", "multi-camera clusters %": "{:.1f}",
                    "purity %": "{:.1f}", "ARI": "{:.3f}"}
    table = []
    for start, label in (("imagenet", "ImageNet start"), ("source", "source model")):
        res = load(os.path.join(log_root, start))
        if res:
            table.append([label, 1, f"{res['mAP']:.2f}", "-", f"{res['Rank-1']:.2f}", "-", "-", "-"]
                         + ["-"] * len(diag_formats))
    for row in rows:
        runs = finished_runs(log_root, row)
        folders, results = list(runs), list(runs.values())
        main_res = [next(iter(r.values())) for r in results]
        parts = [m for m in map(global_parts_map, results) if m is not None]
        # What the parts add at test time, run by run: the same model's global+parts against
        # its global feature, a difference free of the seeds' spread.
        gains = [global_parts_map(r) - m["mAP"] for r, m in zip(results, main_res) if global_parts_map(r) is not None]
        diags = [d for d in map(last_clustering, folders) if d]
        walls = [int(open(os.path.join(f, "wall_seconds")).read()) / 60 for f in folders
                 if os.path.isfile(os.path.join(f, "wall_seconds"))]
        late = [m for m in map(late_map, folders) if m is not None]
        table.append([row, len(results), mean_std([r["mAP"] for r in main_res]), mean_std(late),
                      mean_std([r["Rank-1"] for r in main_res]), mean_std(parts), mean_std(gains),
                      mean_std(walls, "{:.1f}")]
                     + [mean_std([float(d[k]) for d in diags if k in d], fmt) for k, fmt in diag_formats.items()])
    headers = (["run", "seeds", "mAP", f"mAP, last {LATE_EPOCHS} epochs", "R1", "mAP global+parts",
                "global+parts - global", "wall min"]
               + [f"last: {k}" for k in diag_formats])
    print(tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True))  # keep "1.00" as written


def finished_runs(log_root, row):
    """{folder: its results.json} of a row's finished runs (LOG_ROOT/seed*/ROW), in seed order."""
    runs = {}
    for folder in sorted(glob.glob(os.path.join(log_root, "seed*", row))):
        path = os.path.join(folder, "results.json")
        if os.path.isfile(path):
            with open(path) as f:
                runs[folder] = json.load(f)
    return runs


def seed_maps(log_root, row):
    """{seed folder name: (final mAP, late_map, final global+parts mAP or None)} of a row's
    finished runs."""
    return {os.path.basename(os.path.dirname(folder)): (next(iter(results.values()))["mAP"], late_map(folder),
                                                        global_parts_map(results))
            for folder, results in finished_runs(log_root, row).items()}


def paired_table(log_root, rows, references):
    """Per-seed mAP differences of each row to each reference row, on their common seeds: of
    the final mAP, of the mean of the last LATE_EPOCHS evaluations and of the final
    global+parts mAP, each where both runs have it."""
    table = []
    maps_of = {name: seed_maps(log_root, name) for name in {*rows, *references}}  # each record read once
    for ref in references:
        ref_maps = maps_of[ref]
        for row in rows:
            if row == ref:
                continue
            maps = maps_of[row]
            common = sorted(set(maps) & set(ref_maps))
            cells = [f"{row} - {ref}", len(common)]
            for i in range(3):  # final mAP, last epochs' mean, global+parts: where both runs have it
                diffs = [maps[s][i] - ref_maps[s][i] for s in common if None not in (maps[s][i], ref_maps[s][i])]
                cells += [mean_std(diffs), ", ".join(f"{d:+.2f}" for d in diffs)]
            table.append(cells)
    headers = ["paired mAP difference", "seeds", "mean +- std", "per seed", f"last {LATE_EPOCHS} epochs: mean +- std",
               "per seed", "global+parts: mean +- std", "per seed"]
    print(tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True))


def run_epochs(run_dir, prefix=""):
    """({epoch: {figure: value}}, the loss terms' names) of a run's metrics file: the epoch
    means of the loss and its terms, the mAP after each evaluated epoch, and with ``prefix``
    the per-epoch records too (clustering, part boxes, evaluation)."""
    by_epoch, loss_terms = {}, set()
    with open_text(metrics_path(run_dir)) as f:
        for record in map(json.loads, f):
            row = by_epoch.setdefault(record["epoch"], {})
            means = {k[len("epoch_mean/"):]: v for k, v in record.items() if k.startswith("epoch_mean/")}
            row.update(means)
            loss_terms.update(means)
            row.update({"mAP": v for k, v in record.items() if k.endswith("/mAP") and k.count("/") == 1})
            if prefix and "iter" not in record:  # a per-epoch record: clustering, part boxes, evaluation
                row.update({k: v for k, v in record.items() if "/" in k and not k.startswith("epoch_mean/")})
    return by_epoch, loss_terms


def epoch_terms(run_dir, prefix=""):
    """Prints ``epoch_table``."""
    headers, rows, runs = epoch_table(run_dir, prefix)
    if runs > 1:
        print(f"Means over the {runs} runs that match {run_dir}:")
    print(tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".3f"))


def epoch_table(run_dir, prefix=""):
    """(headers, rows, number of runs): rows [epoch, loss, each term ..., (their sum,) mAP] from a
    run's metrics file. Without
    PREFIX the terms are the loss terms' epoch means; with it, also the per-epoch records
    that start with it (e.g. ``cluster/``, ``parts/``, ``PSCLoss/agreement_mean``), and the sum
    of the selected loss terms. A ``run_dir`` with a wildcard (e.g. ``ROOT/seed*/ROW``, quoted)
    gives each figure's mean over the runs it matches."""
    runs = [run_epochs(d, prefix) for d in (sorted(glob.glob(run_dir)) if glob.has_magic(run_dir) else [run_dir])]
    if not runs:
        sys.exit(f"Error: no run matches {run_dir}")
    loss_terms = set().union(*(terms for _, terms in runs))
    by_epoch = {}
    for epoch in sorted(set().union(*(epochs for epochs, _ in runs))):
        figures = [epochs[epoch] for epochs, _ in runs if epoch in epochs]
        by_epoch[epoch] = {k: float(np.mean([f[k] for f in figures if k in f])) for k in set().union(*figures)}
    names = sorted({k for row in by_epoch.values() for k in row if k not in ("mAP", "loss", "grad_norm")
                    and k.startswith(prefix)})
    summed = [k for k in names if k in loss_terms] if prefix else []
    rows = []
    for epoch, row in sorted(by_epoch.items()):
        terms = [row.get(k, float("nan")) for k in names]
        total = [sum(row.get(k, float("nan")) for k in summed)] if summed else []
        rows.append([epoch, row.get("loss", float("nan")), *terms, *total, row.get("mAP", float("nan"))])
    headers = ["epoch", "loss", *names, *([f"{prefix} sum"] if summed else []), "mAP"]
    return headers, rows, len(runs)


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
    if sys.argv[1:2] in ([], ["-h"], ["--help"]):
        print(__doc__, file=sys.stdout if sys.argv[1:] else sys.stderr)
        sys.exit(0 if sys.argv[1:] else 2)
    if sys.argv[1:2] == ["--seeds"]:
        args = sys.argv[3:]
        split = args.index("--paired-to") if "--paired-to" in args else len(args)
        seeds_table(sys.argv[2], args[:split])
        if args[split + 1:]:
            print()
            paired_table(sys.argv[2], args[:split], args[split + 1:])
    elif sys.argv[1:2] == ["--terms"] and len(sys.argv) in (3, 4):
        epoch_terms(*sys.argv[2:])
    elif sys.argv[1:2] == ["--record"] and len(sys.argv) == 4:
        record(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--same-start"] and len(sys.argv) == 4:
        same_start(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--same-config"] and len(sys.argv) >= 4:
        same_config(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main(sys.argv[1:])

#!/usr/bin/env python
"""The results tables of the documents, generated from the committed run records.

    python benchmarks/tables.py            # rewrite every table between its markers
    python benchmarks/tables.py --check    # exit 1, naming each table that is stale or missing

A table sits in a Markdown page between ``<!-- table NAME -->`` and ``<!-- /table -->``; NAME
is a key of ``TABLES``, which says which records it reads, which rows it shows and what each
row is paired with. Each row gives the mean +- std (sample std) over its seeds of the final
mAP, rank-1 and global+parts mAP, the CPU that ran its records (read from each run's log), and
its paired mAP difference to each reference row over the seeds both have. No figure in a table
is typed by hand.
"""
import argparse
import glob
import json
import os
import re
import textwrap
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.collect_results import (epoch_table, finished_runs, global_parts_map, load, mean_std, metrics_path,  # noqa: E402
                                        open_text, record_path)

PAGES = ("README.md", "projects/*/README.md", "docs/*.md")
# The pages that report results: a figure in their prose must be a cell of one of their tables.
RESULTS_PAGES = ("README.md", "projects/*/README.md", "docs/benchmarks.md", "docs/pisl_*.md")
# A measured figure: a decimal number or a percentage (code spans and code blocks, fenced or
# indented, are left out: they hold config values and commands).
FIGURE = re.compile(r"(?<![\w.`/-])[-+]?(\d+\.\d+)(?![\w.])|(?<![\w.])(\d+(?:\.\d+)?) ?%")
QUOTED = "(quoted from the paper"  # a line that quotes a publication's figures names it so
MARKER = re.compile(r"(<!-- table (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
CPU = re.compile(r"device cpu \((?P<cpu>[^,]+), (?P<isa>[^,]+), \d+ threads\)")


@dataclass
class Table:
    records: str  # the records folder, relative to the repository: START/ and seed*/ROW/
    rows: dict  # row name -> its label in the table
    references: list = field(default_factory=list)  # rows every row is paired with
    also: list = field(default_factory=list)  # further records folders (another CPU): their runs of
    # a (seed, row) the first folder lacks join the table, and the CPU column shows the mix


CROSS_DOMAIN_ROWS = {
    "cluster_contrast": "Cluster Contrast",
    "pisl_stripes": "stripes (PPLR + camera contrast)",
    "pisl_published": "PISL, published recipe",
    "pisl_partition": "PISL, partition recipe",
}
@dataclass
class FollowTable:
    """How each part's box follows the person on misaligned crops: the correlation r and the slope
    of its centre against the applied vertical shift, over the 1,940 training crops with the
    boxes the model draws before its last epoch (the last ``parts/follow_*`` of each run's
    metrics), mean +- std over seeds, for the top, middle and bottom part."""
    records: str
    rows: dict


@dataclass
class BoxFollowTable:
    """Per record of ``projects/PISL/tools/box_follow.py --record`` (a model on the test crops):
    each part's follow r and slope on the misaligned crops and on the pure translation (where
    following exactly is slope 1), the anchors' alone, and where the outer boxes sit against the
    person."""
    records: dict  # label -> a record file, relative to the repository


@dataclass
class BoxFollowSeedsTable:
    """Per row, the records of ``projects/PISL/tools/box_follow.py --translation --record`` that
    ``pattern`` matches (one model a seed, on the test crops): each part's follow r and slope on
    the misaligned crops and on the pure translation (where following exactly is slope 1), and
    the anchors' slope alone, mean +- std over the seeds."""
    rows: dict  # label -> a glob pattern of record files, relative to the repository


@dataclass
class BoxGapTable:
    """Per record of ``projects/PISL/tools/box_gap.py --record``: training boxes (one-step x0_hat
    at a random t) against test boxes (DDIM), per part, and what the part BN sees."""
    records: dict


@dataclass
class RunsTable:
    """One line per recorded run under ``records`` (each a run folder's record), after the runs
    ``also`` names (run folders elsewhere): its CPU, final mAP and global+parts mAP, and wall time."""
    records: str
    also: list = field(default_factory=list)


@dataclass
class ToolTable:
    """The rows of benchmark records that keep a table (``bench_pisl.py``, ``bench_eval_scale.py``,
    ``bench_cluster_scale.py`` ``--record``): each row with the CPU and commit that made it.
    ``columns`` picks and orders the cells of records whose rows are dicts."""
    records: list
    columns: list = field(default_factory=list)


@dataclass
class EpochTable:
    """Per epoch of one recorded run (``collect_results.py --terms``): the epoch means of the loss
    terms whose name starts with ``prefix``, their sum, and the mAP evaluated after the epoch."""
    record: str  # a run's record folder
    prefix: str


@dataclass
class BenchNormTable:
    """Per record of ``benchmarks/bench_norm.py --record``: a training step's time with plain
    BatchNorm and with ghost batches."""
    records: list


TOOLS = "records/tools/"  # the diagnostics' records
TABLES = {
    "cuhk01_aligned": Table("records/cuhk01_seeds_avx512", CROSS_DOMAIN_ROWS,
                            ["pisl_stripes", "cluster_contrast", "pisl_partition"]),
    # The published recipe's aligned runs on an AMD EPYC (AVX2), which rounds differently.
    "cuhk01_aligned_epyc": Table("records/cuhk01_seeds_amd", {"pisl_published": "PISL, published recipe"}, []),
    "cuhk01_misaligned": Table("records/cuhk01_misaligned_seeds", CROSS_DOMAIN_ROWS,
                               ["pisl_stripes", "cluster_contrast", "pisl_partition"]),
    "demo": RunsTable("records/demo"),
    "rerun_partition": RunsTable("records/reruns/cuhk01_misaligned_seed1_partition_1thread",
                                 ["records/cuhk01_misaligned_seeds_1thread/seed1/pisl_partition"]),
    "rerun_partition_seeds": RunsTable("records/reruns/cuhk01_misaligned_partition",
                                       [f"records/cuhk01_misaligned_seeds/seed{seed}/pisl_partition" for seed in range(1, 6)]),
    "boxes_barrier": BoxFollowTable({
        "partition recipe, barrier (seed 1)": f"{TOOLS}box_follow_cuhk01_misaligned_seed1_partition_1thread.json",
        "partition recipe, no barrier (seed 1)": f"{TOOLS}box_follow_cuhk01_misaligned_seed1_partition_unbarred_1thread.json",
        "partition recipe, barrier (seed 1, Xeon)": f"{TOOLS}box_follow_cuhk01_misaligned_seed1_partition.json",
        "partition recipe, barrier toward the prior (seed 1)":
            f"{TOOLS}box_follow_cuhk01_misaligned_seed1_partition_prior_barrier.json",
        "published recipe (seed 1)": f"{TOOLS}box_follow_cuhk01_misaligned_seed1_published.json"}),
    "boxes_follow_seeds": BoxFollowSeedsTable({
        "partition recipe": f"{TOOLS}box_follow_cuhk01_misaligned_seed[0-9]_partition.json",
        "partition recipe, barrier toward each image's prior":
            f"{TOOLS}box_follow_cuhk01_misaligned_seed[0-9]_partition_prior_barrier.json"}),
    "boxes_gap": BoxGapTable({
        "partition recipe (seed 1)": f"{TOOLS}box_gap_cuhk01_misaligned_seed1_partition_1thread.json",
        "published recipe (seed 1)": f"{TOOLS}box_gap_cuhk01_misaligned_seed1_published.json"}),
    "bench_norm": BenchNormTable([f"{TOOLS}bench_norm_cuhk03np_mobilenetv2.json"]),
    "bench_pisl": ToolTable([f"{TOOLS}bench_pisl_cuhk03np.json"]),
    "bench_eval_scale": ToolTable([f"{TOOLS}bench_eval_scale_msmt17.json", f"{TOOLS}bench_eval_scale_msmt17_rerank.json"]),
    # The step before the compiled pair sums and faiss's re-ranking (commit 1c6d518), its
    # successive states, the inverted file's probes, then now.
    "cluster_scale": ToolTable([f"{TOOLS}bench_cluster_scale_before.json", f"{TOOLS}bench_cluster_scale.json",
                                f"{TOOLS}bench_cluster_scale_int8_codes.json", f"{TOOLS}bench_cluster_scale_1m.json",
                                f"{TOOLS}bench_cluster_scale_hubs_1m.json", f"{TOOLS}bench_cluster_scale_ivf_probes.json",
                                f"{TOOLS}bench_cluster_scale_cell_order.json",
                                f"{TOOLS}bench_cluster_scale_cell_order_1m.json"],
                               ["features", "N", "dim", "method", "knn s", "jaccard s", "dbscan s", "total s", "peak RSS GiB",
                                "recall@30", "ARI vs exact"]),
    "cuhk01_misaligned_norm": Table("records/cuhk01_misaligned_seeds",
                                    {"pisl_published": "published recipe, BatchNorm over 64 images",
                                     "pisl_published_bn16": "published recipe, BatchNorm over 16 images"},
                                    ["pisl_published"]),
    # The part generators and the partition recipe's parts, one at a time (docs/pisl_parts.md).
    "cuhk01_misaligned_parts": Table("records/cuhk01_misaligned_seeds", {
        "pisl_partition": "partition recipe",
        "pisl_affine": "affine boxes on person anchors",
        "pisl_person_rows": "partition recipe without the barrier",
        "pisl_partition_prior_barrier": "partition recipe, barrier toward each image's prior",
        "pisl_rows": "partitions on stripe anchors, no barrier",
        "pisl_image": "person found in the image",
        "pisl_image_extent": "person found in the image, its extent in the condition",
        "pisl_no_scd": "partition recipe without SCD",
        "pisl_stripes": "stripes (PPLR + camera contrast)"}, ["pisl_partition", "pisl_stripes"]),
    "cuhk01_aligned_earlier": Table("records/cuhk01_seeds_avx512", {
        "pisl": "earlier recipe: affine boxes on stripe anchors",
        "pisl_no_scd": "earlier recipe without SCD",
        "pisl_no_psc": "earlier recipe without PSC",
        "pisl_person_rows": "partition recipe without the barrier",
        "pisl_stripes": "stripes (PPLR + camera contrast)",
        "cluster_contrast": "Cluster Contrast"}, ["pisl", "pisl_stripes", "cluster_contrast"]),
    # PSC's agreement-aware part smoothing on stripes (docs/pisl_psc.md).
    "cuhk01_aligned_psc": Table("records/cuhk01_seeds_avx512", {
        "pisl_stripes": "plain smoothing",
        "pisl_stripes_psc_classifier": "agreement-aware from epoch 2, KL to the classifiers only",
        "pisl_stripes_psc_ramp": "agreement-aware from epoch 2, KL ramped in over 25 iterations",
        "pisl_stripes_long": "plain smoothing, 200 iterations an epoch",
        "pisl_stripes_psc_cosine_long": "agreement-aware from epoch 2, 200 iterations an epoch"},
        ["pisl_stripes", "pisl_stripes_long"]),
    "psc_epochs_reference_logits": EpochTable("records/cuhk01_seeds/seed1/pisl_stripes_psc_reference", "PSCLoss"),
    "psc_epochs_cosine": EpochTable("records/cuhk01_seeds/seed2/pisl_stripes_psc_cosine", "PSCLoss"),
    "psc_epochs_plain": EpochTable("records/cuhk01_seeds/seed2/pisl_stripes", "PSCLoss"),
    "cuhk01_misaligned_psc": Table("records/cuhk01_misaligned_seeds", {
        "pisl_stripes": "plain smoothing",
        "pisl_stripes_psc_classifier": "agreement-aware from epoch 2, KL to the classifiers only",
        "pisl_stripes_psc_ramp": "agreement-aware from epoch 2, KL ramped in over 25 iterations"},
        ["pisl_stripes"]),
    "cuhk01_aligned_psc_epyc": Table("records/cuhk01_seeds", {
        "pisl_stripes": "plain smoothing",
        "pisl_stripes_psc_cosine": "agreement-aware from epoch 2, cosine part logits x 10",
        "pisl_stripes_psc_reference": "agreement-aware from epoch 2, the reference's part logits"},
        ["pisl_stripes"]),
    # The other benchmarks (docs/benchmarks.md).
    "cuhk03np_unsupervised": Table("records/cuhk03np_seeds", {
        "cluster_contrast": "Cluster Contrast",
        "pisl_stripes": "stripes (PPLR + camera contrast)",
        "pisl": "earlier recipe: affine boxes on stripe anchors",
        "pisl_no_scd": "earlier recipe without SCD",
        "pisl_no_psc": "earlier recipe without PSC"}, ["pisl_stripes", "cluster_contrast"]),
    "cuhk03np_supervised": Table("records/cuhk03np_supervised_seeds", {
        "supervised_global": "global feature only",
        "supervised_stripes": "stripe parts",
        "supervised_pisl": "diffusion-STN parts, earlier recipe (affine boxes on stripe anchors)",
        "supervised_pisl_person_bound_tight": "affine boxes on person anchors, tight bounds"},
        ["supervised_global", "supervised_stripes"]),
    "cuhk03np_supervised_misaligned": Table("records/cuhk03np_supervised_misaligned_seeds", {
        "supervised_global": "global feature only",
        "supervised_stripes": "stripe parts",
        "supervised_pisl": "diffusion-STN parts, partition recipe"}, ["supervised_global", "supervised_stripes"]),
    "cuhk01_misaligned_follow": FollowTable("records/cuhk01_misaligned_seeds",
                                            {"pisl_published": "PISL, published recipe",
                                             "pisl_partition": "PISL, partition recipe"}),
}


def short_cpu(log_path):
    """'Xeon AVX512' / 'EPYC AVX2': the CPU a run's log says it ran on ('not logged' by runs made
    before the logs named it)."""
    try:
        with open_text(record_path(*os.path.split(log_path))) as f:
            for line in f:
                match = CPU.search(line)
                if match:
                    return short_processor(f"{match['cpu']}, {match['isa']}")
    except OSError:
        pass
    return "not logged"


def short_processor(description):
    """'Xeon AVX512, 2 threads' from a record's provenance ('Intel(R) Xeon(R) Processor, AVX512,
    2 threads')."""
    name, *rest = description.split(", ")
    name = name.replace("(R)", "").replace("Processor", "").split()
    return ", ".join([f"{name[-1] if name else '?'} {rest[0] if rest else ''}".strip(), *rest[1:]])


def cpus(folders):
    counts = Counter(short_cpu(os.path.join(f, "log.txt")) for f in folders)
    return ", ".join(f"{cpu} x{n}" if len(counts) > 1 else cpu for cpu, n in sorted(counts.items()))


def seed_of(folder):
    return os.path.basename(os.path.dirname(folder))


def paired_diffs(row_runs, ref_runs):
    """mAP(row) - mAP(ref) on each seed both rows have."""
    common = sorted(set(row_runs) & set(ref_runs))
    return [next(iter(row_runs[s].values()))["mAP"] - next(iter(ref_runs[s].values()))["mAP"] for s in common]


def paired(row_runs, ref_runs):
    diffs = paired_diffs(row_runs, ref_runs)
    if not diffs:
        return "-"
    spread = f" +- {np.std(diffs, ddof=1):.2f}" if len(diffs) > 1 else ""
    return f"{np.mean(diffs):+.2f}{spread} ({len(diffs)})"


def verdict(diffs):
    """A paired comparison in words: "level with" inside one std, else "above" or "below"."""
    mean, std = np.mean(diffs), np.std(diffs, ddof=1)
    word = "level with" if abs(mean) <= std else "above" if mean > 0 else "below"
    return f"{word} {{}} ({mean:+.2f} +- {std:.2f} mAP, {len(diffs)} seeds)"


def in_plain_words(table, runs):
    """One sentence a row: how it compares with each reference row it shares 2 or more seeds
    with (each pair once)."""
    said, sentences = set(), []
    for row, label in table.rows.items():
        parts = []
        for ref in table.references:
            diffs = paired_diffs(runs[row], runs[ref]) if ref != row else []
            if len(diffs) >= 2 and frozenset((row, ref)) not in said:
                said.add(frozenset((row, ref)))
                parts.append(verdict(diffs).format(table.rows[ref]))
        if parts:
            sentences.append(f"{label[0].upper()}{label[1:]} is {', '.join(parts)}.")
    if not sentences:
        return ""
    text = ("In plain words (paired mAP differences on the seeds both rows have; a difference inside one std "
            "is level): " + " ".join(sentences))
    return "\n" + textwrap.fill(text, 100, break_on_hyphens=False) + "\n"


def last_follow(folder):
    """{figure: value} of a run's last ``parts/follow_*`` record, or None."""
    path = metrics_path(folder)
    last = None
    if os.path.isfile(path):
        with open_text(path) as f:
            for line in f:
                record = json.loads(line)
                if "parts/follow_r/p0" in record:
                    last = record
    return last


def render_follow(table):
    root = os.path.join(ROOT, table.records)
    lines = []
    for row, label in table.rows.items():
        folders = sorted(glob.glob(os.path.join(root, "seed*", row)))
        follows = [f for f in map(last_follow, folders) if f]
        if not follows:
            continue
        parts = sorted({k.rsplit("/", 1)[1] for f in follows for k in f if k.startswith("parts/follow_r/")})
        cell = lambda kind: " / ".join(mean_std([f[f"parts/follow_{kind}/{p}"] for f in follows]) for p in parts)
        worst = [min(f[f"parts/follow_r/{p}"] for p in parts) for f in follows]
        lines.append([f"{label} (`{row}`)", len(follows), cpus(folders), cell("r"), cell("slope"),
                      f"{min(worst):.2f} - {max(worst):.2f}"])
    headers = ["row", "seeds", "CPU", "follow r: top / middle / bottom", "slope: top / middle / bottom",
               "worst part's r, range over seeds"]
    return markdown([table.records], lines, headers)


def markdown(sources, lines, headers, note=""):
    """A generated table: the line naming its records, the table, and ``note``."""
    made = "Generated by `python benchmarks/tables.py` from " + ", ".join(f"`{p}`" for p in sources)
    return made + ".\n\n" + tabulate(lines, headers=headers, tablefmt="pipe", disable_numparse=True) + "\n" + note


def present(records):
    """(label, the record's JSON) of each of ``records`` (label -> path) that exists."""
    return [(label, read_tool_record(path)) for label, path in records.items() if os.path.isfile(os.path.join(ROOT, path))]


def read_tool_record(path):
    with open(os.path.join(ROOT, path)) as f:
        return json.load(f)


def per_part(parts, key, fmt="{:.2f}"):
    return " / ".join(fmt.format(p[key]) if p[key] is not None else "-" for p in parts)


def missing_note(records):
    """A line naming the rows whose record does not exist (yet), or ""."""
    missing = [label for label, path in records.items() if not os.path.isfile(os.path.join(ROOT, path))]
    return f"Not recorded: {'; '.join(missing)}.\n" if missing else ""


TOP_STD, PERSON_STD = "top part's top, std over images", "person's top, std over images"  # box_follow's keys


def render_box_follow(table):
    lines = []
    for label, record in present(table.records):
        result, made = record["result"], record["provenance"]
        mis, trans = result["misaligned"], result.get("translation")
        anchors = mis.get("anchors alone")
        cover = mis["coverage"]
        lines.append([label, short_processor(made["processor"]), per_part(mis["parts"], "follow r"),
                      per_part(mis["parts"], "follow slope"),
                      per_part(trans["parts"], "follow slope") if trans else "-",
                      " / ".join(f"{a[1]:.2f}" for a in trans["anchors alone"]) if trans and "anchors alone" in trans
                      else ("-" if anchors is None else " / ".join(f"{a[1]:.2f}" for a in anchors)),
                      f"{cover['top part starts below the head %']:.1f}", f"{cover['bottom part ends above the feet %']:.1f}",
                      f"{cover[TOP_STD]:.3f} / {cover[PERSON_STD]:.3f}"])
    headers = ["model", "CPU", "misaligned: follow r (top / middle / bottom)", "slope", "translation: slope",
               "translation: anchors' slope", "top part below the head %", "bottom part above the feet %",
               "top part's top / person's top: std"]
    return markdown(table.records.values(), lines, headers, missing_note(table.records))


def render_box_follow_seeds(table):
    lines, sources = [], []
    for label, pattern in table.rows.items():
        paths = sorted(glob.glob(os.path.join(ROOT, pattern)))
        if not paths:
            continue
        sources.append(pattern)
        records = [read_tool_record(path) for path in paths]
        results = [record["result"] for record in records]

        def over_seeds(per_seed):  # per seed a value per part -> per part mean +- std over the seeds
            return " / ".join(mean_std(list(values)) for values in zip(*per_seed))

        def cell(crops, key):
            return over_seeds([[part[key] for part in result[crops]["parts"]] for result in results])
        anchors = over_seeds([[slope for _, slope in result["translation"]["anchors alone"]] for result in results])
        worst = [min(part["follow r"] for part in result["misaligned"]["parts"]) for result in results]
        processors = Counter(short_processor(record["provenance"]["processor"]) for record in records)
        lines.append([label, len(records), ", ".join(processors), cell("misaligned", "follow r"),
                      cell("misaligned", "follow slope"), f"{min(worst):.2f} - {max(worst):.2f}",
                      cell("translation", "follow r"), cell("translation", "follow slope"), anchors])
    headers = ["model", "seeds", "CPU", "misaligned: follow r (top / middle / bottom)", "slope",
               "worst part's r, range over seeds", "translation: follow r", "slope", "anchors alone: slope"]
    note = "" if lines else f"Not recorded: {'; '.join(table.rows)}.\n"
    return markdown(sources or list(table.rows.values()), lines, headers, note)


def render_box_gap(table):
    lines = []
    for label, record in present(table.records):
        result = record["result"]
        for key, figures in result["boxes"].items():
            t, part = key.rsplit("/", 1)
            bn = result["bn"][part]
            lines.append([label, t, part[len("part"):], figures["images"], f"{figures['centre mean']:.3f}",
                          f"{figures['centre p90']:.3f}", f"{figures['height mean']:.3f}",
                          f"{bn['mean shift in running stds']:.3f}" if t == "all t" else "",
                          f"{bn['variance ratio train / test']:.2f}" if t == "all t" else ""])
    headers = ["model", "x0_hat at", "part", "images", "centre gap, mean", "p90", "height gap, mean",
               "BN: mean shift / running std", "BN: var train / test"]
    return markdown(table.records.values(), lines, headers, missing_note(table.records))


def render_runs(table):
    root = os.path.join(ROOT, table.records)
    lines = []
    for folder in [os.path.join(ROOT, p) for p in table.also] + sorted(glob.glob(os.path.join(root, "*"))):
        path = os.path.join(folder, "results.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            results = json.load(f)
        main = next(iter(results.values()))
        parts = global_parts_map(results)
        seconds = os.path.join(folder, "wall_seconds")
        wall = f"{int(open(seconds).read()) / 60:.1f}" if os.path.isfile(seconds) else "-"
        made = os.path.join(folder, "provenance.json")
        commit = read_tool_record(made)["commit"][:7] if os.path.isfile(made) else "-"
        lines.append([os.path.relpath(folder, root) if folder.startswith(root) else os.path.relpath(folder, ROOT),
                      commit, short_cpu(os.path.join(folder, "log.txt")), f"{main['mAP']:.4f}",
                      "-" if parts is None else f"{parts:.4f}", wall])
    headers = ["run", "commit", "CPU", "mAP", "mAP global+parts", "wall min"]
    return markdown([*table.also, table.records], lines, headers)


def render_epochs(table):
    headers, rows, _ = epoch_table(os.path.join(ROOT, table.record), table.prefix)
    short = [h.replace(f"{table.prefix}/", "") for h in headers]
    cells = [[f"{v:.2f}" if isinstance(v, float) else v for v in row] for row in rows]
    return markdown([table.record], cells, short)


def render_tool_rows(table):
    lines, headers, records = [], None, {p: p for p in table.records}
    for _, record in present(records):
        result, made = record["result"], record["provenance"]
        headers = table.columns or result["headers"]
        for row in result["rows"]:
            cells = [row.get(c, "-") for c in table.columns] if isinstance(row, dict) else row
            lines.append([short_processor(made["processor"]), made["commit"][:7]]
                         + [f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells])
    if headers is None:
        return missing_note(records)
    return markdown(table.records, lines, ["CPU", "commit", *headers], missing_note(records))


def render_bench_norm(table):
    lines = []
    for _, record in present({p: p for p in table.records}):
        times = record["result"]["ms_per_step"]
        plain = times["plain"]
        for name, ms in times.items():
            lines.append([short_processor(record["provenance"]["processor"]), name, f"{ms:.0f}", f"{ms / plain:.3f}"])
    headers = ["CPU", "BatchNorm", "ms a step (median)", "x plain"]
    return markdown(table.records, lines, headers, missing_note({p: p for p in table.records}))


def render_seeds(table):
    roots = [os.path.join(ROOT, folder) for folder in [table.records, *table.also]]
    runs = {row: {} for row in table.rows}  # row -> {seed: results}
    folders = {row: [] for row in table.rows}  # row -> the run folders that gave them
    for root in roots:
        for row in table.rows:
            for folder, res in finished_runs(root, row).items():
                if seed_of(folder) not in runs[row]:
                    runs[row][seed_of(folder)] = res
                    folders[row].append(folder)
    lines = []
    for root in roots:
        for start, label in (("source", "source model (no adaptation)"), ("imagenet", "ImageNet start")):
            res = load(os.path.join(root, start))
            if res:
                lines.append([label, "-", short_cpu(os.path.join(root, start, "log.txt")), f"{res['mAP']:.2f}",
                              f"{res['Rank-1']:.2f}", "-"] + ["-"] * len(table.references))
    for row, label in table.rows.items():
        results = list(runs[row].values())
        if not results:
            continue
        main = [next(iter(r.values())) for r in results]
        parts = [m for m in map(global_parts_map, results) if m is not None]
        lines.append([f"{label} (`{row}`)", len(results), cpus(folders[row]), mean_std([m["mAP"] for m in main]),
                      mean_std([m["Rank-1"] for m in main]), mean_std(parts)]
                     + ["-" if ref == row else paired(runs[row], runs[ref]) for ref in table.references])
    headers = ["row", "seeds", "CPU", "mAP", "R1", "mAP global+parts"] + [
        f"mAP - {table.rows[ref].split(' (')[0]} (paired, seeds)" for ref in table.references]
    return markdown([table.records, *table.also], lines, headers, in_plain_words(table, runs))


RENDERERS = {Table: render_seeds, FollowTable: render_follow, BoxFollowTable: render_box_follow,
             BoxFollowSeedsTable: render_box_follow_seeds,
             BoxGapTable: render_box_gap, RunsTable: render_runs, BenchNormTable: render_bench_norm,
             EpochTable: render_epochs, ToolTable: render_tool_rows}


def render(table):
    """The table's Markdown (a line of text above it says what it was made from)."""
    return RENDERERS[type(table)](table)


def pages():
    for pattern in PAGES:
        yield from sorted(glob.glob(os.path.join(ROOT, pattern)))


def regenerate(text, rendered, unknown):
    def body(match):
        name = match["name"]
        if name not in rendered:
            unknown.append(name)
            return match.group(0)
        return match.group(1) + rendered[name] + match.group(4)
    return MARKER.sub(body, text)


def figures_outside_tables(text):
    """The figures in a page's prose that no generated table of the page holds: (line number,
    figure), one per figure. Prose quotes figures from the tables; everything else is typed by
    hand."""
    cells = set()
    for match in MARKER.finditer(text):
        cells |= {m.group(1) or m.group(2) for m in FIGURE.finditer(match["body"].replace("-", " "))}
        cells |= set(re.findall(r"\d+\.\d+", match["body"]))
    blank = lambda m: "\n" * m.group(0).count("\n")  # keeps the line numbers
    prose = MARKER.sub(blank, text)
    prose = re.sub(r"```.*?```", blank, prose, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    found = []
    for number, line in enumerate(prose.splitlines(), 1):
        if QUOTED in line or line.startswith("    "):  # a quote, or an indented code block
            continue
        for m in FIGURE.finditer(line):
            figure = (m.group(1) or m.group(2)).lstrip("+-")
            if figure not in cells:
                found.append((number, figure))
    return found


def results_pages():
    for pattern in RESULTS_PAGES:
        yield from sorted(glob.glob(os.path.join(ROOT, pattern)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a table differs from its records (both modes exit 1 on a hand-typed figure)")
    args = parser.parse_args(argv)
    rendered = {name: render(table) for name, table in TABLES.items()}
    stale, unknown, placed = [], [], set()
    for page in pages():
        with open(page) as f:
            text = f.read()
        placed |= {m["name"] for m in MARKER.finditer(text)}
        new = regenerate(text, rendered, unknown)
        if new != text:
            stale.append(os.path.relpath(page, ROOT))
            if not args.check:
                with open(page, "w") as f:
                    f.write(new)
    problems = [f"unknown table '{name}' (not in benchmarks/tables.py TABLES)" for name in unknown]
    if args.check:
        problems += [f"{page}: a table differs from its records; run python benchmarks/tables.py" for page in stale]
    for page in results_pages():
        with open(page) as f:
            problems += [f"{os.path.relpath(page, ROOT)}:{line}: the figure {figure} is in no generated table of the page"
                         for line, figure in figures_outside_tables(f.read())]
    for problem in problems:
        print(f"Error: {problem}", file=sys.stderr)
    if not args.check:
        print(f"Tables: {len(placed)} placed, {len(stale)} page(s) rewritten")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

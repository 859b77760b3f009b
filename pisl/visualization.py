"""Pictures of what a model learned: ranked lists, CMC and per-epoch curves and pseudo-label
montages (a project draws its own, e.g. PISL's part boxes, with ``pyplot`` and ``show_image``),
as matplotlib figures (``pip install -e ".[vis]"``). Each function
returns a Figure; ``save`` writes it as PNG and closes it. tools/visualize.py is the CLI."""
import json
import os

import numpy as np

from .data.common import read_image

MATCH, NON_MATCH = "#1a9850", "#d73027"  # green, red borders


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (ImportError without the vis extra)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save(fig, path):
    """Write ``fig`` as a PNG at ``path`` (".png" added when it has no extension, as matplotlib
    does) and return the path written."""
    if not os.path.splitext(path)[1]:
        path += ".png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return path


def show_image(ax, image, title=None, border=None):
    """``image``: a path or a PIL image."""
    ax.imshow(read_image(image) if isinstance(image, str) else image)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    for spine in ax.spines.values():
        spine.set_visible(border is not None)
        if border:
            spine.set_edgecolor(border)
            spine.set_linewidth(4)


def ranked_lists(query, gallery, dist, num_queries=6, topk=8, seed=0):
    """For ``num_queries`` random queries, the query and its ``topk`` nearest gallery images,
    bordered green (same identity) or red. ``query``/``gallery``: (path, pid, camid) lists;
    ``dist``: query x gallery distances. Gallery images of the query's identity and camera
    are skipped, as the evaluation protocol does."""
    plt = pyplot()
    rows = np.random.default_rng(seed).choice(len(query), size=min(num_queries, len(query)), replace=False)
    fig, axes = plt.subplots(len(rows), topk + 1, figsize=(1.1 * (topk + 1), 2.3 * len(rows)), squeeze=False,
                             layout="constrained")  # keeps the title next to the first row
    for ax_row, q in zip(axes, rows):
        q_path, q_pid, q_cam = query[q]
        show_image(ax_row[0], q_path, f"query {q_pid}")
        ranked = [g for g in np.argsort(np.asarray(dist[q])) if not (gallery[g][1] == q_pid and gallery[g][2] == q_cam)]
        for rank, (ax, g) in enumerate(zip(ax_row[1:], ranked), 1):
            g_path, g_pid, _ = gallery[g]
            show_image(ax, g_path, f"{rank}: {g_pid}", MATCH if g_pid == q_pid else NON_MATCH)
    fig.suptitle("Ranked gallery (green: same identity, red: other)", fontsize=9)
    return fig


def cmc_curve(curves):
    """``curves``: {label: CMC in %, index 0 = rank 1}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for label, cmc in curves.items():
        ax.plot(np.arange(1, len(cmc) + 1), cmc, marker=".", label=label)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title="CMC", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def read_epoch_metrics(metrics_json):
    """{dataset: [(epoch, mAP, Rank-1), ...]} from a run's metrics file (metrics.jsonl)."""
    out = {}
    with open(metrics_json) as f:
        for record in map(json.loads, f):
            for key, value in record.items():
                if key.endswith("/mAP"):
                    name = key[: -len("/mAP")]
                    out.setdefault(name, []).append((record["epoch"], value, record[f"{name}/Rank-1"]))
    return out


def epoch_curves(metrics_files, title=None):
    """mAP and rank-1 after each evaluated epoch, one line per run and evaluated
    dataset/feature. ``metrics_files``: a run's metrics file, or {run label: metrics file} to
    compare runs; ``title`` heads the figure."""
    plt = pyplot()
    if not isinstance(metrics_files, dict):
        metrics_files = {"": metrics_files}
    series = {(f"{run}: " if run else "") + name: points for run, path in metrics_files.items()
              for name, points in read_epoch_metrics(path).items()}
    if not series:
        raise ValueError(f"{', '.join(map(str, metrics_files.values()))}: no evaluation "
                         "(was TEST.EVAL_PERIOD 0 and the run unfinished?)")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for name, points in series.items():
        epochs, maps, r1s = zip(*points)
        axes[0].plot(epochs, maps, marker="o", label=name)
        axes[1].plot(epochs, r1s, marker="o", label=name)
    for ax, metric in zip(axes, ("mAP (%)", "rank-1 (%)")):
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric[:-4]} per evaluated epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def cluster_montage(paths, labels, camids=None, num_clusters=5, per_cluster=8, seed=0, title=None):
    """Rows of images of ``num_clusters`` random pseudo-identities (and one row of outliers,
    label -1, when there are any), with each image's camera (counted from 1, as in the
    datasets' file names) in its title; ``title`` (e.g. the run and epoch) heads the figure."""
    plt = pyplot()
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    clusters = np.unique(labels[labels >= 0])
    chosen = rng.choice(clusters, size=min(num_clusters, len(clusters)), replace=False) if len(clusters) else []
    rows = [(f"cluster {c}", np.flatnonzero(labels == c)) for c in chosen]
    if (labels < 0).any():
        rows.append(("outliers", np.flatnonzero(labels < 0)))
    if not rows:
        raise ValueError("No cluster and no outlier to show")
    fig, axes = plt.subplots(len(rows), per_cluster, figsize=(1.1 * per_cluster, 2.3 * len(rows)), squeeze=False)
    for ax_row, (name, members) in zip(axes, rows):
        picked = rng.choice(members, size=min(per_cluster, len(members)), replace=False)
        for j, ax in enumerate(ax_row):
            if j >= len(picked):
                ax.axis("off")
                continue
            cam = f" cam {camids[picked[j]] + 1}" if camids is not None else ""
            show_image(ax, paths[picked[j]], f"{name if j == 0 else ''}{cam}")
        ax_row[0].set_ylabel(f"{len(members)} images", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

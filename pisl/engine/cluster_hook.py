"""The clustering hook: every epoch, unlabelled training images -> pseudo-identities."""
import gc
import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from tabulate import tabulate

from ..cluster import cluster_features, per_camera_standardised
from ..cluster.jaccard import MemoryBudgetError
from ..data import build_test_loader, build_train_loader
from ..evaluation import extract_features, with_misalignment
from ..utils import comm
from ..utils.checkpoint import unwrap
from ..utils.env import amp_dtype
from .hooks import HOOK_REGISTRY
from .trainer import HookBase, TrainingError

logger = logging.getLogger(__name__)


@dataclass
class PseudoLabels:
    """What the clustering hook tells the model's modules each epoch (``on_pseudo_labels``).

    ``features`` hold every training image's features by name (``global`` and whatever else the
    model's ``cluster_features`` returns), ``labels``/``camids`` are per training image
    (-1 = outlier), and ``clustered`` indexes the images used for training this epoch, in the
    order of the pseudo-labelled dataset (its ``index`` field). Modules may add scalars to
    ``metrics`` (e.g. diagnostics of their own); they are written with the epoch's metrics.
    ``misalignment``: N x 3 (shift, scale, offset) that ``INPUT.MISALIGN`` applied to each
    training image (None without it), for diagnostics that compare with the truth.
    """

    epoch: int
    features: dict
    labels: np.ndarray
    camids: np.ndarray
    clustered: np.ndarray
    num_clusters: int
    metrics: dict = field(default_factory=dict)
    misalignment: np.ndarray = None


def notify_pseudo_labels(model, state):
    """Call ``on_pseudo_labels(state)`` on every module of ``model`` that defines it."""
    for module in model.modules():
        if hasattr(module, "on_pseudo_labels"):
            module.on_pseudo_labels(state)


def cluster_diagnostics(labels, camids, true_pids=None):
    """Numbers that describe a clustering. True ids (when known) only measure it."""
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered]) if clustered.any() else np.zeros(0, int)
    cams_per_cluster = [len(np.unique(camids[labels == c])) for c in range(len(sizes))]
    stats = {
        "clusters": len(sizes),
        "clustered images": int(clustered.sum()),
        "outliers": int((~clustered).sum()),
        "size p10/p50/p90/max": "/".join(str(int(np.percentile(sizes, q))) for q in (10, 50, 90, 100)) if len(sizes) else "-",
        "multi-camera clusters %": 100.0 * np.mean(np.asarray(cams_per_cluster) >= 2) if len(sizes) else 0.0,
    }
    if true_pids is not None and clustered.sum() > 1:
        true, pred = true_pids[clustered], labels[clustered]
        majority = sum(np.bincount(true[pred == c]).max() for c in range(len(sizes)))
        stats.update({
            "purity %": 100.0 * majority / clustered.sum(),
            "NMI": normalized_mutual_info_score(true, pred),
            "ARI": adjusted_rand_score(true, pred),
        })
    return stats


@HOOK_REGISTRY.register()
class ClusteringHook(HookBase):
    """Before each epoch: extract features of the training set, cluster them (Jaccard +
    DBSCAN; each camera's features standardised first with CLUSTER.PER_CAMERA_NORM), log
    diagnostics, swap the trainer's loader for a pseudo-labelled one and call
    ``on_pseudo_labels(PseudoLabels)`` on every module of the model that defines it (heads,
    losses, memories re-size and re-initialise themselves there; they get the features as
    extracted, not standardised).

    An epoch with fewer than 2 clusters keeps the previous pseudo-labels (or trains nothing if
    there are none yet); after ``max_degenerate_epochs`` such epochs in a row training fails
    (``TrainingError``) with the change of CLUSTER.EPS that would help. Training images that
    cannot be read are left out with a warning that names them.

    Each epoch's pseudo-labels are saved (small) for inspection and for tools/visualize.py:
    OUTPUT_DIR/pseudo_labels/items.txt lists the training images once, and
    epoch_EEE.npz holds ``labels`` (-1: outlier or unreadable) and ``camids`` in that order;
    history.json holds every epoch's diagnostics and timings (a list, one dict an epoch), so a
    run's clustering can be compared without its checkpoint.
    """

    provides_train_loader = True

    def __init__(self, cfg):
        self.cfg = cfg
        c = cfg.CLUSTER
        self.eps, self.min_samples, self.k1, self.k2 = c.EPS, c.MIN_SAMPLES, c.K1, c.K2
        self.outliers, self.knn_backend, self.max_degenerate = c.OUTLIERS, c.KNN_BACKEND, c.MAX_DEGENERATE_EPOCHS
        self.per_camera_norm = c.PER_CAMERA_NORM
        self.knn_options = dict(method=c.KNN.METHOD, exact_below=c.KNN.EXACT_BELOW, pca_dim=c.KNN.PCA_DIM,
                                refine=c.KNN.REFINE, ef_search=c.KNN.EF_SEARCH, ivf_probes=c.KNN.IVF_PROBES)
        self.labels = None
        self.degenerate_epochs = 0
        self.history = []
        self.unreadable = []

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg)

    def before_train(self):
        items = self.trainer.train_items
        self.items = items
        self.camids = np.array([cam for _, _, cam in items])
        # True ids, for diagnostics only; None when a dataset has none.
        true = [pid for ds in self.trainer.train_datasets for _, pid, _ in ds.train]
        self.true_pids = np.unique(np.array(true), return_inverse=True)[1] if len(true) == len(items) else None
        self.loader = build_test_loader(self.cfg, items)
        self.item_index = np.arange(len(items))  # position of each current item in train_items
        if comm.is_main_process():
            os.makedirs(os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels"), exist_ok=True)
            with open(os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels", "items.txt"), "w") as f:
                f.writelines(f"{path}\n" for path, _, _ in items)

    def _save_labels(self, labels):
        full = np.full(len(self.trainer.train_items), -1, dtype=np.int32)
        full[self.item_index] = labels
        camids = np.array([cam for _, _, cam in self.trainer.train_items], dtype=np.int32)
        path = os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels", f"epoch_{self.trainer.epoch:03d}.npz")
        np.savez_compressed(path, labels=full, camids=camids)

    def before_epoch(self):
        t = self.trainer
        times = {}
        start = time.perf_counter()
        model = unwrap(t.model)
        feats, idx = extract_features(model, self.loader, with_misalignment(model.cluster_features),
                                      desc="Extracting training features", amp_dtype=amp_dtype(self.cfg))
        misalignment = feats.pop("misalignment", None)  # what INPUT.MISALIGN applied to each item
        if len(idx) < len(self.items):
            self._drop_unreadable(idx.numpy())
        times["extract"] = time.perf_counter() - start
        labels = None
        if comm.is_main_process():
            clustered = feats["global"]
            if self.per_camera_norm:
                clustered = per_camera_standardised(clustered, self.camids)
            try:
                result = cluster_features(clustered, self.eps, self.k1, self.k2, self.min_samples, self.outliers,
                                          knn_backend=self.knn_backend, knn_options=self.knn_options,
                                          memory_gb=self.cfg.CLUSTER.MEMORY_GB)
            except MemoryBudgetError as err:
                raise TrainingError(f"clustering before epoch {t.epoch} stopped: {err}") from None
            labels, times = result.labels, {**times, **result.seconds}
            self._save_labels(labels)
        labels = comm.broadcast_object(labels, waiting_for="rank 0's clustering")
        stats = cluster_diagnostics(labels, self.camids, self.true_pids)
        self._log(stats, times)
        if stats["clusters"] < 2:
            self._degenerate(stats["clusters"], stats["clustered images"])
            return
        self.degenerate_epochs = 0
        self.labels = labels
        self._install(feats, None if misalignment is None else misalignment.numpy())

    def _drop_unreadable(self, readable):
        """Leave unreadable training images out of this and every later epoch (their features
        are missing), as a supervised run skips them."""
        bad = sorted(set(range(len(self.items))) - set(readable.tolist()))
        paths = [self.items[i][0] for i in bad]
        logger.warning(f"{len(bad)} of {len(self.items)} training images could not be read and are left out: "
                       f"{', '.join(paths[:10])}{' ...' if len(paths) > 10 else ''}")
        self.items = [self.items[i] for i in readable]
        self.item_index = self.item_index[readable]
        self.camids = self.camids[readable]
        self.true_pids = None if self.true_pids is None else self.true_pids[readable]
        self.loader = build_test_loader(self.cfg, self.items)
        self.labels = None  # indexed the old item list
        self.unreadable += paths

    def _degenerate(self, num_clusters, num_clustered):
        self.degenerate_epochs += 1
        if num_clusters == 0:
            why = (f"no cluster at CLUSTER.EPS {self.eps}: every image is an outlier. Raise CLUSTER.EPS or lower "
                   f"CLUSTER.MIN_SAMPLES ({self.min_samples})")
        else:
            why = (f"a single cluster at CLUSTER.EPS {self.eps} holds {num_clustered} of {len(self.items)} images: "
                   "lower CLUSTER.EPS")
        msg = f"Epoch {self.trainer.epoch}: {why}, or check the features (e.g. the backbone weights)"
        if self.max_degenerate and self.degenerate_epochs >= self.max_degenerate:
            raise TrainingError(f"{msg}. {self.degenerate_epochs} epochs in a row without usable clusters "
                                f"(CLUSTER.MAX_DEGENERATE_EPOCHS {self.max_degenerate})")
        if self.labels is None:
            logger.warning(f"{msg}; no earlier pseudo-labels, so this epoch trains nothing")
            self.trainer.train_loader = None
        else:
            logger.warning(f"{msg}; training on the previous epoch's pseudo-labels")

    def _install(self, feats, misalignment):
        t = self.trainer
        clustered = np.flatnonzero(self.labels >= 0)
        pseudo_items = [(self.items[i][0], int(self.labels[i]), self.items[i][2]) for i in clustered]
        t.train_loader = build_train_loader(self.cfg, pseudo_items, self.cfg.CLUSTER.SAMPLER)
        state = PseudoLabels(t.epoch, feats, self.labels, self.camids, clustered, int(self.labels.max()) + 1,
                             misalignment=misalignment)
        notify_pseudo_labels(unwrap(t.model), state)
        t.epoch_metrics.update(state.metrics)
        reset_stale_optimizer_state(t.optimizer)
        if comm.get_world_size() > 1:
            # Classifiers may have changed shape: DDP's buckets must be rebuilt, and the old
            # wrapper's gradient hooks freed before the next backward.
            model, t.model = unwrap(t.model), None
            gc.collect()
            t.model = comm.create_ddp_model(model, self.cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS)

    def _log(self, stats, times):
        # Plain Python numbers: the history goes into checkpoints loaded with weights_only.
        stats = {k: v.item() if isinstance(v, np.generic) else v for k, v in stats.items()}
        stats = {**stats, **{f"{k} s": float(v) for k, v in times.items()}}
        self.history.append({"epoch": self.trainer.epoch, **stats})
        self.trainer.epoch_metrics.update({f"cluster/{k}": v for k, v in stats.items() if isinstance(v, (int, float))})
        if comm.is_main_process():
            with open(os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels", "history.json"), "w") as f:
                json.dump(self.history, f, indent=1)
        rows = [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in stats.items()]
        logger.info(f"Clustering before epoch {self.trainer.epoch} (eps {self.eps}):\n" + tabulate(rows, tablefmt="pipe"))

    def state_dict(self):
        labels = None if self.labels is None else torch.from_numpy(self.labels)
        return {"labels": labels, "degenerate_epochs": self.degenerate_epochs, "history": self.history}

    def load_state_dict(self, state):
        labels = state.get("labels")
        self.labels = None if labels is None else np.asarray(labels)
        self.degenerate_epochs = state.get("degenerate_epochs", 0)
        self.history = state.get("history", [])


def reset_stale_optimizer_state(optimizer):
    """Drop optimizer state (e.g. Adam moments) of parameters whose shape changed, such as a
    classifier re-sized to this epoch's cluster count."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and any(torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape for v in state.values()):
                del optimizer.state[p]

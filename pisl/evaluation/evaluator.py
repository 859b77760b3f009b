"""Feature extraction over a loader and the re-ID evaluation of a model on a test set."""
import logging
import sys
import time
from collections import defaultdict

import torch
from tabulate import tabulate
from tqdm import tqdm

from ..data import build_test_loader
from ..utils import comm
from ..utils.env import amp_dtype
from .metrics import evaluate_rank

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(model, loader, feature_fn=None, desc="Extracting features", amp_dtype=None):
    """Run ``feature_fn(batch)`` (default: the model's eval forward, as ``{"global": feats}``)
    over a loader. Returns ``(dict of CPU tensors with one row per item, row indices)``: rows
    whose image could not be read are missing, and ``indices`` (ascending) says which items are
    present. Under DDP each process extracts its share (``build_test_loader``) and every
    process gets all rows. ``amp_dtype`` runs the model under autocast; features come back
    as fp32."""
    was_training = model.training
    model.eval()
    comm.broadcast_buffers(model)  # under DDP: every process extracts with rank 0's (saved) model
    feature_fn = feature_fn or (lambda batch: {"global": model(batch)})
    chunks, indices = defaultdict(list), []
    start = time.perf_counter()
    # A bar on a terminal only: in a log file its carriage returns are clutter.
    show_bar = comm.is_main_process() and sys.stderr.isatty()
    device_type = next(model.parameters()).device.type
    for batch in tqdm(loader, desc=desc, disable=not show_bar, mininterval=10, leave=False):
        with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            features = feature_fn(batch)
        for key, value in features.items():  # autocast's half-precision features back to fp32; fp64 stays
            chunks[key].append(value.cpu() if value.dtype == torch.float64 else value.float().cpu())
        indices.append(batch["index"])
    model.train(was_training)
    share = f" (this process's share of {len(loader.dataset)})" if comm.get_world_size() > 1 else ""
    logger.info(f"{desc}: {len(loader.sampler)} images{share} in {time.perf_counter() - start:.1f} s")
    indices = comm.all_gather_rows(torch.cat(indices))
    # Every process runs the same feature_fn, so the keys come in the same order everywhere.
    feats = {key: comm.all_gather_rows(torch.cat(value)) for key, value in chunks.items()}
    # An unreadable image is replaced by the next item in the loader: keep one row per item.
    unique, first = _first_occurrence(indices)
    if len(unique) < len(indices):
        feats = {key: value[first] for key, value in feats.items()}
    return feats, unique


def with_misalignment(feature_fn):
    """``feature_fn`` whose output also holds each item's ``misalignment`` (N x 3: shift, scale,
    offset) where the loader's dataset re-frames its images (``INPUT.MISALIGN``), so that
    ``extract_features`` gathers it with the features, one row per item. Pop it before the
    features are evaluated."""
    def features_and_misalignment(batch):
        features = feature_fn(batch)
        if "misalignment" in batch:
            features = {**features, "misalignment": batch["misalignment"]}
        return features

    return features_and_misalignment


def _first_occurrence(indices):
    unique, inverse = torch.unique(indices, return_inverse=True)
    first = torch.full((len(unique),), len(indices), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(indices)), reduce="amin")
    return unique, first


class ReidEvaluator:
    """Evaluates a model on ``query`` + ``gallery`` of a dataset.

    The model's eval forward gives the feature; a model with ``test_features(batch)`` (an
    ordered dict of named features, the first its main one) is evaluated on each, in one pass
    over the images. ``evaluate`` returns ``{name: metrics}``: the dataset's name for the main
    feature, ``dataset/feature`` for the others.
    """

    def __init__(self, cfg, dataset):
        self.cfg = cfg
        self.dataset_name = dataset.name
        self.query, self.gallery = dataset.query, dataset.gallery
        for split, items in (("query", self.query), ("gallery", self.gallery)):
            if not items:
                raise ValueError(f"{dataset.name}: the {split} set is empty (under {dataset.dataset_dir}); "
                                 "evaluation needs query and gallery images")
        self.loader = build_test_loader(cfg, self.query + self.gallery)

    def evaluate(self, model, feature_fn=None):
        """``feature_fn(batch)`` (default: the model's ``test_features``, else its eval forward)
        gives the named features to evaluate."""
        feature_fn = feature_fn or getattr(model, "test_features", None)
        feats, idx = extract_features(model, self.loader, feature_fn, desc=f"Evaluating on {self.dataset_name}",
                                      amp_dtype=amp_dtype(self.cfg))
        names = list(feats)
        return {self.dataset_name if name == names[0] else f"{self.dataset_name}/{name}": self._rank(feats[name], idx)
                for name in names}

    def _rank(self, feats, idx):
        items = self.query + self.gallery
        num_q = len(self.query)
        is_query = idx < num_q
        pids = torch.tensor([items[i][1] for i in idx])
        cams = torch.tensor([items[i][2] for i in idx])
        qf, gf = feats[is_query], feats[~is_query]
        t = self.cfg.TEST
        distmat = None
        if t.RERANK.ENABLED:
            from .rerank import ReRankedDistances

            # Computed a block of query rows at a time, as the ranking reads them.
            distmat = ReRankedDistances(qf, gf, t.RERANK.K1, t.RERANK.K2, t.RERANK.LAMBDA, t.RERANK.MEMORY_GB)
        results = evaluate_rank(qf, gf, pids[is_query], pids[~is_query], cams[is_query], cams[~is_query],
                                metric=t.METRIC, chunk_size=t.CHUNK_SIZE, distmat=distmat)
        valid, total = results["num_valid_queries"], int(is_query.sum())
        if valid < total / 2:
            # The metrics then speak for a minority of the queries: a camera or split problem.
            logger.warning(f"{self.dataset_name}: only {valid} of {total} queries have a gallery match in another "
                           f"camera (same-identity same-camera gallery images are dropped); the metrics cover those "
                           f"{valid} alone. Check the camera ids and the query / gallery split.")
        return results


def results_table(results_per_dataset):
    """A pipe table of metrics per dataset, for logs and README files."""
    keys = ["mAP", "Rank-1", "Rank-5", "Rank-10", "mINP"]
    rows = [[name] + [f"{res[k]:.2f}" for k in keys] for name, res in results_per_dataset.items()]
    return tabulate(rows, headers=["dataset"] + keys, tablefmt="pipe")

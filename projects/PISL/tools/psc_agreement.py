#!/usr/bin/env python
"""Does the PSC agreement score separate reliable from unreliable parts? Measured on a model's
training-set features, for the ``mmd`` and ``jaccard`` scores.

    python projects/PISL/tools/psc_agreement.py --config-file projects/PISL/configs/cuhk03np.yml [MODEL.WEIGHTS F] [KEY VALUE ...]

For every image n and part p, the part's *reliability* is the share of its k nearest
neighbours in part-p space that have n's true identity (true ids are read for this
measurement only; training never sees them). A useful score ranks parts by reliability: the
table gives, per score, its percentiles and spread, the mean spread of the softmax weights
that label refinement gives the parts (near 0: every part weighted alike), and the Spearman
correlation and ROC AUC of the score against reliability (AUC: reliability > 0 vs = 0).
"""

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.data import build_dataset, build_test_loader
from pisl.engine.defaults import ConfigArgumentParser, build_train_items
from pisl.evaluation import extract_features
from pisl.modeling import build_model
from pisl.utils.checkpoint import load_model_weights
from pisl.utils.provenance import report_table
from projects.PISL.consistency import agreement_summary, consistency_scores, neighbours


def part_reliability(part_feats, true_ids, k):
    """N x P: the share of each part's k nearest neighbours with the image's true id."""
    ids = torch.as_tensor(true_ids)
    cols = [(ids[neighbours(part_feats[:, p].contiguous(), k)] == ids.unsqueeze(1)).float().mean(1)
            for p in range(part_feats.shape[1])]
    return torch.stack(cols, dim=1)


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N training images only (0 = all)")
    parser.add_argument("--record", default="", metavar="FILE",
                        help="also write the table, with its commit, command, processor and config, to this JSON file")
    args = parser.parse_args()
    cfg = checked_config(args.config_file, args.opts)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS, partial=cfg.MODEL.PARTIAL_LOAD)
    datasets = [build_dataset(n, cfg) for n in cfg.DATASETS.NAMES]
    items, _ = build_train_items(datasets, keep_labels=True)
    items = items[: args.limit] if args.limit else items
    feats, idx = extract_features(model, build_test_loader(cfg, items), model.cluster_features)
    true_ids = np.array([items[i][1] for i in idx])
    k = cfg.PISL.PSC.K
    reliability = part_reliability(feats["parts"], true_ids, k)
    rows = []
    for method in ("mmd", "jaccard"):
        scores = consistency_scores(feats["global"], feats["parts"], k, method, cfg.CLUSTER.KNN_BACKEND)
        summary = np.array(agreement_summary(scores))[:, 1:]  # p10 p50 p90 std spread, per part
        a, r = scores.flatten().numpy(), reliability.flatten().numpy()
        auc = roc_auc_score(r > 0, a) if 0 < (r > 0).mean() < 1 else float("nan")
        rows.append([method, *summary.mean(0), spearmanr(a, r).statistic, auc])
    report_table(["score", "p10", "p50", "p90", "std", "weight spread", "Spearman vs reliability", "AUC"], rows,
                 record=args.record, config=cfg,
                 setting=f"{len(items)} images, k = {k}, part reliability mean {reliability.mean():.3f} "
                         f"(share of parts with a true-id neighbour: {(reliability > 0).float().mean():.3f})")


if __name__ == "__main__":
    main()

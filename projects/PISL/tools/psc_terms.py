#!/usr/bin/env python
"""How large are PSC's part terms right after the classifiers are reset to the cluster
centroids, and why? Measured on a finished run's training images and last pseudo-labels.

    python projects/PISL/tools/psc_terms.py --run RUN_DIR [--scales 10 16 30] [KEY VALUE ...]

The run's ``config.yaml``, ``model_final.pth`` and last ``pseudo_labels/epoch_*.npz`` are read;
the clustered images' features are extracted (eval mode), the model's classifiers and PSC's
agreement scores are rebuilt from them as the clustering hook does, and for each part the table
gives: the mean BN-neck feature norm, the logit gap (own cluster minus the mean of the others),
the mean softmax probability of the own cluster, the mean CE and KL(uniform || p), and the
agreement-weighted terms of agreement-aware smoothing (``a CE`` and ``(1 - a) KL``), first with
the part classifiers' own logits, then as cosine classifiers at each of ``--scales``.
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.data import build_test_loader
from pisl.engine.cluster_hook import PseudoLabels, notify_pseudo_labels
from pisl.evaluation import extract_features
from pisl.modeling import build_model
from pisl.utils.checkpoint import load_model_weights
from pisl.utils.provenance import report_table
from projects.PISL.losses import agreement_aware_terms


def term_row(name, logits, targets, agreement, norms):
    """One table row: feature norm, logit gap, p(own), CE, KL(u||p), a CE, (1 - a) KL."""
    log_p = F.log_softmax(logits, dim=1)
    own = logits.gather(1, targets[:, None]).squeeze(1)
    gap = own - (logits.sum(1) - own) / (logits.shape[1] - 1)
    ce = -log_p.gather(1, targets[:, None]).mean()
    kl = (-np.log(logits.shape[1]) - log_p).mean(1).mean()
    weighted_ce, weighted_kl = agreement_aware_terms(logits, targets, agreement)
    return [name, norms.mean().item(), gap.mean().item(), log_p.gather(1, targets[:, None]).exp().mean().item(),
            ce.item(), kl.item(), agreement.mean().item(), weighted_ce.item(), weighted_kl.item()]


@exit_on_bad_input
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished PISL run's OUTPUT_DIR")
    parser.add_argument("--scales", type=float, nargs="*", default=[10.0, 16.0, 30.0])
    parser.add_argument("--record", default="", metavar="FILE",
                        help="also write the table, with its commit, command, processor and config, to this JSON file")
    parser.add_argument("opts", nargs="*", default=[], metavar="KEY VALUE")
    args = parser.parse_args()
    labels_files = sorted(glob.glob(os.path.join(args.run, "pseudo_labels", "epoch_*.npz")))
    cfg = checked_config(os.path.join(args.run, "config.yaml"),
                         ["MODEL.WEIGHTS", os.path.join(args.run, "model_final.pth"), *args.opts])
    if not labels_files:
        sys.exit(f"Error: {args.run} has no pseudo_labels/epoch_*.npz: not a finished clustering run")
    model = build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS, partial=True)
    model.eval()
    with open(os.path.join(args.run, "pseudo_labels", "items.txt")) as f:
        paths = f.read().split()
    saved = np.load(labels_files[-1])
    labels, camids = saved["labels"], saved["camids"]
    items = [(p, 0, int(c)) for p, c in zip(paths, camids)]
    feats, _ = extract_features(model, build_test_loader(cfg, items), model.cluster_features)
    clustered = np.flatnonzero(labels >= 0)
    notify_pseudo_labels(model, PseudoLabels(int(labels_files[-1][-7:-4]), feats, labels, camids, clustered,
                                             int(labels.max()) + 1))
    psc = model.losses["PSCLoss"]
    targets = torch.as_tensor(labels[clustered], dtype=torch.long)
    clustered_items = [items[i] for i in clustered]

    def bn_neck_parts(batch):  # the part features the part classifiers see in training (not normalised)
        images, fmap, global_feature = model.encode(batch)
        return {"parts": model.part_necks_of(model.part_generator(fmap, global_feature, images)["parts"])}

    bn_parts, _ = extract_features(model, build_test_loader(cfg, clustered_items), bn_neck_parts)
    rows = []
    for p, clf in enumerate(model.part_classifiers):
        f, a = bn_parts["parts"][:, p], psc.agreement[:, p]
        norms = f.norm(dim=1)
        with torch.no_grad():
            rows.append(term_row(f"part {p} own logits", clf(f), targets, a, norms))
            for s in args.scales:
                cosine = s * F.normalize(f, dim=1) @ F.normalize(clf.weight, dim=1).t()
                rows.append(term_row(f"part {p} cosine x {s:g}", cosine, targets, a, norms))
    report_table(["logits", "|f|", "logit gap", "p(own)", "CE", "KL(u||p)", "mean a", "a CE", "(1-a) KL"], rows,
                 record=args.record, config=cfg,
                 setting=f"{len(clustered)} clustered images, {int(labels.max()) + 1} clusters "
                         f"({os.path.basename(labels_files[-1])})")


if __name__ == "__main__":
    main()

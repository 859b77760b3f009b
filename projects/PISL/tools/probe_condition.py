#!/usr/bin/env python
"""Does the denoiser's condition know where the person is? A linear probe (ridge regression,
5-fold cross-validated R^2) from what the denoiser is conditioned on to the vertical shift and
the scale that ``INPUT.MISALIGN`` applied, on the first test set's misaligned query and gallery:

    python projects/PISL/tools/probe_condition.py --config-file CONFIG MODEL.WEIGHTS MODEL.pth [MODEL.PARTIAL_LOAD True]

Rows: the unit global feature (the paper's condition), the feature map's row profile
(``row_profile``, what ``PISL.DIFFUSION.CONDITION global+rows`` adds) and both. An R^2 near 1
says the condition carries the shift; boxes that still do not follow it are a denoiser that
does not use it. ``--record FILE`` also writes the table as a JSON record.
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_score

from pisl.data import build_dataset, build_test_loader
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.evaluation import extract_features, with_misalignment
from pisl.utils.logger import setup_logger
from pisl.utils.provenance import report_table
from projects.PISL.person_cues import row_profile


def probe_r2(x, y, folds=5):
    """Mean cross-validated R^2 of a ridge regression from ``x`` (N x D) to ``y`` (N); the folds
    are contiguous blocks, so an identity's images tend to stay in one fold."""
    model = RidgeCV(alphas=np.logspace(-3, 3, 13))
    return float(np.mean(cross_val_score(model, x, y, cv=folds, scoring="r2")))


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bins", type=int, default=8, help="rows of the profile")
    parser.add_argument("--record", default="", metavar="FILE",
                        help="also write the table, with its commit, command, processor and config, to this JSON file")
    args = parser.parse_args()
    setup_logger(None)
    cfg = checked_config(args.config_file, [*args.opts, "INPUT.MISALIGN.ENABLED", "True"], need_weights=True)
    model = Predictor(cfg).model
    dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
    items = dataset.query + dataset.gallery

    def conditions(batch):
        _, fmap, global_feature = model.encode(batch)
        return {"global": F.normalize(global_feature, dim=1), "rows": row_profile(fmap, args.bins)}

    features, _ = extract_features(model, build_test_loader(cfg, items), with_misalignment(conditions), desc="Conditions")
    applied = features.pop("misalignment").numpy()
    inputs = {"global feature": features["global"], "row profile": features["rows"],
              "both": torch.cat([features["global"], features["rows"]], 1)}
    rows = [[name, x.shape[1], probe_r2(x.numpy(), applied[:, 0]), probe_r2(x.numpy(), applied[:, 1])]
            for name, x in inputs.items()]
    report_table(["condition", "dims", "R^2 shift", "R^2 scale"], rows, record=args.record, config=cfg,
                 setting=f"\nLinear probe on {len(items)} misaligned {dataset.name} test crops (5-fold CV R^2):")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""What is following the person worth? A trained PISL model's part features on the first test
set's misaligned query and gallery, pooled over three sets of bands and evaluated with the
global feature (``global+parts``, as the model tests) and alone (``parts``):

- ``own``: the model's own part boxes;
- ``fixed``: P equal full-width bands of the crop, wherever the person stands in it;
- ``following``: the same P bands of the aligned crop, moved and scaled by the misalignment
  that ``INPUT.MISALIGN`` applied to each image (``misaligned_heights``): bands that follow
  each person exactly, which no model can know; the truth used as an oracle.

    python projects/PISL/tools/follow_ceiling.py --config-file RUN/config.yaml MODEL.WEIGHTS RUN/model_final.pth

``following`` against ``fixed`` is what perfect following adds to this model's own features at
test time: the most that boxes which follow the person could add over stripes without training
the backbone differently. ``fixed`` and ``following`` use the exact band average
(``band_patches``) through the model's part BN necks; a stripes model's ``own`` pooling
(adaptive average pooling of the map's rows) differs from ``fixed`` where the map's rows do
not divide into P.
"""

import torch

from pisl.data import build_dataset
from pisl.data.misalign import misaligned_heights
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.evaluation import ReidEvaluator
from pisl.utils.logger import setup_logger
from pisl.utils.provenance import report_table
from projects.PISL.meta_arch import global_with_parts
from projects.PISL.partition_boxes import band_patches


def ceiling_features(model, num_parts):
    """``feature_fn`` for ``ReidEvaluator.evaluate``: global+parts and parts alone for the own,
    fixed and following bands (each batch's items carry their ``misalignment``)."""
    edges = torch.linspace(0, 1, num_parts + 1)

    def features(batch):
        images, fmap, global_feature = model.encode(batch)
        own, _ = model.part_features(fmap, global_feature, images)
        shift, scale = (batch["misalignment"][:, k:k + 1] for k in (0, 1))
        moved = torch.as_tensor(misaligned_heights(edges.double(), shift, scale)).to(fmap)
        # Band edges (B x P+1, image heights), pooled exactly and passed through the part BN necks.
        bands = {"fixed": edges.to(fmap).expand(len(fmap), -1), "following": moved}
        parts = {"own": own, **{name: model.unit_part_features(band_patches(fmap, b[:, :-1], b[:, 1:]))
                                for name, b in bands.items()}}
        out = {"global": global_feature}
        out.update({f"global+{name}": global_with_parts(global_feature, p) for name, p in parts.items()})
        out.update({f"{name} parts": p.flatten(1) / num_parts ** 0.5 for name, p in parts.items()})
        return out

    return features


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", default="", metavar="FILE",
                        help="also write the table, with its commit, command, processor and config, to this JSON file")
    args = parser.parse_args()
    setup_logger(None)
    cfg = checked_config(args.config_file, [*args.opts, "INPUT.MISALIGN.ENABLED", "True"], need_weights=True)
    model = Predictor(cfg).model
    dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
    evaluator = ReidEvaluator(cfg, dataset)
    results = evaluator.evaluate(model, ceiling_features(model, cfg.PISL.NUM_PARTS))
    rows = [[name.split("/", 1)[-1] if "/" in name else "global", r["mAP"], r["Rank-1"]] for name, r in results.items()]
    crops = len(dataset.query) + len(dataset.gallery)
    report_table(["feature", "mAP", "Rank-1"], rows, record=args.record, config=cfg, floatfmt=".2f",
                 setting=f"\n{crops} misaligned {dataset.name} test crops, parts pooled over each model's own boxes, "
                         f"fixed bands, and bands that follow the applied misalignment:")


if __name__ == "__main__":
    main()

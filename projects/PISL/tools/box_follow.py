#!/usr/bin/env python
"""Do a trained PISL model's part boxes follow each person? Its boxes on the first test set's
query and gallery images, aligned as they are and misaligned by ``INPUT.MISALIGN``'s ranges
(each image re-framed by a known shift and scale), against the targets of parts that follow:

    python projects/PISL/tools/box_follow.py --config-file RUN/config.yaml MODEL.WEIGHTS RUN/model_final.pth

Prints the box statistics of each framing (``box_statistics``; on misaligned crops with the
correlation and slope of each part's centre against the move that the misalignment applied to
that part, ``follow_statistics``, and the same for the anchors alone where the boxes have
anchors) and one line per target: centre-y std >= 0.03 image heights
on aligned crops, correlation >= 0.8 on misaligned ones, < 10 % of box parameters at a bound,
neighbour IoU <= 0.3 and every box inside the image, on both framings.

On the misaligned crops it also says where the outer boxes sit against the person: the share
of images whose top part starts below the head (below where the aligned crop's upper
``HEAD`` of the height lands) and whose bottom part ends above the feet (above where its lower
edge less ``FEET`` lands), and how much the top part's top moves over images against how much
the person's top does (std, image heights): boxes held near one partition move less.

``--translation`` adds a framing in which following exactly means slope 1 for every part: each
crop shrunk to 0.75 of its size about its centre and shifted by up to +-0.12 of the height, with
no horizontal offset, so that the whole person stays in the frame. ``--record FILE`` also
writes every figure, with the commit, command, processor and config, to a JSON file.
"""

import numpy as np
from tabulate import tabulate

from pisl.data import build_dataset, build_test_loader
from pisl.data.misalign import misaligned_heights
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.evaluation import extract_features, with_misalignment
from pisl.utils.logger import setup_logger
from pisl.utils.provenance import write_record
from projects.PISL.box_stats import BOX_STATISTICS_HEADERS, box_statistics, box_table, follow_statistics, part_boxes


def boxes_of(model, cfg, items):
    """(thetas N x P x 6, anchors, at_bound, applied) of ``items`` as the config frames them;
    ``applied``: N x 3, the misalignment each image got (None on aligned crops)."""
    features, _ = extract_features(model, build_test_loader(cfg, items), with_misalignment(model.cluster_features),
                                   desc="Part boxes")
    applied = features.pop("misalignment", None)
    return (*part_boxes(features, model.part_generator), None if applied is None else applied.numpy())


def inside_share(thetas, tolerance=1e-4):
    """% of boxes whose four corners are inside the image ([-1, 1] map units)."""
    x = thetas[..., 0].abs() + thetas[..., 1].abs()
    y = thetas[..., 3].abs() + thetas[..., 4].abs()
    inside = ((thetas[..., 2].abs() + x) <= 1 + tolerance) & ((thetas[..., 5].abs() + y) <= 1 + tolerance)
    return 100 * inside.float().mean().item()


def anchor_follow_line(anchors, applied):
    """The follow correlation and slope of the anchors alone (the person's stripes before the
    denoiser's correction): whether the boxes follow because the anchors do, or despite them."""
    follow = follow_statistics(anchors, applied)
    r, slope = (", ".join(f"{v:.3f}" for v in follow[:, k].tolist()) for k in (0, 1))
    return f"anchors alone, per part: follow r {r}; follow slope {slope}"


def target_rows(aligned, misaligned):
    """[check, worst part's value, target, met] from the two framings' ``box_statistics`` rows
    and their boxes."""
    (a_rows, a_thetas), (m_rows, m_thetas) = aligned, misaligned
    centre_std = min(r[3] for r in a_rows) / 2  # map units -> image heights
    follow_r = min(r[10] for r in m_rows)
    at_bound = max(r[8] for r in a_rows + m_rows)
    iou = max((r[9] for r in a_rows + m_rows if r[9] == r[9]), default=0.0)
    inside = min(inside_share(a_thetas), inside_share(m_thetas))
    return [["centre-y std, aligned (image heights)", centre_std, ">= 0.03", centre_std >= 0.03],
            ["follow correlation, misaligned", follow_r, ">= 0.8", follow_r >= 0.8],
            ["parameters at a bound (%)", at_bound, "< 10", not at_bound >= 10],
            ["neighbour IoU", iou, "<= 0.3", iou <= 0.3],
            ["boxes inside the image (%)", inside, "100", inside >= 100 - 1e-9]]


HEAD, FEET = 0.10, 0.10  # the upper and lower tenth of a hand-cut crop's height: head and feet
TRANSLATION = ["INPUT.MISALIGN.SCALE", "[0.75, 0.75]", "INPUT.MISALIGN.SHIFT", "0.12", "INPUT.MISALIGN.OFFSET", "0.0"]


def coverage(thetas, applied):
    """Where the top part starts and the bottom part ends against the person, on misaligned
    crops (``applied``: N x 3 shift, scale, offset): {figure: value}."""
    shift, scale = applied[:, 0], applied[:, 1]
    top = ((thetas[:, 0, 5] - thetas[:, 0, 4].abs() + 1) / 2).numpy()  # the top part's upper edge
    bottom = ((thetas[:, -1, 5] + thetas[:, -1, 4].abs() + 1) / 2).numpy()  # the bottom part's lower edge
    person_top = misaligned_heights(0.0, shift, scale)
    return {"top part starts below the head %": 100 * float(np.mean(top > misaligned_heights(HEAD, shift, scale))),
            "bottom part ends above the feet %": 100 * float(np.mean(bottom < misaligned_heights(1 - FEET, shift, scale))),
            "top part's top, std over images": float(np.std(top)),
            "person's top, std over images": float(np.std(person_top)),
            "top part's top - person's top, mean": float(np.mean(top - person_top))}


def statistics_record(rows):
    """``box_statistics`` rows as dicts named by their table headers (nan -> None, for JSON)."""
    return [{n: (v if v == v else None) for n, v in zip(BOX_STATISTICS_HEADERS, map(float, row))} for row in rows]


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--translation", action="store_true",
                        help="also a framing where exact following is slope 1: crops at 0.75 shifted by up to +-0.12")
    parser.add_argument("--record", default="", help="also write every figure, with what made it, to this JSON file")
    args = parser.parse_args()
    setup_logger(None)
    framings, record = {}, {}
    runs = [("aligned", ["INPUT.MISALIGN.ENABLED", "False"]), ("misaligned", ["INPUT.MISALIGN.ENABLED", "True"])]
    if args.translation:
        runs.append(("translation", ["INPUT.MISALIGN.ENABLED", "True", *TRANSLATION]))
    for name, overrides in runs:
        cfg = checked_config(args.config_file, [*args.opts, *overrides], need_weights=True)
        if name == "aligned":
            model, base_cfg = Predictor(cfg).model, cfg
            dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
            items = dataset.query + dataset.gallery
        thetas, anchors, at_bound, applied = boxes_of(model, cfg, items)
        print(f"\n{name} {dataset.name} test crops ({len(items)})\n{box_table(thetas, anchors, at_bound, applied)}")
        stats = box_statistics(thetas, anchors, at_bound, applied)
        record[name] = {"images": len(items), "parts": statistics_record(stats)}
        if applied is not None and anchors is not None:
            print(anchor_follow_line(anchors, applied))
            record[name]["anchors alone"] = follow_statistics(anchors, applied).tolist()
        if name == "misaligned":
            record[name]["coverage"] = coverage(thetas, applied)
            print(tabulate(record[name]["coverage"].items(), tablefmt="pipe", floatfmt=".3f"))
        framings[name] = (stats, thetas)
    rows = target_rows(framings["aligned"], framings["misaligned"])
    print("\n" + tabulate(rows, headers=["target (worst part)", "value", "target", "met"], tablefmt="pipe", floatfmt=".3f"))
    if args.record:
        record["targets"] = [[r[0], float(r[1]), r[2], bool(r[3])] for r in rows]
        print(f"Record: {write_record(args.record, record, base_cfg)}")


if __name__ == "__main__":
    main()

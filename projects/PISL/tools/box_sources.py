#!/usr/bin/env python
"""Where a trained PISL model's part boxes come from, on test images: their prior, the STN's boxes, the
DDIM sample (what clustering and testing use), and the denoiser's x0_hat from the STN's theta
noised to several t (what training cuts patches with).

    python projects/PISL/tools/box_sources.py --config-file RUN/config.yaml MODEL.WEIGHTS RUN/model_final.pth

For each source: the box statistics that training logs before each epoch (centres, heights,
distance from the stripes, spread over images; ``box_statistics``) and how deep in the box
bound's tanh the parameters sit, for affine boxes (mean |offset / limit| over images, min / median /
max over the 6P parameters; beyond 2 the bound passes almost no gradient). A source whose spread
is 0 gives every image the same boxes. ``--record FILE`` also writes every source's statistics
as a JSON record.
"""
from pisl.config import ConfigError
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.utils.provenance import write_record
from projects.PISL.affine_boxes import affine_at_bound
from projects.PISL.box_stats import BOX_STATISTICS_HEADERS, box_statistics, box_table
from projects.PISL.tools.gallery import encode_gallery


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=256, help="random gallery images of the first test set")
    parser.add_argument("--timesteps", type=lambda text: [int(t) for t in text.split(",")], default=[0, 100, 500, 999],
                        help="comma-separated t at which to noise the STN's theta, e.g. 0,500,999")
    parser.add_argument("--seed", type=int, default=0, help="which images, and the noise of x_t")
    parser.add_argument("--record", default="", metavar="FILE",
                        help="also write every source's statistics, with the commit, command, processor and config")
    args = parser.parse_args()
    cfg = checked_config(args.config_file, args.opts, need_weights=True)
    model = Predictor(cfg).model
    generator = model.part_generator
    if not hasattr(generator, "box_sources"):
        raise ConfigError(f"PISL.PART_GENERATOR {cfg.PISL.PART_GENERATOR} has no STN or denoiser to probe")
    images, maps, globals_ = encode_gallery(model, cfg, args.num_images, args.seed)
    sources = generator.box_sources(maps, globals_, images, args.timesteps, args.seed)
    parts = generator.num_parts
    prior = sources["prior"][0].cpu().view(-1, parts, 6)
    recorded = {}
    for name, (thetas, depth) in sources.items():
        thetas = thetas.cpu().view(len(thetas), parts, 6)
        limits = generator.limits
        at_bound = None if limits is None else affine_at_bound(thetas, prior, limits.cpu())
        table = box_table(thetas, prior, at_bound)
        print(f"\n{name} ({len(thetas)} images)\n{table}")
        recorded[name] = {"images": len(thetas), "headers": list(BOX_STATISTICS_HEADERS),
                          "rows": [list(r) for r in box_statistics(thetas, prior, at_bound)]}
        if depth is not None:
            d = depth.cpu()
            print(f"depth in the bound's tanh, |offset / limit|: min {d.min():.2f}, median {d.median():.2f}, max {d.max():.2f}")
            recorded[name]["depth min / median / max"] = [d.min().item(), d.median().item(), d.max().item()]
    if args.record:
        write_record(args.record, {"sources": recorded}, cfg)


if __name__ == "__main__":
    main()

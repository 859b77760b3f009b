#!/usr/bin/env python
"""How far the boxes a PISL model trains on are from the boxes it clusters and tests with.

    python projects/PISL/tools/box_gap.py --config-file RUN/config.yaml MODEL.WEIGHTS RUN/model_final.pth \
        [--num-images 512] [--record gap.json]

Training cuts part patches with the denoiser's one-step x0_hat from the STN's boxes noised to a
random t (one t per image, as in training); clustering and testing cut them with the DDIM
sample. On the same gallery images of the first test set (framed as the config frames them,
misaligned or not), for each part: the mean and 90th percentile over images of the distance
between the two boxes' centres and between their heights (fractions of the image height),
overall and by t; and whether the part's BatchNorm sees the difference: the mean over channels
of |mean under training boxes - mean under test boxes| / sqrt(the BN's running variance), and
the mean ratio of the two per-channel variances (1 and 0: BN cannot tell them apart).
"""
import torch

from pisl.config import ConfigError
from pisl.engine import Predictor
from pisl.engine.defaults import ConfigArgumentParser
from pisl.engine.preflight import checked_config, exit_on_bad_input
from pisl.utils.provenance import write_record
from projects.PISL.tools.gallery import encode_gallery
from tabulate import tabulate

T_BINS = ((0, 250), (250, 750), (750, 1000))


def training_params(generator, maps, cond, prior, seed):
    """The boxes training cuts patches with: x0_hat from the STN's theta noised to one random t
    per image. Returns (params, t)."""
    rng = torch.Generator().manual_seed(seed)
    theta, _ = generator.stn_params(maps, prior)
    origin = generator.origin(prior)
    t = torch.randint(0, generator.diffusion.timesteps, (len(theta),), generator=rng)
    noise = torch.randn(theta.shape, generator=rng).to(theta)
    x_t = generator.diffusion.q_sample(theta - origin, t.to(theta.device), noise)
    correction = generator.denoiser.conditioned(cond)(x_t, t.to(theta.device))
    return generator.predict_start(correction, prior), t


def box_rows(thetas):
    """Centre and height of each part's box (N x P each), as fractions of the image height."""
    thetas = thetas.view(len(thetas), -1, 6)
    return (thetas[..., 5] + 1) / 2, thetas[..., 4].abs()


def gap_table(train_thetas, test_thetas, t):
    (c_tr, h_tr), (c_te, h_te) = box_rows(train_thetas), box_rows(test_thetas)
    dc, dh = (c_tr - c_te).abs(), (h_tr - h_te).abs()
    rows, record = [], {}
    for name, (lo, hi) in [("all t", (0, 10 ** 9))] + [(f"t in [{lo}, {hi})", (lo, hi)) for lo, hi in T_BINS]:
        keep = (t >= lo) & (t < hi)
        if not keep.any():
            continue
        for p in range(dc.shape[1]):
            figures = {"images": int(keep.sum()), "centre mean": dc[keep, p].mean().item(),
                       "centre p90": dc[keep, p].quantile(0.9).item(), "height mean": dh[keep, p].mean().item(),
                       "height p90": dh[keep, p].quantile(0.9).item()}
            rows.append([name, p] + [f"{v:.3f}" if isinstance(v, float) else v for v in figures.values()])
            record[f"{name}/part{p}"] = figures
    headers = ["x0_hat at", "part", "images", "|d centre| mean", "p90", "|d height| mean", "p90"]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True), record


def bn_table(model, train_parts, test_parts):
    """Per part: how far the pooled patch features (before the part's BN neck) under training
    boxes are from those under test boxes, in units of the BN's running std."""
    rows, record = [], {}
    for p, neck in enumerate(model.part_necks):
        std = neck.running_var.sqrt().clamp(min=1e-6)
        a, b = train_parts[:, p].float(), test_parts[:, p].float()
        shift = ((a.mean(0) - b.mean(0)).abs() / std).mean().item()
        ratio = (a.var(0) / b.var(0).clamp(min=1e-12)).mean().item()
        rows.append([p, f"{shift:.3f}", f"{ratio:.3f}"])
        record[f"part{p}"] = {"mean shift in running stds": shift, "variance ratio train / test": ratio}
    return tabulate(rows, headers=["part", "|mean train - mean test| / running std", "var train / var test"],
                    tablefmt="pipe", disable_numparse=True), record


@exit_on_bad_input
def main():
    parser = ConfigArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=512, help="random gallery images of the first test set")
    parser.add_argument("--seed", type=int, default=0, help="which images, and the t and noise of x_t")
    parser.add_argument("--record", default="", help="also write the figures, with what made them, to this JSON file")
    args = parser.parse_args()
    cfg = checked_config(args.config_file, args.opts, need_weights=True)
    model = Predictor(cfg).model
    generator = model.part_generator
    if not hasattr(generator, "stn_params"):
        raise ConfigError(f"PISL.PART_GENERATOR {cfg.PISL.PART_GENERATOR} has no STN or denoiser: its boxes are fixed")
    images, maps, globals_ = encode_gallery(model, cfg, args.num_images, args.seed)
    with torch.no_grad():
        cond, prior = generator.cond_and_prior(maps, globals_, images)
        train_params, t = training_params(generator, maps, cond, prior, args.seed)
        test_params = generator.sample(cond, prior)
        thetas = generator.boxes.thetas
        boxes, box_record = gap_table(thetas(train_params).cpu(), thetas(test_params).cpu(), t)
        bn, bn_record = bn_table(model, generator.boxes.patches(maps, train_params).cpu(),
                                 generator.boxes.patches(maps, test_params).cpu())
    print(f"Training boxes (one-step x0_hat, random t) against test boxes (DDIM, {generator.sample_steps} steps), "
          f"{len(t)} images; centres and heights in image heights:\n{boxes}\n\n"
          f"The part BN necks' view of the two:\n{bn}")
    if args.record:
        print(f"Record: {write_record(args.record, {'boxes': box_record, 'bn': bn_record}, cfg)}")


if __name__ == "__main__":
    main()

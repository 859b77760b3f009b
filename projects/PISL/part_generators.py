"""Part generators: feature map (B x C x H x W) -> P pooled part features (B x P x C).

Both are registered in PART_GENERATOR_REGISTRY and chosen by ``PISL.PART_GENERATOR``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from tabulate import tabulate

from pisl.utils.registry import Registry

from .diffusion import Denoiser, GaussianDiffusion

PART_GENERATOR_REGISTRY = Registry("PART_GENERATOR")


def stripe_thetas(num_parts):
    """The P affine matrices (P x 2 x 3) that cut P horizontal stripes:
    theta_i = [[1, 0, 0], [0, 1/P, (2i+1)/P - 1]]."""
    theta = torch.zeros(num_parts, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0 / num_parts
    theta[:, 1, 2] = (2 * torch.arange(num_parts) + 1) / num_parts - 1
    return theta


def neighbour_iou(thetas):
    """N x (P - 1): the IoU of each part's box with the next part's, the boxes taken axis-aligned
    (centre (tx, ty), half-extents |sx| and |sy|; the small shears are ignored)."""
    lo_x, hi_x = thetas[..., 2] - thetas[..., 0].abs(), thetas[..., 2] + thetas[..., 0].abs()
    lo_y, hi_y = thetas[..., 5] - thetas[..., 4].abs(), thetas[..., 5] + thetas[..., 4].abs()
    overlap = lambda lo, hi: (torch.minimum(hi[:, :-1], hi[:, 1:]) - torch.maximum(lo[:, :-1], lo[:, 1:])).clamp(min=0)
    inter = overlap(lo_x, hi_x) * overlap(lo_y, hi_y)
    area = (hi_x - lo_x) * (hi_y - lo_y)
    return inter / (area[:, :-1] + area[:, 1:] - inter).clamp(min=1e-12)


def person_anchors(feature_map, num_parts, quantile=0.02):
    """The P stripes of the person's vertical extent in each image (B x 6P affine parameters):
    the rows between the ``quantile`` and 1 - ``quantile`` points of the feature map's
    activation mass, cut into P equal parts, full width.

    A row's mass is its mean activation minus the emptiest row's (taken as background). The
    q-point is found in closed form, each row's mass spread evenly over its height: row i
    contributes clamp((q - mass above row i) / mass of row i, 0, 1) rows (elementwise ops
    only, so the model still exports to ONNX). A map whose rows are all equal gives the
    extent [q, 1 - q]. q > 0: the 0 % point would be the top of the first empty row. Detached: the anchors are a prior, the part losses do not train them.
    Measured on CUHK01 test crops (a CUHK03-NP model, q = 0.02): the extent starts at 0.06 +-
    0.04 and ends at 0.84 +- 0.02 of the image height (docs/pisl_cuhk01.md).
    """
    profile = feature_map.detach().float().mean((1, 3))  # B x H
    mass = profile - profile.min(1, keepdim=True).values
    total = mass.sum(1, keepdim=True)
    height = mass.shape[1]
    mass = torch.where(total > 0, mass / total.clamp(min=1e-12), torch.full_like(mass, 1.0 / height))
    above = torch.cumsum(mass, 1) - mass

    def point(level):  # where the cumulative mass reaches ``level``, as a fraction of the height
        return ((level - above) / mass.clamp(min=1e-12)).clamp(0, 1).sum(1) / height

    top, extent = point(quantile), point(1 - quantile) - point(quantile)
    # Stripe i of the extent: half-height extent / P, centre at top + (i + 1/2) extent / P, in
    # [-1, 1] map coordinates. Built by broadcasting, so an exported graph keeps a dynamic batch.
    zeros = torch.zeros(1, num_parts, device=feature_map.device) * top.unsqueeze(1)  # B x P
    half = zeros + (extent / num_parts).unsqueeze(1)
    steps = 2 * torch.arange(num_parts, device=feature_map.device) + 1
    centre = (2 * top - 1).unsqueeze(1) + steps * half
    return torch.stack([zeros + 1, zeros, zeros, zeros, half, centre], dim=2).flatten(1)


def box_statistics(thetas, limits=None, anchors=None):
    """How the part boxes vary over images, how far they are from their anchors, whether they
    sit at their bounds and how much neighbouring parts overlap.

    ``thetas``: N x P x 6 affine parameters [sx, shx, tx, shy, sy, ty] (the grid maps the
    patch to x' = sx x + shx y + tx, y' = shy x + sy y + ty in [-1, 1] map coordinates: the box
    is centred at (tx, ty) with half-extents about (sx, sy)). ``limits``: the generator's 6P
    bounds on the offsets from the anchors (``box_limits``), None for unbounded boxes.
    ``anchors``: N x P x 6, the boxes the offsets are measured from (``person_anchors``), None
    for the stripes. Returns rows [part, anchor centre y mean, centre y mean, centre y std,
    height (sy) mean, height std, |theta - anchor| mean, spread, % of parameters within 2 % of
    their bound, IoU with the next part] where spread is the root mean variance of the six parameters over images
    (0 for a generator whose boxes do not depend on the image); the last two are nan where
    they do not apply (no bounds; the last part).
    """
    if anchors is None:
        anchors = stripe_thetas(thetas.shape[1]).flatten(1).to(thetas).expand_as(thetas)
    offset = (thetas - anchors).norm(dim=2).mean(0)
    spread = thetas.var(dim=0, unbiased=False).mean(1).sqrt()
    nan = torch.full((thetas.shape[1],), float("nan"))
    at_bound = nan if limits is None else \
        100 * ((thetas - anchors).abs() >= 0.98 * limits.view(anchors.shape[1:]).to(thetas)).float().mean((0, 2))
    iou = torch.cat([neighbour_iou(thetas).mean(0), nan[:1]])
    return [[p, anchors[:, p, 5].mean().item(), thetas[:, p, 5].mean().item(), thetas[:, p, 5].std(unbiased=False).item(),
             thetas[:, p, 4].mean().item(), thetas[:, p, 4].std(unbiased=False).item(), offset[p].item(), spread[p].item(),
             at_bound[p].item(), iou[p].item()] for p in range(thetas.shape[1])]


def box_metrics(thetas, limits=None, anchors=None):
    """``box_statistics`` as flat scalars for the metrics file and TensorBoard, e.g.
    ``parts/centre_y_std/p0``; nan entries are left out."""
    names = ["centre_y_std", "height_std", "at_bound_pct", "iou_next"]
    columns = [3, 5, 8, 9]
    return {f"parts/{name}/p{row[0]}": row[c] for row in box_statistics(thetas, limits, anchors)
            for name, c in zip(names, columns) if row[c] == row[c]}


BOX_STATISTICS_HEADERS = ["part", "anchor y", "centre y", "centre y std", "height sy", "height std", "|theta - anchor|",
                          "spread", "at bound %", "IoU next"]


def box_table(thetas, limits=None, anchors=None):
    """``box_statistics`` as a markdown table, as the logs and tools print it."""
    return tabulate(box_statistics(thetas, limits, anchors), headers=BOX_STATISTICS_HEADERS, tablefmt="pipe", floatfmt=".3f")


def part_boxes(features, generator):
    """(thetas, limits, anchors) for ``box_statistics`` from a model's ``cluster_features``
    (``features``: "thetas" N x 6P, and "anchors" where the generator has them) and its part
    generator (its "limits" where its boxes are bounded)."""
    thetas = features["thetas"]
    view = lambda x: None if x is None else x.reshape(len(thetas), -1, 6)
    return view(thetas), getattr(generator, "limits", None), view(features.get("anchors"))


def box_limits(limits, num_parts):
    """The largest offset from the stripes of each of the 6P affine parameters, from the six
    ``PISL.DIFFUSION.BOX_LIMITS`` [sx, shx, tx, shy, sy, ty]: sy and ty are given in stripe
    heights (1/P) so that one setting fits every P, the rest in map units."""
    per_part = torch.tensor(limits, dtype=torch.float32)
    per_part[4:] /= num_parts
    return per_part.repeat(num_parts)


def bound_boxes(thetas, anchors, limits):
    """Keep each affine parameter within ``limits`` of its anchor's (the stripes' or
    ``person_anchors``'), smoothly: anchor + limits * tanh((theta - anchor) / limits). The
    slope is 1 on the anchors, so an untrained model is unchanged. Far out it is nearly 0: trained on CUHK03-NP the denoiser's
    correction ends 2-12 limits deep (slope < 0.07), so boxes sit at the limits
    (docs/pisl_cuhk03np.md).
    Why: with only a wide clamp, the part losses grew every box to the whole map (sy and ty at
    the clamp by epoch 5 on CUHK03-NP, docs/pisl_cuhk03np.md), and parts that all see the
    whole map add nothing to the global feature."""
    return anchors + limits * torch.tanh((thetas - anchors) / limits)


def bound_depth(offsets, limits):
    """How deep in ``bound_boxes``' tanh unbounded offsets from the anchors sit: |offset / limit|
    (slope 1 - tanh^2: 0.42 at depth 1, 0.07 at 2, under 0.01 beyond 3)."""
    return (offsets / limits).abs()


def saturation(offsets, limits):
    """How far past one limit the unbounded offsets from the anchors reach, as the mean over
    samples and parameters of relu(|offset / limit| - 1)^2: 0 while every parameter stays where
    ``bound_boxes``' slope is at least 0.42. Penalised (``PISL.SCD.W_BOUND``), it keeps the
    part losses' gradient reaching the denoiser: unpenalised, the seed-1 CUHK03-NP run ended
    with corrections 2-12 limits deep; with W_BOUND 10 about 1 deep, but the boxes were the
    same for every image either way (docs/pisl_cuhk03np.md)."""
    return F.relu(bound_depth(offsets, limits) - 1).pow(2).mean()


def part_overlap(thetas):
    """The mean IoU of neighbouring parts' boxes (``neighbour_iou``; thetas N x P x 6), 0 for one
    part. Penalised (``PISL.SCD.W_OVERLAP``, PAT's diversity idea on boxes), it keeps the P parts
    from sliding onto the same body region inside their bounds."""
    if thetas.shape[1] < 2:
        return thetas.new_zeros(())
    return neighbour_iou(thetas).mean()


def patch_pooling_weights(thetas, height, width):
    """How much each feature-map cell contributes to each pooled patch: B x P x (H W).

    A patch is the map sampled bilinearly (zero padding, ``align_corners=False``, as
    ``F.grid_sample``) on the grid of its affine matrix, then averaged. Sampling is linear in
    the map, so the pooled patch is a weighted sum of the map's cells; the weights are the
    bilinear corner weights of the grid points, summed per cell and divided by the patch size.
    Patches have the size of one stripe (H/P x W).
    """
    b, p = thetas.shape[:2]
    size = (b * p, 1, max(1, round(height / p)), width)
    grid = F.affine_grid(thetas.reshape(b * p, 2, 3), size, align_corners=False).flatten(1, 2)
    # Normalised [-1, 1] coordinates to pixel coordinates (align_corners=False).
    x = ((grid[..., 0] + 1) * width - 1) / 2
    y = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    weights = thetas.new_zeros(b * p, height * width)
    for cx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
        for cy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)  # zero padding outside
            cell = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long()
            weights = weights.scatter_add(1, cell, wx * wy * inside)
    return weights.view(b, p, -1) / grid.shape[1]


def cut_patches(feature_map, thetas):
    """One average-pooled patch per affine matrix (thetas: B x P x 2 x 3): B x P x C.

    The same as ``F.grid_sample`` of a stripe-sized patch and its mean, computed as one
    weighted sum per patch (``patch_pooling_weights``): no P copies of the map and no sampled
    patches in memory, and a matrix product to back-propagate through. With the stripe
    matrices the grid falls exactly on feature-map cells, so the patch *is* the stripe.
    """
    weights = patch_pooling_weights(thetas, *feature_map.shape[2:])
    return torch.bmm(weights.to(feature_map.dtype), feature_map.flatten(2).transpose(1, 2))


@PART_GENERATOR_REGISTRY.register(name="stripes")
class StripeParts(nn.Module):
    """PPLR's parts: P uniform horizontal stripes, average-pooled."""

    def __init__(self, in_channels, num_parts):
        super().__init__()
        self.num_parts = num_parts

    @classmethod
    def from_config(cls, cfg, in_channels):
        return cls(in_channels, cfg.PISL.NUM_PARTS)

    def forward(self, feature_map, global_feature=None):
        parts = F.adaptive_avg_pool2d(feature_map, (self.num_parts, 1)).squeeze(3)
        thetas = stripe_thetas(self.num_parts).flatten().to(feature_map).expand(len(feature_map), -1)
        return {"parts": parts.transpose(1, 2), "thetas": thetas}


class Localisation(nn.Module):
    """STN localisation net: conv3x3 (no padding) -> BN -> ReLU -> max-pool 3/2 -> GAP -> FC
    512 -> ReLU -> FC 6P, the last FC starting at weight 0 with the stripes as bias."""

    def __init__(self, in_channels, num_parts, channels=4096):
        super().__init__()
        self.num_parts = num_parts
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels, 512), nn.ReLU(inplace=True), nn.Linear(512, 6 * num_parts),
        )
        nn.init.kaiming_normal_(self.features[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.features[-1].weight)
        with torch.no_grad():
            self.features[-1].bias.copy_(stripe_thetas(num_parts).flatten())

    def forward(self, feature_map):
        if min(feature_map.shape[2:]) < 3:
            # Too small for the unpadded 3x3 conv (e.g. 4 x 2 from small inputs): zero-pad by one
            # cell, i.e. a padded conv. Larger maps keep the reference's valid conv, which on
            # ResNet-50's 24 x 8 map also costs 30 % less than a padded one.
            feature_map = F.pad(feature_map, (1, 1, 1, 1))
        return self.features(feature_map)  # B x 6P


@PART_GENERATOR_REGISTRY.register(name="diffusion_stn")
class DiffusionSTNParts(nn.Module):
    """The Spatial Diffusion Model: an STN predicts theta (B x 6P); a diffusion model over
    theta, conditioned on the detached L2-normalised global feature, learns to denoise.

    Training: theta_stn = STN(X); x_t = q(theta_stn, t, eps) with t drawn per sample;
    x0_hat = denoised x_t; the part patches are cut with x0_hat, so the part losses
    train the denoiser (semantic control). Eval: theta = DDIM sample from one seeded x_T.

    Boxes are anchors plus bounded offsets. ``anchors`` "stripes": the P stripes of the image,
    the same for every image. "person": the P stripes of the person's vertical extent in this
    image (``person_anchors``), so that the parts follow the person even where the offsets do
    not depend on the image (with stripe anchors, the trained offsets were the same for every
    image: docs/pisl_cuhk01.md).

    The denoiser predicts x0 as the anchors plus the MLP's correction (zero at init), and the
    noise estimate eps_hat is the noise that x0_hat implies: an untrained model samples and
    trains on the anchors, i.e. starts as PPLR (stripe anchors). Predicting x0 rather than the noise keeps the
    patches well-conditioned at every t: recovering x0 from a noise estimate divides by
    sqrt(abar_t), which reaches 5e-5 at t = 999 and turns any error into a patch off the map.
    With stripe anchors the diffusion runs on theta itself, as the reference's; with person
    anchors, which the denoiser does not see, on the offsets from them (``origin``).

    theta_stn and x0_hat are both kept near the anchors by ``bound_boxes`` (``box_limits``:
    by default each box is 0.5 to 1.5 stripes high, its centre within half a stripe of its
    anchor's, so the parts stay ordered top to bottom and none can cover the whole map).

    ``stn_patch_share`` > 0 cuts that share of the training samples' patches with theta_stn
    instead of x0_hat, so that the part losses also reach the STN, the one module that sees
    the feature map (the denoiser sees the image only through the pooled global feature).
    """

    def __init__(self, in_channels, num_parts, stn_channels=4096, timesteps=1000, cosine_s=0.008,
                 sample_steps=50, sample_seed=0, limits=(0.25, 0.1, 0.25, 0.1, 0.5, 0.5), stn_patch_share=0.0,
                 cond_scale=1.0, anchors="stripes", person_quantile=0.02):
        super().__init__()
        self.num_parts, self.sample_steps, self.stn_patch_share = num_parts, sample_steps, stn_patch_share
        self.anchors, self.person_quantile = anchors, person_quantile
        self.stn = Localisation(in_channels, num_parts, stn_channels)
        self.diffusion = GaussianDiffusion(timesteps, cosine_s)
        self.denoiser = Denoiser(6 * num_parts, in_channels, cond_scale=cond_scale)
        self.register_buffer("prior_theta", stripe_thetas(num_parts).flatten(), persistent=False)
        self.register_buffer("limits", box_limits(limits, num_parts), persistent=False)
        # The sampler's start, drawn once on the CPU: the same on every device, and a constant
        # (not a random op) in an exported graph.
        x_T = torch.randn(1, 6 * num_parts, generator=torch.Generator().manual_seed(sample_seed))
        self.register_buffer("x_T", x_T, persistent=False)

    @classmethod
    def from_config(cls, cfg, in_channels):
        d = cfg.PISL.DIFFUSION
        return cls(in_channels, cfg.PISL.NUM_PARTS, cfg.PISL.STN.CHANNELS, d.TIMESTEPS, d.COSINE_S,
                   d.SAMPLE_STEPS, d.SAMPLE_SEED, d.BOX_LIMITS, d.STN_PATCH_SHARE, d.COND_SCALE, d.ANCHORS,
                   d.PERSON_QUANTILE)

    def anchor_thetas(self, feature_map):
        """Each image's anchors, B x 6P."""
        if self.anchors == "person":
            return person_anchors(feature_map, self.num_parts, self.person_quantile)
        return self.prior_theta.expand(feature_map.shape[0], -1)

    def origin(self, anchors):
        """What the diffusion's x0 is measured from: 0 with stripe anchors (theta itself), the
        anchors with person anchors (the denoiser cannot recover anchors it does not see)."""
        return anchors if self.anchors == "person" else torch.zeros_like(anchors)

    def bound(self, thetas, anchors):
        return bound_boxes(thetas, anchors, self.limits)

    def predict_start(self, correction, anchors):
        """x0_hat: the anchors plus the denoiser's correction, bounded."""
        return self.bound(anchors + correction, anchors)

    def stn_thetas(self, feature_map, anchors):
        """The STN's boxes and their unbounded offsets from the anchors (the STN starts at
        the stripes, so its output less the stripes is its offset)."""
        offset = self.stn(feature_map) - self.prior_theta
        return self.bound(anchors + offset, anchors), offset

    def _patches(self, feature_map, theta):
        return cut_patches(feature_map, theta.view(-1, self.num_parts, 2, 3))

    def forward(self, feature_map, global_feature):
        cond = F.normalize(global_feature.detach(), dim=1)
        anchors = self.anchor_thetas(feature_map)
        if not self.training:
            thetas = self.sample(cond, anchors)
            out = {"parts": self._patches(feature_map, thetas), "thetas": thetas}
            if self.anchors == "person":  # stripe anchors are implied
                out["anchors"] = anchors
            return out
        theta, stn_offset = self.stn_thetas(feature_map, anchors)
        origin = self.origin(anchors)
        t = torch.randint(0, self.diffusion.timesteps, (theta.shape[0],), device=theta.device)
        noise = torch.randn_like(theta)
        x_t = self.diffusion.q_sample(theta - origin, t, noise)
        correction = self.denoiser.conditioned(cond)(x_t, t)
        x0_hat = self.predict_start(correction, anchors)
        eps_hat = self.diffusion.predict_eps(x_t, t, x0_hat - origin)
        patch_theta = x0_hat
        if self.stn_patch_share > 0:  # no random draw when off: runs without it stay as they were
            from_stn = torch.rand(theta.shape[0], 1, device=theta.device) < self.stn_patch_share
            patch_theta = torch.where(from_stn, theta, x0_hat)
        return {"parts": self._patches(feature_map, patch_theta), "theta": theta, "x0_hat": x0_hat,
                "eps_hat": eps_hat, "eps": noise, "snr": self.diffusion.snr(t),
                "saturation": saturation(stn_offset, self.limits) + saturation(correction, self.limits),
                "overlap": part_overlap(patch_theta.view(-1, self.num_parts, 6))}

    @torch.no_grad()
    def box_sources(self, feature_map, global_feature, timesteps=(0, 500, 999), seed=0):
        """Diagnostics (``projects/PISL/tools/box_sources.py``): where a trained model's boxes come from.

        Returns {source: (thetas N x 6P, depth 6P or None)} for the anchors, the STN's theta,
        the DDIM sample, and the x0_hat that the denoiser recovers from the STN's theta noised
        to each t in ``timesteps`` (the training path). ``depth`` is the mean ``bound_depth``
        over images, per parameter.
        """
        cond = F.normalize(global_feature, dim=1)
        anchors = self.anchor_thetas(feature_map)
        origin = self.origin(anchors)
        theta, stn_offset = self.stn_thetas(feature_map, anchors)
        sources = {"anchors": (anchors, None), "STN theta": (theta, bound_depth(stn_offset, self.limits).mean(0)),
                   "DDIM sample": (self.sample(cond, anchors), None)}
        denoise = self.denoiser.conditioned(cond)
        generator = torch.Generator().manual_seed(seed)
        for step in timesteps:
            t = torch.full((len(theta),), step, dtype=torch.long, device=theta.device)
            noise = torch.randn(theta.shape, generator=generator).to(theta)
            correction = denoise(self.diffusion.q_sample(theta - origin, t, noise), t)
            sources[f"x0_hat t={step}"] = (self.predict_start(correction, anchors),
                                           bound_depth(correction, self.limits).mean(0))
        return sources

    def sample(self, cond, anchors):
        """Deterministic DDIM sample of theta for each conditioning row and its anchors. Every
        row starts from the same seeded noise, so an image's parts depend on its own global
        feature and anchors only, not on the rest of its batch, its place in it or the batch size."""
        denoise = self.denoiser.conditioned(cond)
        origin = self.origin(anchors)
        x_T = self.x_T.expand(cond.shape[0], -1)
        x0_fn = lambda x, t: self.predict_start(denoise(x, t), anchors) - origin
        return self.diffusion.ddim_sample(x0_fn, x_T, self.sample_steps) + origin

"""Part generators: feature map (B x C x H x W) -> P pooled part features (B x P x C).

Both are registered in PART_GENERATOR_REGISTRY and chosen by ``PISL.PART_GENERATOR``.
"""
import math

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


def extent_of_profile(profile, quantile=0.02):
    """(top, extent) as fractions of the height (B each) of a B x H row profile of non-negative
    "person evidence": the rows between the ``quantile`` and 1 - ``quantile`` points of its mass.

    A row's mass is its value minus the emptiest row's (taken as background). The q-point is
    found in closed form, each row's mass spread evenly over its height: row i contributes
    clamp((q - mass above row i) / mass of row i, 0, 1) rows (elementwise ops only, so the model
    still exports to ONNX). A profile whose rows are all equal gives the extent [q, 1 - q].
    q > 0: the 0 % point would be the top of the first empty row.
    """
    profile = profile.detach().float()
    mass = profile - profile.min(1, keepdim=True).values
    total = mass.sum(1, keepdim=True)
    height = mass.shape[1]
    mass = torch.where(total > 0, mass / total.clamp(min=1e-12), torch.full_like(mass, 1.0 / height))
    above = torch.cumsum(mass, 1) - mass

    def point(level):  # where the cumulative mass reaches ``level``, as a fraction of the height
        return ((level - above) / mass.clamp(min=1e-12)).clamp(0, 1).sum(1) / height

    top = point(quantile)
    return top, point(1 - quantile) - top


def person_extent(feature_map, quantile=0.02):
    """Where the person is in each image, from the feature map: ``extent_of_profile`` of its
    mean activation per row. Detached: the extent is a prior, the part losses do not train it.
    Measured on CUHK01 test crops (a CUHK03-NP model, q = 0.02): the extent starts at 0.06 +-
    0.04 and ends at 0.84 +- 0.02 of the image height (docs/pisl_cuhk01.md).
    """
    return extent_of_profile(feature_map.detach().float().mean((1, 3)), quantile)


def image_person_extent(images, quantile=0.02, border=0.125):
    """Where the person is in each image, from its pixels (B x 3 x H x W, any normalisation):
    ``extent_of_profile`` of each row's mean absolute difference from that row's own border
    colour, the mean of the ``border`` share of the width at each side. A re-ID crop has the
    person in the middle and background at its sides, so the rows that differ from their
    borders are the person's; a row of plain background, padding or fill differs from nothing.
    (In training, a rectangle that random erasing, ``INPUT.REA``, fills with noise counts too.)
    Needs no training: a network trained from random weights for minutes has activations that
    do not locate people (docs/benchmarks.md), this cue does from the first iteration.
    """
    x = images.detach().float()
    side = max(1, round(border * x.shape[3]))
    background = torch.cat([x[..., :side], x[..., -side:]], dim=3).mean(3, keepdim=True)
    return extent_of_profile((x - background).abs().mean((1, 3)), quantile)


def stripes_of_extent(top, extent, num_parts):
    """The P stripes of each image's vertical extent (top and extent: B each, fractions of the
    height), full width, as B x 6P affine parameters."""
    # Stripe i of the extent: half-height extent / P, centre at top + (i + 1/2) extent / P, in
    # [-1, 1] map coordinates. Built by broadcasting, so an exported graph keeps a dynamic batch.
    zeros = torch.zeros(1, num_parts, device=top.device) * top.unsqueeze(1)  # B x P
    half = zeros + (extent / num_parts).unsqueeze(1)
    steps = 2 * torch.arange(num_parts, device=top.device) + 1
    centre = (2 * top - 1).unsqueeze(1) + steps * half
    return torch.stack([zeros + 1, zeros, zeros, zeros, half, centre], dim=2).flatten(1)


def person_anchors(feature_map, num_parts, quantile=0.02):
    """The P stripes of the person's vertical extent in each image's feature map
    (``person_extent``), full width, as B x 6P affine parameters."""
    return stripes_of_extent(*person_extent(feature_map, quantile), num_parts)


def row_profile(feature_map, bins=8):
    """The feature map's mean activation per row, pooled to ``bins`` rows, centred and
    L2-normalised (B x bins): where along the height the activation is, whatever its overall
    level. Detached, like the global feature it is conditioned beside."""
    rows = feature_map.detach().float().mean((1, 3)).unsqueeze(1)  # B x 1 x H
    profile = F.adaptive_avg_pool1d(rows, bins).squeeze(1)  # a map of fewer rows: each row repeated
    return F.normalize(profile - profile.mean(1, keepdim=True), dim=1)


def affine_at_bound(thetas, anchors, limits):
    """% of each part's six affine parameters within 2 % of their bound (P), for boxes that are
    anchors plus offsets bounded by ``limits`` (6P, ``box_limits``)."""
    return 100 * ((thetas - anchors).abs() >= 0.98 * limits.view(thetas.shape[-2:]).to(thetas)).float().mean((0, 2))


def follow_statistics(thetas, applied):
    """How the part centres follow a known misalignment: P x 2, [correlation, slope].

    ``applied``: N x 3 (shift, scale, offset) of ``INPUT.MISALIGN`` per image. A point at
    relative height y of the aligned crop lands at 0.5 + scale (y - 0.5) + shift, so part p,
    whose centre sits at about its mean predicted height y_p, is moved by
    shift + (scale - 1)(y_p - 0.5). Correlation and least-squares slope of the predicted centre
    (image heights) against that move, over images: 1 and 1 for boxes that follow the person
    exactly, 0 for boxes that are the same for every image (nan: undefined).
    """
    applied = torch.as_tensor(applied, dtype=thetas.dtype)
    centre = (thetas[..., 5] + 1) / 2  # N x P, image heights
    move = applied[:, :1] + (applied[:, 1:2] - 1) * (centre.mean(0, keepdim=True) - 0.5)
    dc, dm = centre - centre.mean(0), move - move.mean(0)
    cov = (dc * dm).mean(0)
    corr = cov / (dc.pow(2).mean(0).sqrt() * dm.pow(2).mean(0).sqrt())
    slope = cov / dm.pow(2).mean(0)
    return torch.stack([corr, slope], 1)


def box_statistics(thetas, anchors=None, at_bound=None, applied=None):
    """How the part boxes vary over images, how far they are from their anchors, whether they
    sit at their bounds, how much neighbouring parts overlap and how they follow a misalignment.

    ``thetas``: N x P x 6 affine parameters [sx, shx, tx, shy, sy, ty] (the grid maps the
    patch to x' = sx x + shx y + tx, y' = shy x + sy y + ty in [-1, 1] map coordinates: the box
    is centred at (tx, ty) with half-extents about (sx, sy)). ``anchors``: N x P x 6, the boxes
    the generator starts from (``person_anchors``), None for the stripes. ``at_bound``: P, the
    generator's own % of parameters at a bound (``affine_at_bound``, ``PartitionBoxes.at_bound``),
    None where its boxes have none. ``applied``: N x 3, the misalignment of each image
    (``follow_statistics``), None for aligned crops. Returns rows [part, anchor centre y mean,
    centre y mean, centre y std, height (sy) mean, height std, |theta - anchor| mean, spread, at
    bound %, IoU with the next part, follow r, follow slope] where spread is the root mean
    variance of the six parameters over images (0 for a generator whose boxes do not depend on
    the image); entries that do not apply are nan.
    """
    if anchors is None:
        anchors = stripe_thetas(thetas.shape[1]).flatten(1).to(thetas).expand_as(thetas)
    offset = (thetas - anchors).norm(dim=2).mean(0)
    spread = thetas.var(dim=0, unbiased=False).mean(1).sqrt()
    nan = torch.full((thetas.shape[1],), float("nan"))
    at_bound = nan if at_bound is None else at_bound
    iou = torch.cat([neighbour_iou(thetas).mean(0), nan[:1]])
    follow = torch.stack([nan, nan], 1) if applied is None else follow_statistics(thetas, applied)
    return [[p, anchors[:, p, 5].mean().item(), thetas[:, p, 5].mean().item(), thetas[:, p, 5].std(unbiased=False).item(),
             thetas[:, p, 4].mean().item(), thetas[:, p, 4].std(unbiased=False).item(), offset[p].item(), spread[p].item(),
             float(at_bound[p]), iou[p].item(), follow[p, 0].item(), follow[p, 1].item()] for p in range(thetas.shape[1])]


def box_metrics(thetas, anchors=None, at_bound=None, applied=None):
    """``box_statistics`` as flat scalars for the metrics file and TensorBoard, e.g.
    ``parts/centre_y_std/p0``; nan entries are left out."""
    names = ["centre_y_std", "height_std", "at_bound_pct", "iou_next", "follow_r", "follow_slope"]
    columns = [3, 5, 8, 9, 10, 11]
    return {f"parts/{name}/p{row[0]}": row[c] for row in box_statistics(thetas, anchors, at_bound, applied)
            for name, c in zip(names, columns) if row[c] == row[c]}


BOX_STATISTICS_HEADERS = ["part", "anchor y", "centre y", "centre y std", "height sy", "height std", "|theta - anchor|",
                          "spread", "at bound %", "IoU next", "follow r", "follow slope"]


def box_table(thetas, anchors=None, at_bound=None, applied=None):
    """``box_statistics`` as a markdown table, as the logs and tools print it."""
    return tabulate(box_statistics(thetas, anchors, at_bound, applied), headers=BOX_STATISTICS_HEADERS, tablefmt="pipe",
                    floatfmt=".3f")


def part_boxes(features, generator):
    """(thetas N x P x 6, anchors N x P x 6 or None, at_bound P or None) for ``box_statistics``,
    from a model's ``cluster_features`` (``features``: "thetas" N x 6P, "anchors" and
    "box_params" where the generator has them) and its part generator."""
    thetas = features["thetas"]
    view = lambda x: None if x is None else x.reshape(len(thetas), -1, 6)
    at_bound = generator.at_bound(features) if hasattr(generator, "at_bound") else None
    return view(thetas), view(features.get("anchors")), at_bound


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

    def forward(self, feature_map, global_feature=None, images=None):
        parts = F.adaptive_avg_pool2d(feature_map, (self.num_parts, 1)).squeeze(3)
        thetas = stripe_thetas(self.num_parts).flatten().to(feature_map).expand(len(feature_map), -1)
        return {"parts": parts.transpose(1, 2), "thetas": thetas}


def partition_floors(num_parts, min_part_height, like):
    """The least height of each of the P + 2 cells of a partition: 0 for the two margins,
    ``min_part_height`` for each part."""
    floors = like.new_full((num_parts + 2,), min_part_height)
    floors[0] = floors[-1] = 0
    return floors


def partition_heights(logits, min_part_height):
    """B x (P + 2) logits -> the heights of the margin above the person, the P parts from top to
    bottom and the margin below, as fractions of the image height (B x (P + 2)): each cell's
    floor (``partition_floors``) plus its softmax share of the height the floors leave. They
    sum to 1, so the parts tile the extent between the margins and stay inside the image; no
    part can shrink below its floor or grow past 1 - (P - 1) ``min_part_height``."""
    floors = partition_floors(logits.shape[1] - 2, min_part_height, logits)
    return floors + (1 - floors.sum()) * F.softmax(logits, dim=1)


def partition_logits(heights, min_part_height, least_share=0.01):
    """Logits whose ``partition_heights`` are ``heights`` (B x (P + 2), summing to 1): the log of
    each cell's height beyond its floor, clamped to ``least_share`` of the image height, so that
    a prior never starts deep in the softmax's flat tail."""
    floors = partition_floors(heights.shape[1] - 2, min_part_height, heights)
    return torch.log((heights - floors).clamp(min=least_share))


def share_barrier(logits, target=None):
    """KL(uniform || shares) of a partition's cells (margins and parts), each share the cell's
    softmax share of the free height (``partition_heights``), averaged over images: 0 where
    every cell has an equal share, growing without bound as any share goes to 0. The
    partition's counterpart of ``saturation`` (``PISL.SCD.W_BOUND``): its gradient to a cell's
    own logit is share - 1 / cells, so unlike the softmax's g (1 - g) it does not vanish as a
    part reaches its floor or a margin closes. Measured on misaligned CUHK01 (seed 1), a barrier
    on the parts alone moved the squeeze to the margins (docs/pisl_cuhk01.md).

    The uniform shares are one fixed partition, the same for every image. ``target`` (logits,
    like ``logits``) replaces them by each image's own: KL(target shares || shares), 0 where the
    partition is the target's (e.g. the person prior's), with the gradient share - target share."""
    log_shares = F.log_softmax(logits, dim=1)
    if target is None:
        return -(log_shares + math.log(logits.shape[1])).mean()
    log_target = F.log_softmax(target, dim=1)
    return (log_target.exp() * (log_target - log_shares)).sum(1).mean()


def partition_bands(logits, min_part_height):
    """(top, bottom), B x P each: where each part of a partition (``partition_heights``) begins
    and ends, as fractions of the image height."""
    num_parts = logits.shape[1] - 2
    cuts = torch.cumsum(partition_heights(logits, min_part_height), dim=1)  # the bottom of each cell
    return cuts[:, :num_parts], cuts[:, 1:num_parts + 1]


def band_thetas(top, bottom):
    """Full-width bands [top, bottom] (B x P each, fractions of the image height) as B x 6P affine
    parameters: centre top + bottom - 1 and half-height bottom - top in [-1, 1] map units."""
    zeros = torch.zeros_like(top)
    return torch.stack([zeros + 1, zeros, zeros, zeros, bottom - top, top + bottom - 1], dim=2).flatten(1)


def band_weights(top, bottom, height):
    """B x P x H: each feature-map row's share of the average over a band [top, bottom] (fractions
    of the image height; B x P each): the row's overlap with the band over the band's height,
    each row a constant over its 1 / H of the image. Piecewise linear in top and bottom, so the
    part losses move the boundaries by what lies at them, even on a map of a few rows."""
    start = torch.arange(height, device=top.device, dtype=top.dtype) / height
    overlap = torch.minimum(bottom.unsqueeze(2), start + 1 / height) - torch.maximum(top.unsqueeze(2), start)
    return overlap.clamp(min=0) / (bottom - top).unsqueeze(2).clamp(min=1e-6)


def band_patches(feature_map, top, bottom):
    """The average of the feature map over each full-width band [top, bottom] (B x P each,
    fractions of the image height): B x P x C."""
    weights = band_weights(top, bottom, feature_map.shape[2]).to(feature_map.dtype)
    return torch.bmm(weights, feature_map.mean(3).transpose(1, 2))


class AffineBoxes(nn.Module):
    """Boxes as six affine parameters a part (the reference's theta), kept within ``limits`` of
    their anchors by ``bound_boxes``' tanh. ``prior`` "stripes": the image's P stripes;
    "person": the P stripes of the person's extent (``stripes_of_extent``). Trained on CUHK01 and
    CUHK03-NP, the part losses pushed these boxes to their limits in the first epoch, where the
    tanh passes almost no gradient (docs/pisl_cuhk01.md): ``PartitionBoxes`` is the default."""

    def __init__(self, num_parts, limits=(0.25, 0.1, 0.25, 0.1, 0.5, 0.5), prior="stripes"):
        super().__init__()
        self.num_parts, self.dim, self.prior_name = num_parts, 6 * num_parts, prior
        self.register_buffer("stripes", stripe_thetas(num_parts).flatten(), persistent=False)
        # No limits: the published recipe's boxes, each parameter clamped to the map's
        # coordinate range [-1, 1] and otherwise free.
        self.clamped = len(limits) == 0
        limits = torch.ones(self.dim) if self.clamped else box_limits(limits, num_parts)
        self.register_buffer("limits", limits, persistent=False)

    def prior(self, feature_map, person=None):
        """Each image's anchors, B x 6P; with the person prior, the stripes of ``person``
        ((top, extent), B each)."""
        if self.prior_name == "person":
            return stripes_of_extent(*person, self.num_parts)
        return self.stripes.expand(feature_map.shape[0], -1)

    def settle(self, params, prior):
        if self.clamped:
            return params.clamp(-1.0, 1.0)
        return bound_boxes(params, prior, self.limits)

    def thetas(self, params):
        return params

    def patches(self, feature_map, params):
        """The part features: a stripe-sized grid sampled in each box and averaged (``cut_patches``)."""
        return cut_patches(feature_map, params.view(-1, self.num_parts, 2, 3))

    def saturation(self, offsets, prior):
        if self.clamped:  # nothing to keep off: the clamp has no tail to saturate in
            return offsets.new_zeros(())
        return saturation(offsets, self.limits)  # the bound is on the offsets, whatever the prior

    def depth(self, offsets):
        return None if self.clamped else bound_depth(offsets, self.limits).mean(0)

    def at_bound(self, features):
        thetas = features["thetas"].view(len(features["thetas"]), self.num_parts, 6)
        if self.clamped:  # at the clamp: |theta| = 1
            return affine_at_bound(thetas, torch.zeros_like(thetas), self.limits)
        anchors = features.get("anchors")
        anchors = self.stripes.view(1, self.num_parts, 6).to(thetas) if anchors is None else anchors.view_as(thetas)
        return affine_at_bound(thetas, anchors, self.limits)


class PartitionBoxes(nn.Module):
    """Boxes as a partition of the image height (``partition_heights``): logits give each image a
    margin above the person, P parts that tile the person's extent and a margin below. Every box
    is inside the image, the parts are ordered and none can collapse or cover the whole image, by
    construction; there is no bound at which the gradient vanishes, only the softmax, whose slope
    g (1 - g) stays above 0.02 while each cell keeps 2-98 % of the free height.

    ``equal_parts`` False: P + 2 logits, each part its own height (at least ``min_part_height``).
    True: 3 logits (margin, extent, margin), the extent cut into P equal parts: the parts cannot
    take height from each other, only the extent can move and grow or shrink.
    ``prior`` "stripes": margins of ``stripe_margin``, equal parts; "person": margins and equal
    parts from each image's person extent (``DiffusionSTNParts.prior``)."""

    def __init__(self, num_parts, prior="stripes", min_part_height=0.1, stripe_margin=0.03, equal_parts=False,
                 barrier_target="uniform"):
        super().__init__()
        self.num_parts, self.prior_name, self.barrier_target = num_parts, prior, barrier_target
        self.cells = 1 if equal_parts else num_parts  # the learned heights between the margins
        self.dim, self.floor = self.cells + 2, min_part_height * num_parts / self.cells
        cell = (1 - 2 * stripe_margin) / self.cells
        heights = torch.tensor([[stripe_margin] + [cell] * self.cells + [stripe_margin]])
        self.register_buffer("stripes", partition_logits(heights, self.floor)[0], persistent=False)

    def prior(self, feature_map, person=None):
        """Each image's prior logits, B x dim; with the person prior, from ``person`` ((top,
        extent), B each)."""
        if self.prior_name != "person":
            return self.stripes.expand(feature_map.shape[0], -1)
        top, extent = person
        cell = (extent / self.cells).unsqueeze(1).expand(-1, self.cells)
        heights = torch.cat([top.unsqueeze(1), cell, (1 - top - extent).unsqueeze(1)], dim=1)
        return partition_logits(heights, self.floor)

    def settle(self, params, prior):
        return params  # nothing to bound: every logit vector is a valid partition

    def bands(self, params):
        """(top, bottom) of each part, B x P each, fractions of the image height."""
        top, bottom = partition_bands(params, self.floor)
        if self.cells == 1:  # the extent cut into P equal parts
            steps = torch.arange(self.num_parts + 1, device=params.device, dtype=top.dtype) / self.num_parts
            cuts = top + (bottom - top) * steps
            top, bottom = cuts[:, :-1], cuts[:, 1:]
        return top, bottom

    def thetas(self, params):
        return band_thetas(*self.bands(params))

    def patches(self, feature_map, params):
        """The part features: the exact average of the map over each part's band (``band_patches``);
        a stripe-sized grid of samples would see a map of 4 rows at one row per part, whatever
        the part's height."""
        return band_patches(feature_map, *self.bands(params))

    def saturation(self, offsets, prior):
        """``share_barrier`` of the parameters (prior + offsets). Computed apart from theta and
        x0_hat on purpose: routing its gradient through them changes the order in which float
        gradients add up, and the recorded runs' clusters with it. ``barrier_target`` "prior":
        toward each image's prior partition instead of the uniform shares."""
        return share_barrier(prior + offsets, prior if self.barrier_target == "prior" else None)

    def depth(self, offsets):
        return None

    def at_bound(self, features, low=0.02):
        """% of each part's softmax shares below ``low`` or above 1 - ``low``, over images (P):
        its own share (the first and last part also their margin's), or with equal parts the
        three shares that place every part."""
        shares = F.softmax(features["box_params"].float(), dim=1)
        flat = (shares < low) | (shares > 1 - low)
        if self.cells == 1:
            return (100 * flat.float().mean()).expand(self.num_parts).clone()
        per_part = [flat[:, p + 1:p + 2] for p in range(self.num_parts)]
        per_part[0] = torch.cat([flat[:, :1], per_part[0]], 1)
        per_part[-1] = torch.cat([per_part[-1], flat[:, -1:]], 1)
        return torch.stack([100 * x.float().mean() for x in per_part])


class Localisation(nn.Module):
    """STN localisation net: conv3x3 (no padding) -> BN -> ReLU -> max-pool 3/2 -> GAP -> FC
    512 -> ReLU -> FC, the last FC starting at weight 0 with ``start`` (the box parameters of
    the stripes) as bias."""

    def __init__(self, in_channels, start, channels=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels, 512), nn.ReLU(inplace=True), nn.Linear(512, len(start)),
        )
        nn.init.kaiming_normal_(self.features[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.features[-1].weight)
        with torch.no_grad():
            self.features[-1].bias.copy_(start)

    def forward(self, feature_map):
        if min(feature_map.shape[2:]) < 3:
            # Too small for the unpadded 3x3 conv (e.g. 4 x 2 from small inputs): zero-pad by one
            # cell, i.e. a padded conv. Larger maps keep the reference's valid conv, which on
            # ResNet-50's 24 x 8 map also costs 30 % less than a padded one.
            feature_map = F.pad(feature_map, (1, 1, 1, 1))
        return self.features(feature_map)  # B x the box parameters


@PART_GENERATOR_REGISTRY.register(name="diffusion_stn")
class DiffusionSTNParts(nn.Module):
    """The Spatial Diffusion Model: an STN predicts the box parameters; a diffusion model over
    them, conditioned on the detached L2-normalised global feature, learns to denoise.

    Training: theta_stn = STN(X); x_t = q(theta_stn, t, eps) with t drawn per sample;
    x0_hat = denoised x_t; the part patches are cut with x0_hat, so the part losses
    train the denoiser (semantic control). Eval: theta = DDIM sample from one seeded x_T.

    ``boxes`` says what the parameters are: "partition" (the default: P + 2
    logits of a partition of the image height, ``PartitionBoxes``) or "affine" (six affine
    parameters a part, bounded offsets from anchors, ``AffineBoxes``). ``anchors`` is their prior,
    where they start: "stripes" (the same for every image) or "person" (the person's extent in
    each image, found by ``person_cue``: "features", the feature map's activation
    (``person_extent``), or "image", the rows that differ from their own border colour
    (``image_person_extent``; the generator is then called with the input images)).

    The denoiser predicts x0 as the prior plus the MLP's correction (zero at init), and the
    noise estimate eps_hat is the noise that x0_hat implies: an untrained model samples and
    trains on the prior, i.e. starts as PPLR (stripe prior). Predicting x0 rather than the noise keeps the
    patches well-conditioned at every t: recovering x0 from a noise estimate divides by
    sqrt(abar_t), which reaches 5e-5 at t = 999 and turns any error into a patch off the map.
    With the stripe prior the diffusion runs on the parameters themselves, as the reference's;
    with the person prior, which the denoiser does not see, on the offsets from it (``origin``).

    ``condition`` "global+rows" gives the denoiser the feature map's row profile
    (``row_profile``) beside the global feature: where along the height the person is, in a
    form it need not learn to read from a pooled feature. "global+rows+extent" also gives it the
    person's extent that the person prior was cut from (top and height, fractions of the image
    height): with the image cue nothing else it sees says where the prior already put the boxes.

    ``stn_patch_share`` > 0 cuts that share of the training samples' patches with theta_stn
    instead of x0_hat, so that the part losses also reach the STN, the one module that sees
    the feature map.
    """

    def __init__(self, in_channels, num_parts, stn_channels=4096, timesteps=1000, cosine_s=0.008,
                 sample_steps=50, sample_seed=0, limits=(0.25, 0.1, 0.25, 0.1, 0.5, 0.5), stn_patch_share=0.0,
                 cond_scale=1.0, anchors="stripes", person_quantile=0.02, boxes="affine", min_part_height=0.1,
                 condition="global", row_bins=8, equal_parts=False, person_cue="features", barrier_target="uniform"):
        super().__init__()
        self.num_parts, self.sample_steps, self.stn_patch_share = num_parts, sample_steps, stn_patch_share
        # What the condition carries, read once from its name (checked by check_pisl_config).
        self.with_rows, self.with_extent, self.row_bins = "+rows" in condition, condition.endswith("+extent"), row_bins
        self.person_cue, self.person_quantile = person_cue, person_quantile
        if boxes == "partition":
            self.boxes = PartitionBoxes(num_parts, anchors, min_part_height, equal_parts=equal_parts,
                                        barrier_target=barrier_target)
        else:
            self.boxes = AffineBoxes(num_parts, limits, anchors)
        self.stn = Localisation(in_channels, self.boxes.stripes, stn_channels)
        self.diffusion = GaussianDiffusion(timesteps, cosine_s)
        cond_dim = in_channels + (row_bins if self.with_rows else 0) + (2 if self.with_extent else 0)
        self.denoiser = Denoiser(self.boxes.dim, cond_dim, cond_scale=cond_scale)
        # The sampler's start, drawn once on the CPU: the same on every device, and a constant
        # (not a random op) in an exported graph.
        x_T = torch.randn(1, self.boxes.dim, generator=torch.Generator().manual_seed(sample_seed))
        self.register_buffer("x_T", x_T, persistent=False)

    @classmethod
    def from_config(cls, cfg, in_channels):
        d = cfg.PISL.DIFFUSION
        return cls(in_channels, cfg.PISL.NUM_PARTS, stn_channels=cfg.PISL.STN.CHANNELS, timesteps=d.TIMESTEPS,
                   cosine_s=d.COSINE_S, sample_steps=d.SAMPLE_STEPS, sample_seed=d.SAMPLE_SEED, limits=d.BOX_LIMITS,
                   stn_patch_share=d.STN_PATCH_SHARE, cond_scale=d.COND_SCALE, anchors=d.ANCHORS,
                   person_quantile=d.PERSON_QUANTILE, boxes=d.BOXES, min_part_height=d.MIN_PART_HEIGHT,
                   condition=d.CONDITION, row_bins=d.ROW_BINS, equal_parts=d.EQUAL_PARTS, person_cue=d.PERSON_CUE,
                   barrier_target=cfg.PISL.SCD.BARRIER_TARGET)

    @property
    def limits(self):
        """The affine boxes' tanh bounds (6P), None for a partition or clamped affine boxes."""
        return None if getattr(self.boxes, "clamped", True) else self.boxes.limits

    def at_bound(self, features):
        return self.boxes.at_bound(features)

    def conditions(self, feature_map, global_feature, person=None):
        """What the denoiser is conditioned on: the unit global feature, with "+rows" the row
        profile, with "+extent" the person's (top, extent) (``person``). Detached: the denoiser
        reads them, it does not train the backbone."""
        cond = F.normalize(global_feature.detach(), dim=1)
        if self.with_rows:
            cond = torch.cat([cond, row_profile(feature_map, self.row_bins).to(cond)], dim=1)
        if self.with_extent:
            cond = torch.cat([cond, torch.stack(person, dim=1).to(cond)], dim=1)
        return cond

    def person(self, feature_map, images):
        """(top, extent), B each: where ``person_cue`` finds the person; None with the stripe prior."""
        if self.boxes.prior_name != "person":
            return None
        if self.person_cue == "features":
            return person_extent(feature_map, self.person_quantile)
        if images is None:
            raise ValueError("PISL.DIFFUSION.PERSON_CUE 'image' finds the person in the input images: "
                             "call the part generator with them (generator(feature_map, global_feature, images))")
        return image_person_extent(images, self.person_quantile)

    def cond_and_prior(self, feature_map, global_feature, images):
        """The denoiser's condition and each image's prior parameters (``boxes.prior``, from the
        person's extent with the person prior)."""
        person = self.person(feature_map, images)
        return self.conditions(feature_map, global_feature, person), self.boxes.prior(feature_map, person)

    def origin(self, prior):
        """What the diffusion's x0 is measured from: 0 with the stripe prior (the parameters
        themselves), the prior with the person prior (the denoiser cannot recover a prior it
        does not see)."""
        return prior if self.boxes.prior_name == "person" else torch.zeros_like(prior)

    def predict_start(self, correction, prior):
        """x0_hat: the prior plus the denoiser's correction, settled (bounded, for affine boxes)."""
        return self.boxes.settle(prior + correction, prior)

    def stn_params(self, feature_map, prior):
        """The STN's box parameters and their unsettled offsets from the prior (the STN starts
        at the stripes, so its output less the stripes is its offset)."""
        offset = self.stn(feature_map) - self.boxes.stripes
        return self.boxes.settle(prior + offset, prior), offset

    def _patches(self, feature_map, params):
        return self.boxes.patches(feature_map, params)

    def _eval_outputs(self, feature_map, params, prior):
        out = {"parts": self._patches(feature_map, params), "thetas": self.boxes.thetas(params)}
        if isinstance(self.boxes, PartitionBoxes):
            out["box_params"] = params
        if self.boxes.prior_name == "person":  # the stripes are implied
            out["anchors"] = self.boxes.thetas(prior)
        return out

    def forward(self, feature_map, global_feature, images=None):
        """``images``: the input batch (B x 3 x H x W) the map was computed from; needed only
        with the image person cue."""
        cond, prior = self.cond_and_prior(feature_map, global_feature, images)
        if not self.training:
            return self._eval_outputs(feature_map, self.sample(cond, prior), prior)
        theta, stn_offset = self.stn_params(feature_map, prior)
        origin = self.origin(prior)
        t = torch.randint(0, self.diffusion.timesteps, (theta.shape[0],), device=theta.device)
        noise = torch.randn_like(theta)
        x_t = self.diffusion.q_sample(theta - origin, t, noise)
        correction = self.denoiser.conditioned(cond)(x_t, t)
        x0_hat = self.predict_start(correction, prior)
        eps_hat = self.diffusion.predict_eps(x_t, t, x0_hat - origin)
        patch_params = x0_hat
        if self.stn_patch_share > 0:  # no random draw when off: runs without it stay as they were
            from_stn = torch.rand(theta.shape[0], 1, device=theta.device) < self.stn_patch_share
            patch_params = torch.where(from_stn, theta, x0_hat)
        return {"parts": self._patches(feature_map, patch_params), "theta": theta, "x0_hat": x0_hat,
                "eps_hat": eps_hat, "eps": noise, "snr": self.diffusion.snr(t),
                "saturation": self.boxes.saturation(stn_offset, prior) + self.boxes.saturation(correction, prior),
                "overlap": part_overlap(self.boxes.thetas(patch_params).view(-1, self.num_parts, 6))}

    @torch.no_grad()
    def box_sources(self, feature_map, global_feature, images=None, timesteps=(0, 500, 999), seed=0):
        """Diagnostics (``projects/PISL/tools/box_sources.py``): where a trained model's boxes come from.

        Returns {source: (thetas N x 6P, depth or None)} for the prior, the STN's boxes,
        the DDIM sample, and the x0_hat that the denoiser recovers from the STN's boxes noised
        to each t in ``timesteps`` (the training path). ``depth`` is the mean ``bound_depth``
        over images, per parameter (affine boxes; None for a partition, which has no bound).
        """
        cond, prior = self.cond_and_prior(feature_map, global_feature, images)
        origin = self.origin(prior)
        theta, stn_offset = self.stn_params(feature_map, prior)
        thetas = self.boxes.thetas
        sources = {"prior": (thetas(prior), None), "STN theta": (thetas(theta), self.boxes.depth(stn_offset)),
                   "DDIM sample": (thetas(self.sample(cond, prior)), None)}
        denoise = self.denoiser.conditioned(cond)
        generator = torch.Generator().manual_seed(seed)
        for step in timesteps:
            t = torch.full((len(theta),), step, dtype=torch.long, device=theta.device)
            noise = torch.randn(theta.shape, generator=generator).to(theta)
            correction = denoise(self.diffusion.q_sample(theta - origin, t, noise), t)
            sources[f"x0_hat t={step}"] = (thetas(self.predict_start(correction, prior)), self.boxes.depth(correction))
        return sources

    def sample(self, cond, prior):
        """Deterministic DDIM sample of the box parameters for each conditioning row and its prior.
        Every row starts from the same seeded noise, so an image's parts depend on its own
        conditions and prior only, not on the rest of its batch, its place in it or the batch size."""
        denoise = self.denoiser.conditioned(cond)
        origin = self.origin(prior)
        x_T = self.x_T.expand(cond.shape[0], -1)
        x0_fn = lambda x, t: self.predict_start(denoise(x, t), prior) - origin
        return self.diffusion.ddim_sample(x0_fn, x_T, self.sample_steps) + origin

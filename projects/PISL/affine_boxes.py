"""Affine part boxes: each part a 2 x 3 affine matrix theta on the feature map (the paper's
boxes), its geometry, the patches it cuts and its optional smooth bound around an anchor."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .person_cues import stripes_of_extent


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


def affine_at_bound(thetas, anchors, limits):
    """% of each part's six affine parameters within 2 % of their bound (P), for boxes that are
    anchors plus offsets bounded by ``limits`` (6P, ``box_limits``)."""
    return 100 * ((thetas - anchors).abs() >= 0.98 * limits.view(thetas.shape[-2:]).to(thetas)).float().mean((0, 2))


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
    slope is 1 on the anchors, so an untrained model is unchanged; far out it is nearly 0.
    Why a bound: with only a wide clamp, the part losses can grow every box to the whole map,
    and parts that all see the whole map add nothing to the global feature
    (docs/pisl_parts.md)."""
    return anchors + limits * torch.tanh((thetas - anchors) / limits)


def bound_depth(offsets, limits):
    """How deep in ``bound_boxes``' tanh unbounded offsets from the anchors sit: |offset / limit|
    (the tanh's slope there is 1 - tanh^2 of it)."""
    return (offsets / limits).abs()


def saturation(offsets, limits):
    """How far past one limit the unbounded offsets from the anchors reach, as the mean over
    samples and parameters of relu(|offset / limit| - 1)^2: 0 while every parameter stays within
    one limit, where ``bound_boxes``' slope is at least 1 - tanh(1)^2. Penalised
    (``PISL.SCD.W_BOUND``), it keeps the part losses' gradient reaching the denoiser
    (docs/pisl_parts.md)."""
    return F.relu(bound_depth(offsets, limits) - 1).pow(2).mean()


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




class AffineBoxes(nn.Module):
    """Boxes as six affine parameters a part (the reference's theta), kept within ``limits`` of
    their anchors by ``bound_boxes``' tanh. ``prior`` "stripes": the image's P stripes;
    "person": the P stripes of the person's extent (``stripes_of_extent``). Without limits
    (the published recipe), each parameter is clamped to the map's range [-1, 1]."""

    def __init__(self, num_parts, *, limits=(), prior="stripes"):
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

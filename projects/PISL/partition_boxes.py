"""Partition part boxes: a margin above the person, P parts that tile its extent and a margin
below, as P + 2 logits; the bands they give, their patches and the share barrier."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F



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
    part reaches its floor or a margin closes. It covers the margins too: a barrier on the parts
    alone moves the squeeze to the margins.

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


class PartitionBoxes(nn.Module):
    """Boxes as a partition of the image height (``partition_heights``): logits give each image a
    margin above the person, P parts that tile the person's extent and a margin below. Every box
    is inside the image, the parts are ordered and none can collapse or cover the whole image, by
    construction; there is no bound at which the gradient vanishes, only the softmax, whose slope
    g (1 - g) stays above 0.02 while each cell keeps 2-98 % of the free height.

    P + 2 logits, each part its own height (at least ``min_part_height``). ``prior`` "stripes":
    margins of ``stripe_margin``, equal parts; "person": margins and equal
    parts from each image's person extent (``DiffusionSTNParts.prior``)."""

    def __init__(self, num_parts, prior="stripes", *, min_part_height=0.1, stripe_margin=0.03, barrier_target="uniform"):
        super().__init__()
        self.num_parts, self.prior_name, self.barrier_target = num_parts, prior, barrier_target
        self.dim, self.floor = num_parts + 2, min_part_height
        cell = (1 - 2 * stripe_margin) / num_parts
        heights = torch.tensor([[stripe_margin] + [cell] * num_parts + [stripe_margin]])
        self.register_buffer("stripes", partition_logits(heights, self.floor)[0], persistent=False)

    def prior(self, feature_map, person=None):
        """Each image's prior logits, B x dim; with the person prior, from ``person`` ((top,
        extent), B each)."""
        if self.prior_name != "person":
            return self.stripes.expand(feature_map.shape[0], -1)
        top, extent = person
        cell = (extent / self.num_parts).unsqueeze(1).expand(-1, self.num_parts)
        heights = torch.cat([top.unsqueeze(1), cell, (1 - top - extent).unsqueeze(1)], dim=1)
        return partition_logits(heights, self.floor)

    def settle(self, params, prior):
        return params  # nothing to bound: every logit vector is a valid partition

    def bands(self, params):
        """(top, bottom) of each part, B x P each, fractions of the image height."""
        return partition_bands(params, self.floor)

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
        its own share (the first and last part also their margin's)."""
        shares = F.softmax(features["box_params"].float(), dim=1)
        flat = (shares < low) | (shares > 1 - low)
        per_part = [flat[:, p + 1:p + 2] for p in range(self.num_parts)]
        per_part[0] = torch.cat([flat[:, :1], per_part[0]], 1)
        per_part[-1] = torch.cat([per_part[-1], flat[:, -1:]], 1)
        return torch.stack([100 * x.float().mean() for x in per_part])

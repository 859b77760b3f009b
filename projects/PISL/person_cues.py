"""Person cues: where the person is along the image height, read from a feature map's activation
profile or from the image itself, and the stripes of that extent."""
import torch
import torch.nn.functional as F


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
    How the boxes started from it follow the person: docs/pisl_parts.md.
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
    do not locate people, this cue does from the first iteration.
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

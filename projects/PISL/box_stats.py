"""Box statistics: how a model's part boxes sit, spread and follow the person (the "Part boxes"
tables of the logs and the diagnostics), and the picture of the boxes on images."""
import numpy as np
import torch
from tabulate import tabulate

from pisl import visualization as vis

from .affine_boxes import neighbour_iou, stripe_thetas


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


def affine_box_corners(theta):
    """The four corners (x, y in [-1, 1] map coordinates) that an affine sampling grid
    ``theta`` (2 x 3, as F.affine_grid) covers: the patch's corners (+-1, +-1) mapped by it."""
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]], dtype=float)
    return corners @ np.asarray(theta, dtype=float).reshape(2, 3).T


def part_box_picture(images, thetas, num_images=6, title=None, per_row=8, anchors=None):
    """Left: ``num_images`` images with their P part boxes (one colour per part), ``per_row`` a
    row. Right: every image's boxes over one frame of the image's shape (the spread of the
    boxes over the set), with the stripes dashed; the legend sits under it, off the boxes.
    ``thetas``: N x P x 6. ``anchors`` (N x P x 6, optional): the boxes the parts are offsets
    from, drawn dotted on each image, their mean dashed on the right instead of the stripes.
    Boxes that reach beyond the image are drawn whole: the axes grow to hold them. ``images``:
    PIL images as the model saw them (re-framed where ``INPUT.MISALIGN`` is on)."""
    plt = vis.pyplot()
    thetas = np.asarray(thetas).reshape(len(images), -1, 6)
    anchors = None if anchors is None else np.asarray(anchors).reshape(thetas.shape)
    num_parts, shown = thetas.shape[1], min(num_images, len(images))
    cols, rows = min(per_row, shown), -(-shown // per_row)
    colours = plt.get_cmap("tab10").colors
    corners = np.stack([affine_box_corners(t) for t in thetas.reshape(-1, 6)])
    reach = max(1.1, 1.05 * np.abs(corners).max())  # in [-1, 1] map units
    fig = plt.figure(figsize=(1.3 * cols + 3.2, 3.0 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [2.2])
    for i in range(shown):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        image = images[i]
        vis.show_image(ax, image)
        w, h = image.size
        to_pixels = lambda xy: ((xy[:, 0] + 1) * w / 2 - 0.5, (xy[:, 1] + 1) * h / 2 - 0.5)
        for p in range(num_parts):
            ax.plot(*to_pixels(affine_box_corners(thetas[i, p])), color=colours[p % 10], lw=1.5)
            if anchors is not None:
                ax.plot(*to_pixels(affine_box_corners(anchors[i, p])), color=colours[p % 10], lw=1, ls=":")
        ax.set(xlim=((1 - reach) * w / 2, (1 + reach) * w / 2), ylim=((1 + reach) * h / 2, (1 - reach) * h / 2))
    ax = fig.add_subplot(grid[:, cols])
    for p in range(num_parts):
        for theta in thetas[:, p]:
            xy = affine_box_corners(theta)
            ax.plot(xy[:, 0], xy[:, 1], color=colours[p % 10], alpha=max(0.05, 1.0 / len(images)), lw=1)
        reference = np.array([1, 0, 0, 0, 1 / num_parts, (2 * p + 1) / num_parts - 1]) if anchors is None \
            else anchors[:, p].mean(0)
        xy = affine_box_corners(reference)
        what = "its stripe" if anchors is None else "its mean anchor; dotted on the images: their anchors"
        ax.plot(xy[:, 0], xy[:, 1], color=colours[p % 10], ls="--", lw=1.5, label=f"part {p} (dashed: {what})")
    h, w = images[0].size[::-1]
    ax.set(xlim=(-reach, reach), ylim=(reach, -reach), aspect=h / w, title=f"all {len(images)} images' boxes")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, color="k", lw=0.8))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=1, frameon=False)
    fig.suptitle(f"Part boxes{': ' + title if title else ''}", fontsize=10)
    return fig

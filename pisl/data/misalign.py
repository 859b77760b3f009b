"""Misaligned crops: each image re-framed the way a person detector frames people.

Hand-cut crops (CUHK01, CUHK03's labelled boxes) put every person at the same height and size,
so fixed horizontal stripes already fall on head, torso and legs. Detector boxes do not: people
stand higher or lower in them, larger or smaller, off-centre. ``Misalignment`` re-frames each
image by a vertical shift, a scale and a horizontal offset drawn from a generator seeded by the
image's file name: the same image is framed the same way in training, clustering and
evaluation, in every process and every run, and ``draw`` tells the diagnostics what was applied.
"""
import os
import zlib

import numpy as np
from PIL import Image, ImageStat


def misalign_image(img, shift, scale, offset, fill):
    """``img`` with its content scaled by ``scale`` about the image centre, then moved down by
    ``shift`` image heights and right by ``offset`` image widths; uncovered pixels get ``fill``
    (an RGB triple). A point at relative height y (0 top, 1 bottom) ends at
    0.5 + scale (y - 0.5) + shift."""
    w, h = img.size
    cx, cy = w / 2, h / 2
    inverse = 1 / scale  # PIL maps each output pixel back to the input pixel it shows
    matrix = (inverse, 0, cx - (cx + offset * w) * inverse, 0, inverse, cy - (cy + shift * h) * inverse)
    return img.transform((w, h), Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=fill)


def misaligned_heights(heights, shift, scale):
    """Where points at relative ``heights`` of the aligned crop (0 top, 1 bottom) land once
    ``misalign_image`` has scaled and shifted it, clipped to the crop: 0.5 + scale (y - 0.5) +
    shift. Array-like; ``shift`` and ``scale`` broadcast against ``heights`` (e.g. N x 1 against
    N x K)."""
    return np.clip(0.5 + np.asarray(scale) * (np.asarray(heights) - 0.5) + np.asarray(shift), 0.0, 1.0)


class Misalignment:
    """``INPUT.MISALIGN``: vertical shift uniform in [-shift, shift] image heights, scale uniform in
    ``scale``, horizontal offset uniform in [-offset, offset] image widths. ``fill``: "mean" (each
    image's own mean colour) or "pixel_mean" (``MODEL.PIXEL_MEAN``, 0 after normalisation)."""

    def __init__(self, shift=0.15, scale=(0.8, 1.05), offset=0.1, fill="mean", seed=0, pixel_mean=(0.485, 0.456, 0.406)):
        self.shift, self.scale, self.offset, self.fill, self.seed = shift, tuple(scale), offset, fill, seed
        self.pixel_mean = tuple(int(round(255 * v)) for v in pixel_mean)

    @classmethod
    def from_config(cls, cfg):
        """The config's misalignment, or None where ``INPUT.MISALIGN.ENABLED`` is off."""
        m = cfg.INPUT.MISALIGN
        if not m.ENABLED:
            return None
        return cls(m.SHIFT, m.SCALE, m.OFFSET, m.FILL, m.SEED, cfg.MODEL.PIXEL_MEAN)

    def draw(self, path):
        """(shift, scale, offset) of the image at ``path``, from its file name alone (not its
        folder: the same file under another root is framed the same way)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(os.path.basename(path).encode())])
        return rng.uniform(-self.shift, self.shift), rng.uniform(*self.scale), rng.uniform(-self.offset, self.offset)

    def applied(self, paths):
        """N x 3 float array: what ``draw`` gives for each path."""
        return np.array([self.draw(p) for p in paths], dtype=np.float64).reshape(-1, 3)

    def frame(self, img, applied):
        """``img`` re-framed by ``applied`` = (shift, scale, offset), as ``draw`` gives them."""
        fill = tuple(int(round(v)) for v in ImageStat.Stat(img).mean) if self.fill == "mean" else self.pixel_mean
        return misalign_image(img, *applied, fill)

    def __call__(self, img, path):
        return self.frame(img, self.draw(path))


def misalignment_problems(cfg):
    """INPUT.MISALIGN's value checks (run by the pre-run check)."""
    m, problems = cfg.INPUT.MISALIGN, []
    if not 0 <= m.SHIFT < 0.5 or not 0 <= m.OFFSET < 0.5:
        problems.append(f"INPUT.MISALIGN.SHIFT ({m.SHIFT}) and OFFSET ({m.OFFSET}) are fractions of the image: "
                        "each must be in [0, 0.5)")
    if len(m.SCALE) != 2 or not 0 < m.SCALE[0] <= m.SCALE[1]:
        problems.append(f"INPUT.MISALIGN.SCALE is {list(m.SCALE)}: give [low, high] with 0 < low <= high (e.g. [0.8, 1.05])")
    if m.FILL not in ("mean", "pixel_mean"):
        problems.append(f"INPUT.MISALIGN.FILL is '{m.FILL}': use mean or pixel_mean")
    return problems

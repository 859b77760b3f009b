"""A procedurally drawn person re-ID dataset that needs no download.

Identity = clothing colours, clothing pattern, hair, shoes, bag and hat.
Camera   = background colour and texture, light (brightness and colour cast), person scale,
           blur and occlusion.
Images are drawn deterministically from a seed and written once, in the Market-1501 layout,
under ``<DATASETS.ROOT>/synthetic/<parameters>/``. Identities share a small palette and every
camera tints and degrades its view, so an untrained network matches poorly across cameras.
"""
import json
import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ...utils import comm
from ...utils.paths import folder_creation_problem
from .bases import DATASET_REGISTRY
from .market_style import MarketLayoutDataset

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 64, 128
# Few, partly similar colours, so that identities differ by combinations, not by one colour.
PALETTE = np.array(
    [[200, 30, 30], [30, 60, 180], [40, 140, 60], [230, 200, 40], [240, 240, 240], [30, 30, 30],
     [120, 70, 30], [130, 130, 140], [200, 100, 160], [60, 170, 190], [240, 140, 40], [90, 40, 120]],
    dtype=np.float64,
)
PATTERNS = ("solid", "hstripes", "vstripes", "checks")


def _colour(rng, jitter=18):
    return np.clip(PALETTE[rng.integers(len(PALETTE))] + rng.normal(0, jitter, 3), 0, 255)


def sample_identity(rng):
    """The fixed appearance of one person."""
    return {
        "top": _colour(rng), "top2": _colour(rng), "pattern": PATTERNS[rng.integers(len(PATTERNS))],
        "bottom": _colour(rng), "shoes": _colour(rng), "hair": _colour(rng),
        "skin": np.array([224.0, 172.0, 140.0]) + rng.normal(0, 20, 3),
        "bag": rng.integers(3), "bag_colour": _colour(rng), "hat": rng.random() < 0.3, "hat_colour": _colour(rng),
        "width": rng.uniform(0.7, 1.0), "leg_ratio": rng.uniform(0.42, 0.52),
    }


def sample_camera(rng):
    """The fixed viewing conditions of one camera."""
    return {
        "bg": _colour(rng, 40), "bg2": _colour(rng, 40), "texture": rng.integers(3),
        "gain": rng.uniform(0.6, 1.3), "cast": rng.uniform(0.7, 1.3, 3), "scale": rng.uniform(0.7, 0.95),
        "blur": rng.uniform(0.0, 1.5), "occlusion": rng.uniform(0.0, 0.5),
    }


def _fill_pattern(draw, box, ident, shade):
    x0, y0, x1, y1 = box
    c1 = tuple(int(v) for v in np.clip(ident["top"] * shade, 0, 255))
    c2 = tuple(int(v) for v in np.clip(ident["top2"] * shade, 0, 255))
    draw.rectangle(box, fill=c1)
    step = 5
    if ident["pattern"] == "hstripes":
        for y in range(int(y0), int(y1), 2 * step):
            draw.rectangle([x0, y, x1, min(y + step - 1, y1)], fill=c2)
    elif ident["pattern"] == "vstripes":
        for x in range(int(x0), int(x1), 2 * step):
            draw.rectangle([x, y0, min(x + step - 1, x1), y1], fill=c2)
    elif ident["pattern"] == "checks":
        for y in range(int(y0), int(y1), step):
            for x in range(int(x0) + (((y - int(y0)) // step) % 2) * step, int(x1), 2 * step):
                draw.rectangle([x, y, min(x + step - 1, x1), min(y + step - 1, y1)], fill=c2)


def draw_person(ident, cam, rng):
    """One image of ``ident`` seen by ``cam``, with per-image pose and position noise."""
    img = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(v) for v in cam["bg"]))
    draw = ImageDraw.Draw(img)
    if cam["texture"] == 1:  # horizontal floor/wall split
        draw.rectangle([0, HEIGHT * rng.uniform(0.55, 0.8), WIDTH, HEIGHT], fill=tuple(int(v) for v in cam["bg2"]))
    elif cam["texture"] == 2:  # clutter
        for _ in range(6):
            x, y = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
            draw.ellipse([x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 20)], fill=tuple(int(v) for v in _colour(rng, 50)))
    scale = cam["scale"] * rng.uniform(0.92, 1.05)
    h = HEIGHT * scale
    w = WIDTH * 0.55 * ident["width"] * scale / 0.85
    cx = WIDTH / 2 + rng.normal(0, 3)
    top = (HEIGHT - h) / 2 + rng.normal(0, 3)
    shade = rng.uniform(0.85, 1.1)
    head_h = h * 0.14
    torso_h = h * (1 - ident["leg_ratio"]) - head_h
    leg_top = top + head_h + torso_h
    leg_h = h * ident["leg_ratio"]

    def rgb(c):
        return tuple(int(v) for v in np.clip(np.asarray(c) * shade, 0, 255))

    # legs (two, with a gap) and shoes
    gap = w * 0.08
    for sign in (-1, 1):
        lx0 = cx + (0 if sign > 0 else -w / 2) + sign * gap / 2 * (1 if sign > 0 else 0)
        lx1 = lx0 + w / 2 - gap / 2
        swing = rng.normal(0, 2)
        draw.polygon([(lx0, leg_top), (lx1, leg_top), (lx1 + swing, leg_top + leg_h * 0.9), (lx0 + swing, leg_top + leg_h * 0.9)],
                     fill=rgb(ident["bottom"]))
        draw.rectangle([lx0 + swing, leg_top + leg_h * 0.9, lx1 + swing + 2, leg_top + leg_h], fill=rgb(ident["shoes"]))
    # torso with arms
    _fill_pattern(draw, [cx - w / 2, top + head_h, cx + w / 2, leg_top], ident, shade)
    arm_w = w * 0.18
    for x in (cx - w / 2 - arm_w, cx + w / 2):
        draw.rectangle([x, top + head_h + 2, x + arm_w, leg_top - torso_h * 0.1], fill=rgb(ident["top"]))
    # head, hair, hat
    hw = w * 0.45
    draw.ellipse([cx - hw / 2, top, cx + hw / 2, top + head_h], fill=rgb(ident["skin"]))
    draw.rectangle([cx - hw / 2, top, cx + hw / 2, top + head_h * 0.35], fill=rgb(ident["hair"]))
    if ident["hat"]:
        draw.rectangle([cx - hw / 2 - 2, top - 2, cx + hw / 2 + 2, top + head_h * 0.3], fill=rgb(ident["hat_colour"]))
    # bag on the left or right side
    if ident["bag"]:
        side = -1 if ident["bag"] == 1 else 1
        bx = cx + side * (w / 2 + arm_w * 0.5)
        draw.rectangle([bx - w * 0.2, leg_top - torso_h * 0.4, bx + w * 0.2, leg_top + torso_h * 0.1],
                       fill=rgb(ident["bag_colour"]))
    # occluder entering from the bottom
    if rng.random() < cam["occlusion"]:
        oy = HEIGHT * rng.uniform(0.7, 0.9)
        draw.rectangle([0, oy, WIDTH, HEIGHT], fill=tuple(int(v) for v in _colour(rng, 40)))
    if cam["blur"] > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(cam["blur"] * rng.uniform(0.7, 1.3)))
    pixels = np.asarray(img, dtype=np.float64) * cam["gain"] * cam["cast"]
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate(folder, seed, num_train_ids, num_test_ids, num_cameras, images_per_camera):
    """Write the dataset into ``folder`` (Market layout). Deterministic in all its arguments."""
    rng = np.random.default_rng(seed)
    cameras = [sample_camera(rng) for _ in range(num_cameras)]
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(os.path.join(folder, sub))
    for pid in range(1, num_train_ids + num_test_ids + 1):
        ident = sample_identity(rng)
        is_train = pid <= num_train_ids
        for cam_id, cam in enumerate(cameras, start=1):
            for k in range(images_per_camera):
                img = draw_person(ident, cam, rng)
                if is_train:
                    sub = "bounding_box_train"
                else:  # the first image of each camera is that camera's query
                    sub = "query" if k == 0 else "bounding_box_test"
                img.save(os.path.join(folder, sub, f"{pid:04d}_c{cam_id}_{k:04d}.jpg"), quality=95)


@DATASET_REGISTRY.register()
class Synthetic(MarketLayoutDataset):
    layout_help = "  generated automatically on first use"

    def __init__(self, root, seed=0, num_train_ids=60, num_test_ids=40, num_cameras=3, images_per_camera=3):
        params = dict(seed=seed, num_train_ids=num_train_ids, num_test_ids=num_test_ids,
                      num_cameras=num_cameras, images_per_camera=images_per_camera)
        if images_per_camera < 2 or num_cameras < 2:
            raise ValueError("Synthetic needs at least 2 cameras and 2 images per camera")
        self.dataset_dir = os.path.join(
            "synthetic", "s{seed}_tr{num_train_ids}_te{num_test_ids}_c{num_cameras}_k{images_per_camera}".format(**params)
        )
        folder = os.path.join(root, self.dataset_dir)
        if comm.is_main_process() and not os.path.isfile(os.path.join(folder, "params.json")):
            logger.info(f"Drawing the synthetic dataset into {folder} ...")
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            tmp = tempfile.mkdtemp(dir=os.path.dirname(folder))
            shutil.rmtree(tmp)
            generate(tmp, **params)
            with open(os.path.join(tmp, "params.json"), "w") as f:
                json.dump(params, f)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # atomic: a half-drawn dataset is never picked up
        comm.synchronize()
        super().__init__(root)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.DATASETS.SYNTHETIC
        return cls(cfg.DATASETS.ROOT, s.SEED, s.NUM_TRAIN_IDS, s.NUM_TEST_IDS, s.NUM_CAMERAS, s.IMAGES_PER_CAMERA)

    @classmethod
    def data_problems(cls, cfg):
        """Drawn on first use: only the root must be a folder that can be made or written."""
        s, root = cfg.DATASETS.SYNTHETIC, cfg.DATASETS.ROOT
        problems = [] if s.IMAGES_PER_CAMERA >= 2 and s.NUM_CAMERAS >= 2 else [
            "DATASETS.SYNTHETIC: Synthetic needs at least 2 cameras and 2 images per camera"]
        blocked = folder_creation_problem(root)
        if blocked:
            problems.append(f"DATASETS.ROOT '{root}': the synthetic dataset is drawn there on first use, but the "
                            f"folder cannot be made or written: {blocked}")
        return problems

"""A torch Dataset over ``(path, pid, camid)`` items that survives unreadable images."""
import logging

import torch
from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def read_image(path):
    with Image.open(path) as img:
        return img.convert("RGB")


class ImageListDataset(Dataset):
    """Returns dicts ``{images, targets, camids, index, img_paths}``, and ``misalignment`` with
    ``misalign``.

    ``targets`` are the labels given in ``items`` (true ids, or pseudo-labels when the clustering
    hook builds it). An image that cannot be read is reported with its path and replaced by the
    next readable item, so one corrupt file never stops an epoch. ``misalign`` (a
    ``Misalignment``, or None) re-frames each image, by its path, before ``transform``; what it
    applied, (shift, scale, offset), travels with the item as ``misalignment`` to whoever
    measures against it (the clustering hook, the part-box diagnostics).
    """

    def __init__(self, items, transform=None, misalign=None):
        self.items = list(items)
        self.transform, self.misalign = transform, misalign
        self.bad_paths = set()

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        for offset in range(len(self.items)):
            i = (index + offset) % len(self.items)
            path, pid, camid = self.items[i]
            if path in self.bad_paths:
                continue
            try:
                img = read_image(path)
            except (OSError, ValueError) as err:
                self.bad_paths.add(path)
                logger.warning(f"Skipping unreadable image {path}: {err}")
                continue
            item = {"targets": pid, "camids": camid, "index": i, "img_paths": path}
            if self.misalign is not None:
                applied = self.misalign.draw(path)
                img = self.misalign.frame(img, applied)
                item["misalignment"] = torch.tensor(applied, dtype=torch.float64)
            item["images"] = self.transform(img) if self.transform is not None else img
            return item
        raise RuntimeError("No readable image in the dataset")

    def framed(self, index):
        """Item ``index``'s image as the model sees it before the tensor transform: read and, with
        ``misalign``, re-framed (a PIL image; for pictures)."""
        path = self.items[index][0]
        img = read_image(path)
        return img if self.misalign is None else self.misalign(img, path)

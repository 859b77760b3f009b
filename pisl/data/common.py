"""A torch Dataset over ``(path, pid, camid)`` items that survives unreadable images."""
import logging

from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def read_image(path):
    with Image.open(path) as img:
        return img.convert("RGB")


class ImageListDataset(Dataset):
    """Returns dicts ``{images, targets, camids, index, img_paths}``.

    ``targets`` are the labels given in ``items`` (true ids, or pseudo-labels when the clustering
    hook builds it). An image that cannot be read is reported with its path and replaced by the
    next readable item, so one corrupt file never stops an epoch. ``misalign`` (a
    ``Misalignment``, or None) re-frames each image, by its path, before ``transform``.
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
            if self.misalign is not None:
                img = self.misalign(img, path)
            if self.transform is not None:
                img = self.transform(img)
            return {"images": img, "targets": pid, "camids": camid, "index": i, "img_paths": path}
        raise RuntimeError("No readable image in the dataset")

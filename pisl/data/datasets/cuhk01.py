"""CUHK01 (Li, Zhao and Wang, ACCV 2012) in its release layout, with the common 485 / 486
identity split."""
import glob
import os
import re

from .bases import DATASET_REGISTRY, ReidDataset

_NAME = re.compile(r"^(\d{4})(\d{3})\.png$")


@DATASET_REGISTRY.register()
class CUHK01(ReidDataset):
    """971 identities, 4 images each (``campus/PPPPNNN.png``): NNN 001-002 from camera A,
    003-004 from camera B. Identities 1-485 train (1,940 images); identities 486-971 test,
    with images 001 and 003 as queries (one per camera) and 002 and 004 as the gallery, so
    that each query has exactly one match in the other camera (same-camera gallery entries
    of the query's identity are dropped by the evaluator, as usual)."""

    dataset_dir = os.path.join("cuhk01", "campus")
    layout_help = "  <ROOT>/cuhk01/campus/PPPPNNN.png (the release's own layout)"
    num_train_ids = 485

    def __init__(self, root):
        super().__init__(root)
        self.raise_problems(self.missing_paths_problems(self.name, self.dataset_dir, [], root))
        unmatched = []
        for path in sorted(glob.glob(os.path.join(self.dataset_dir, "*.png"))):
            match = _NAME.match(os.path.basename(path))
            if match is None:
                unmatched.append(os.path.basename(path))
                continue
            pid, number = int(match.group(1)), int(match.group(2))
            if not 1 <= number <= 4:
                unmatched.append(os.path.basename(path))
                continue
            item = (path, pid, 0 if number <= 2 else 1)
            if pid <= self.num_train_ids:
                self.train.append(item)
            else:
                (self.query if number in (1, 3) else self.gallery).append(item)
        if unmatched:
            raise ValueError(f"CUHK01: {len(unmatched)} files in {self.dataset_dir} are not named PPPPNNN.png with NNN "
                             f"001-004, e.g. '{unmatched[0]}'")
        if not (self.train and self.query and self.gallery):
            raise FileNotFoundError(f"CUHK01: {self.dataset_dir} has no training or no test identities "
                                    f"(identities 1-{self.num_train_ids} train, the rest test)")

    @classmethod
    def data_problems(cls, cfg):
        root = cfg.DATASETS.ROOT
        return cls.missing_paths_problems(cls.__name__, os.path.join(root, cls.dataset_dir), [], root)

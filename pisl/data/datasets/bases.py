"""What every dataset is: three lists of (image path, identity, camera) and a summary table."""
import logging
import os

from tabulate import tabulate

from ...utils.registry import Registry

DATASET_REGISTRY = Registry("DATASET")
logger = logging.getLogger(__name__)


class ReidDataset:
    """Holds ``train``, ``query`` and ``gallery`` as lists of ``(path, pid, camid)`` tuples.

    Subclasses set ``dataset_dir`` (relative to the root) and fill the three lists in
    ``__init__``; ``check_folders`` gives the error a user sees when data is missing.
    """

    dataset_dir = ""
    layout_help = ""

    def __init__(self, root):
        self.root = root
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        self.train, self.query, self.gallery = [], [], []

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.DATASETS.ROOT)

    @property
    def name(self):
        return type(self).__name__

    def check_folders(self, *paths):
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: missing {', '.join(missing)}. Expected layout:\n{self.layout_help}\n"
                f"Set DATASETS.ROOT to the folder that contains it (now '{self.root}')."
            )

    def summary_rows(self):
        rows = []
        for split, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            rows.append([split, len({pid for _, pid, _ in items}), len(items), len({c for _, _, c in items})])
        return rows

    def log_summary(self):
        table = tabulate(self.summary_rows(), headers=["subset", "# ids", "# images", "# cameras"], tablefmt="pipe")
        logger.info(f"Dataset {self.name} at {self.dataset_dir}:\n{table}")


def build_dataset(name, cfg):
    dataset = DATASET_REGISTRY.get(name).from_config(cfg)
    dataset.log_summary()
    return dataset

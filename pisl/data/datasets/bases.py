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
    ``__init__``; ``data_problems`` lists what is missing before anything is read.
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

    @classmethod
    def data_problems(cls, cfg):
        """What is missing for this dataset, found without reading any image: one line per
        problem, naming the config key to change. The pre-run check calls it for every dataset of
        the config before anything is built; ``__init__`` raises the same lines."""
        return []

    @property
    def name(self):
        return type(self).__name__

    @classmethod
    def missing_paths_problems(cls, name, dataset_dir, names, root):
        """[one line] when ``dataset_dir`` or any of ``names`` in it is missing, else []; the
        line names DATASETS.ROOT (``root``), the key that would fix it."""
        layout = f" (expected {cls.layout_help.strip()})"
        if not os.path.isdir(dataset_dir):
            return [f"DATASETS.ROOT '{root}': {name} needs the folder {dataset_dir}, which does not exist{layout}"]
        missing = [n for n in names if not os.path.exists(os.path.join(dataset_dir, n))]
        if missing:
            return [f"DATASETS.ROOT '{root}': {name} at {dataset_dir} lacks {', '.join(missing)}{layout}"]
        return []

    @staticmethod
    def raise_problems(problems):
        if problems:
            raise FileNotFoundError("\n".join(problems))

    def summary_rows(self):
        rows = []
        for split, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            rows.append([split, len({pid for _, pid, _ in items}), len(items), len({c for _, _, c in items})])
        return rows

    def log_summary(self):
        table = tabulate(self.summary_rows(), headers=["subset", "# ids", "# images", "# cameras"], tablefmt="pipe")
        logger.info(f"Dataset {self.name} at {self.dataset_dir}:\n{table}")


def dataset_problems(cfg):
    """Every problem of the config's training and test datasets that shows without reading an
    image: unknown names and missing folders or files, one line each."""
    problems = []
    for key in ("DATASETS.NAMES", "DATASETS.TESTS"):
        for name in cfg.DATASETS[key.split(".")[1]]:
            if name not in DATASET_REGISTRY:
                problems.append(f"{key}: no dataset named '{name}' (registered: {', '.join(DATASET_REGISTRY.names())}; "
                                f"a project's datasets need the project in IMPORTS)")
            else:
                problems += DATASET_REGISTRY.get(name).data_problems(cfg)
    return list(dict.fromkeys(problems))  # a dataset used for training and testing is reported once


_SUMMARISED = set()  # datasets whose table this process has logged


def build_dataset(name, cfg):
    dataset = DATASET_REGISTRY.get(name).from_config(cfg)
    if (name, dataset.dataset_dir) not in _SUMMARISED:  # a dataset trained and tested on is listed once
        _SUMMARISED.add((name, dataset.dataset_dir))
        dataset.log_summary()
    return dataset

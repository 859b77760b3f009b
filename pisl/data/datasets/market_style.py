"""Datasets stored as folders of images whose file names carry identity and camera:
Market-1501, CUHK03-NP (Market layout) and VeRi-776."""
import glob
import logging
import os
import re

from .bases import DATASET_REGISTRY, ReidDataset

logger = logging.getLogger(__name__)


def parse_folder(folder, pattern, pid_range=None, cam_range=None, extensions=(".jpg", ".png")):
    """List ``(path, pid, camid)`` for the images of a folder.

    pid and camera come from ``pattern`` applied to the file *name* (the reference applies it
    to the full path, which breaks on folder names with digits). Junk images (pid -1) are
    dropped; cameras become 0-based. Images whose name does not match are skipped with a
    warning that gives their count and an example; a folder with images but no match is an
    error.
    """
    items, unmatched = [], []
    paths = sorted(p for ext in extensions for p in glob.glob(os.path.join(folder, "*" + ext)))
    for path in paths:
        match = pattern.search(os.path.basename(path))
        if match is None:
            unmatched.append(os.path.basename(path))
            continue
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1:
            continue
        if pid_range is not None and not pid_range[0] <= pid <= pid_range[1]:
            raise ValueError(f"{path}: identity {pid} outside {pid_range}")
        if cam_range is not None and not cam_range[0] <= cam <= cam_range[1]:
            raise ValueError(f"{path}: camera {cam} outside {cam_range}")
        items.append((path, pid, cam - 1))
    if unmatched:
        msg = (f"{len(unmatched)} of {len(paths)} images in {folder} do not match the file-name pattern "
               f"{pattern.pattern!r} (pid, camera), e.g. '{unmatched[0]}'")
        if len(unmatched) == len(paths):
            raise ValueError(f"{msg}: no image could be parsed. Rename the files (e.g. 0001_c1_0001.jpg) or use "
                             "the MarketLayout dataset with a DATASETS.MARKET_LAYOUT.PATTERN that fits them.")
        logger.warning(f"{msg}; they are skipped")
    return items


def empty_folder_problems(name, dataset_dir, folders, extensions, root):
    """One line for each of ``folders`` (under ``dataset_dir``) that holds no image with one of
    ``extensions``: an empty query or gallery would otherwise fail only once a model and the
    training loader exist. It stops at each folder's first image, so it costs little."""
    def has_image(folder):
        if not os.path.isdir(folder):
            return False
        with os.scandir(folder) as entries:  # case-sensitive, as parse_folder's glob is
            return any(e.name.endswith(tuple(extensions)) for e in entries)

    return [f"DATASETS.ROOT '{root}': {name}'s folder {os.path.join(dataset_dir, folder)} holds no "
            f"{' or '.join(extensions)} image" for folder in folders if not has_image(os.path.join(dataset_dir, folder))]


def name_problems(name, dataset_dir, folders, pattern, extensions):
    """What the file names alone say before a run (no image is read), one line each: a folder
    none of whose image names ``pattern`` parses, and a test split in which no query has a
    gallery image of its identity from another camera (nothing could be evaluated). Some such
    queries only: a warning with their count, as the evaluation leaves them out."""
    parsed, problems = {}, []
    for folder in folders:
        path = os.path.join(dataset_dir, folder)
        names = sorted(n for n in os.listdir(path) if n.endswith(tuple(extensions)))
        matches = [pattern.search(n) for n in names]
        parsed[folder] = [(int(m.group(1)), int(m.group(2))) for m in matches if m]
        if names and not parsed[folder]:
            problems.append(f"{name}: no image name in {path} gives an identity and a camera by the pattern "
                            f"{pattern.pattern!r} (e.g. '{names[0]}'): rename the files (e.g. 0001_c1_0001.jpg) or "
                            "use the MarketLayout dataset with a DATASETS.MARKET_LAYOUT.PATTERN that fits them")
    if problems:
        return problems
    gallery_cams = {}
    for pid, cam in parsed[folders[2]]:
        gallery_cams.setdefault(pid, set()).add(cam)
    queries = [(pid, cam) for pid, cam in parsed[folders[1]] if pid != -1]
    valid = sum(bool(gallery_cams.get(pid, set()) - {cam}) for pid, cam in queries)
    if queries and not valid:
        return [f"{name}: no query in {os.path.join(dataset_dir, folders[1])} has a gallery image of its identity "
                f"from another camera in {os.path.join(dataset_dir, folders[2])}: nothing could be evaluated"]
    if valid < len(queries):
        logger.warning(f"{name}: {len(queries) - valid} of {len(queries)} queries have no gallery image of their "
                       "identity from another camera; the evaluation leaves them out")
    return []


class MarketLayoutDataset(ReidDataset):
    """``<dataset_dir>/{bounding_box_train,query,bounding_box_test}`` with Market file names.
    pid 0 (distractors) stays in the gallery, as in the Market protocol."""

    pattern = re.compile(r"([-\d]+)_c(\d+)")
    folders = ("bounding_box_train", "query", "bounding_box_test")
    extensions = (".jpg", ".png")
    pid_range = None
    cam_range = None

    def __init__(self, root):
        super().__init__(root)
        self.raise_problems(self.folder_problems(self.name, self.dataset_dir, self.folders, root))
        paths = [os.path.join(self.dataset_dir, folder) for folder in self.folders]
        self.train, self.query, self.gallery = (
            parse_folder(p, self.pattern, self.pid_range, self.cam_range, self.extensions) for p in paths
        )
        if not self.train:
            raise FileNotFoundError(f"{self.name}: no {' or '.join(self.extensions)} image in {paths[0]}")

    @classmethod
    def folder_problems(cls, name, dataset_dir, folders, root):
        return cls.missing_paths_problems(name, dataset_dir, folders, root)

    @classmethod
    def data_problems(cls, cfg):
        root = cfg.DATASETS.ROOT
        dataset_dir = os.path.join(root, cls.dataset_dir)
        return (cls.folder_problems(cls.__name__, dataset_dir, cls.folders, root)
                or empty_folder_problems(cls.__name__, dataset_dir, cls.folders, cls.extensions, root)
                or name_problems(cls.__name__, dataset_dir, cls.folders, cls.pattern, cls.extensions))


@DATASET_REGISTRY.register()
class Market1501(MarketLayoutDataset):
    dataset_dir = "Market-1501-v15.09.15"
    layout_help = "  <ROOT>/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_NN.jpg"


@DATASET_REGISTRY.register()
class CUHK03NP(MarketLayoutDataset):
    dataset_dir = os.path.join("cuhk03-np", "detected")
    layout_help = "  <ROOT>/cuhk03-np/detected/{bounding_box_train,query,bounding_box_test}/PPPP_cV_KK.jpg"


@DATASET_REGISTRY.register()
class VeRi(MarketLayoutDataset):
    dataset_dir = "VeRi"
    layout_help = "  <ROOT>/VeRi/{image_train,image_query,image_test}/VVVV_cCCC_*.jpg"
    pattern = re.compile(r"([-\d]+)_c([-\d]+)")
    folders = ("image_train", "image_query", "image_test")
    pid_range = (0, 776)
    cam_range = (1, 20)


@DATASET_REGISTRY.register()
class MarketLayout(MarketLayoutDataset):
    """Any dataset in the Market-1501 layout, described by config keys only
    (``DATASETS.MARKET_LAYOUT``): its folder under the root, the three sub-folders, a regular
    expression whose two groups are the identity and the camera in a file name, and the image
    extensions. Results are reported under the folder's name."""

    def __init__(self, root, folder, pattern=MarketLayoutDataset.pattern.pattern, extensions=(".jpg", ".png"),
                 folders=MarketLayoutDataset.folders):
        self._describe(folder, pattern, extensions, folders)
        super().__init__(root)

    def _describe(self, folder, pattern, extensions, folders):
        """Set the layout from the config keys; a value that cannot work is a ValueError."""
        if not folder:
            raise ValueError("MarketLayout needs DATASETS.MARKET_LAYOUT.DIR: the dataset's folder under DATASETS.ROOT")
        self.dataset_dir, self.folders, self.extensions = folder, tuple(folders), tuple(extensions)
        try:
            self.pattern = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"DATASETS.MARKET_LAYOUT.PATTERN {pattern!r} is not a regular expression: {err}") from None
        if self.pattern.groups != 2:
            raise ValueError(f"DATASETS.MARKET_LAYOUT.PATTERN {pattern!r} needs two groups: (identity)(camera)")
        self.layout_help = f"  <ROOT>/{folder}/{{{','.join(self.folders)}}}/<names matching {pattern!r}>"

    @classmethod
    def from_config(cls, cfg):
        c = cfg.DATASETS.MARKET_LAYOUT
        return cls(cfg.DATASETS.ROOT, c.DIR, c.PATTERN, c.EXTENSIONS, c.FOLDERS)

    def folder_problems(self, name, dataset_dir, folders, root):
        """Your own folder: a missing dataset folder is DATASETS.MARKET_LAYOUT.DIR's (or the
        root's) to fix, missing sub-folders DATASETS.MARKET_LAYOUT.FOLDERS's."""
        if not os.path.isdir(dataset_dir):
            return [f"DATASETS.MARKET_LAYOUT.DIR '{os.path.relpath(dataset_dir, root)}': the folder {dataset_dir} does "
                    f"not exist (DIR is relative to DATASETS.ROOT '{root}'; expected {self.layout_help.strip()})"]
        missing = [f for f in folders if not os.path.isdir(os.path.join(dataset_dir, f))]
        if missing:
            present = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d)))
            return [f"DATASETS.MARKET_LAYOUT.FOLDERS {list(folders)}: {dataset_dir} has no {', '.join(missing)} "
                    f"(its folders: {', '.join(present) or 'none'}); set the train, query and gallery folders' names"]
        return []

    @classmethod
    def data_problems(cls, cfg):
        c = cfg.DATASETS.MARKET_LAYOUT
        try:
            dataset = cls.__new__(cls)
            dataset._describe(c.DIR, c.PATTERN, c.EXTENSIONS, c.FOLDERS)
        except ValueError as err:
            return [str(err)]
        dataset_dir = os.path.join(cfg.DATASETS.ROOT, c.DIR)
        return (dataset.folder_problems(dataset.name, dataset_dir, dataset.folders, cfg.DATASETS.ROOT)
                or empty_folder_problems(dataset.name, dataset_dir, dataset.folders, dataset.extensions,
                                         cfg.DATASETS.ROOT)
                or name_problems(dataset.name, dataset_dir, dataset.folders, dataset.pattern, dataset.extensions))

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.dataset_dir))

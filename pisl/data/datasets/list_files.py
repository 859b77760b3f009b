"""Your own data described by list files: one ``path pid camid`` line per image."""
import os

from .bases import DATASET_REGISTRY, ReidDataset


def parse_list_file(list_file):
    """``(path, pid, camid)`` from the lines of ``list_file``; paths are relative to its folder
    (or absolute), pid and camid integers, blank lines and ``#`` comments skipped. Errors name
    the file and line; images that do not exist are an error with their count and an example."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"List file not found: {list_file}")
    folder, items = os.path.dirname(list_file), []
    with open(list_file) as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#")[0].split()
            if not fields:
                continue
            try:
                path, pid, camid = fields[0], int(fields[1]), int(fields[2])
                if len(fields) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(f"{list_file}, line {number}: expected 'path pid camid' (two integers), "
                                 f"got {line.strip()!r}") from None
            items.append((os.path.join(folder, path), pid, camid))
    missing = [p for p, _, _ in items if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{list_file}: {len(missing)} of {len(items)} listed images do not exist, "
                                f"e.g. {missing[0]} (paths are relative to the list file's folder)")
    return items


def _lists_an_image(list_file):
    """Whether ``list_file`` has a line other than a blank or a comment (read up to that line)."""
    with open(list_file) as f:
        return any(line.split("#")[0].strip() for line in f)


@DATASET_REGISTRY.register()
class ListFiles(ReidDataset):
    """Train / query / gallery lists (``DATASETS.LIST_FILES``). Results are reported under the
    train list's folder name."""

    layout_help = "  one 'path pid camid' line per image; paths relative to the list file's folder"

    def __init__(self, root, train, query, gallery):
        super().__init__(root)
        files = {"TRAIN": train, "QUERY": query, "GALLERY": gallery}
        unset = [key for key, value in files.items() if not value]
        if unset:
            raise ValueError(f"ListFiles needs DATASETS.LIST_FILES.{', .'.join(unset)}: list files under DATASETS.ROOT")
        self.train, self.query, self.gallery = (parse_list_file(os.path.join(root, f)) for f in (train, query, gallery))
        self.dataset_dir = os.path.dirname(os.path.join(root, train))

    @classmethod
    def from_config(cls, cfg):
        c = cfg.DATASETS.LIST_FILES
        return cls(cfg.DATASETS.ROOT, c.TRAIN, c.QUERY, c.GALLERY)

    @classmethod
    def data_problems(cls, cfg):
        problems = []
        for key in ("TRAIN", "QUERY", "GALLERY"):
            value = cfg.DATASETS.LIST_FILES[key]
            path = os.path.join(cfg.DATASETS.ROOT, value)
            if not value:
                problems.append(f"DATASETS.LIST_FILES.{key} is not set: ListFiles needs a list file under DATASETS.ROOT")
            elif not os.path.isfile(path):
                problems.append(f"DATASETS.LIST_FILES.{key} '{value}': list file {path} does not exist "
                                f"(relative to DATASETS.ROOT '{cfg.DATASETS.ROOT}')")
            elif not _lists_an_image(path):
                problems.append(f"DATASETS.LIST_FILES.{key} '{value}': list file {path} lists no image")
        return problems

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.dataset_dir)) or "ListFiles"

"""MSMT17 (V1), described by list files rather than folder contents."""
import os
import re

from .bases import DATASET_REGISTRY, ReidDataset

_NAME_PATTERN = re.compile(r"([-\d]+)_([-\d]+)_([-\d]+)")


def parse_list(list_file, image_dir):
    """``relpath label`` lines -> ``(path, pid, camid)``; pid and camera (1..15, made 0-based)
    come from the file name ``PPPP_SSS_CC_...``."""
    items = []
    with open(list_file) as f:
        for line in f:
            if not line.strip():
                continue
            relpath = line.split()[0]
            pid, _, cam = map(int, _NAME_PATTERN.search(os.path.basename(relpath)).groups())
            items.append((os.path.join(image_dir, relpath), pid, cam - 1))
    return items


@DATASET_REGISTRY.register()
class MSMT17(ReidDataset):
    dataset_dir = "MSMT17_V1"
    layout_help = "  <ROOT>/MSMT17_V1/{train,test}/... and list_{train,val,query,gallery}.txt"

    required = ("train", "test", "list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")

    def __init__(self, root):
        super().__init__(root)
        d = self.dataset_dir
        self.raise_problems(self.missing_paths_problems(self.name, d, self.required, root))
        lists = {k: os.path.join(d, f"list_{k}.txt") for k in ("train", "val", "query", "gallery")}
        # The official protocol trains on train + val.
        self.train = parse_list(lists["train"], os.path.join(d, "train")) + parse_list(
            lists["val"], os.path.join(d, "train")
        )
        self.query = parse_list(lists["query"], os.path.join(d, "test"))
        self.gallery = parse_list(lists["gallery"], os.path.join(d, "test"))

    @classmethod
    def data_problems(cls, cfg):
        root = cfg.DATASETS.ROOT
        return cls.missing_paths_problems(cls.__name__, os.path.join(root, cls.dataset_dir), cls.required, root)

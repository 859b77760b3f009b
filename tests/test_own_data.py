"""Bring your own data: a Market-layout folder with a configurable pattern, and list files."""
import glob
import json
import os
import re

import pytest
from PIL import Image

from pisl.config import get_cfg
from pisl.data.datasets import ListFiles, MarketLayout, build_dataset

from pisl.testing import train_net


def _synthetic_split(root, folder):
    return sorted(glob.glob(os.path.join(root, "synthetic", "*", folder, "*.jpg")))


def _as_png_market_folder(synthetic_root, dest):
    """The synthetic images as .png files named 0001_c1_001.png in a folder called 'mydata'."""
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(dest / "mydata" / folder)
        for path in _synthetic_split(synthetic_root, folder):
            pid, cam, k = map(int, re.match(r"(\d+)_c(\d+)_(\d+)", os.path.basename(path)).groups())
            Image.open(path).save(dest / "mydata" / folder / f"{pid:04d}_c{cam}_{k:03d}.png")


def test_png_market_folder_trains_and_evaluates_with_config_keys_only(synthetic_root, tmp_path):
    _as_png_market_folder(synthetic_root, tmp_path / "data")
    overrides = ["DATASETS.NAMES", "['MarketLayout']", "DATASETS.TESTS", "['MarketLayout']",
                 "DATASETS.MARKET_LAYOUT.DIR", "mydata", "DATASETS.MARKET_LAYOUT.EXTENSIONS", "['.png']",
                 "SOLVER.MAX_EPOCH", "1"]
    train_net(tmp_path / "out", str(tmp_path / "data"), overrides=overrides)
    with open(tmp_path / "out" / "results.json") as f:
        results = json.load(f)["mydata"]
    assert results["num_valid_queries"] == len(_synthetic_split(synthetic_root, "query")) and results["mAP"] > 0


def test_market_layout_pattern_and_extensions_from_config(tmp_path):
    for folder, names in (("train", ["p0003-cam2-01.png", "p0004-cam1-01.png", "p0004-cam1-02.jpg"]),
                          ("q", ["p0003-cam1-01.png"]), ("g", ["p0003-cam2-09.png"])):
        os.makedirs(tmp_path / "own" / folder)
        for name in names:
            Image.new("RGB", (8, 16)).save(tmp_path / "own" / folder / name)
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.ROOT", str(tmp_path), "DATASETS.MARKET_LAYOUT.DIR", "own",
                         "DATASETS.MARKET_LAYOUT.FOLDERS", "['train', 'q', 'g']",
                         "DATASETS.MARKET_LAYOUT.PATTERN", r"p(\d+)-cam(\d+)", "DATASETS.MARKET_LAYOUT.EXTENSIONS", "['.png']"])
    ds = build_dataset("MarketLayout", cfg)
    assert ds.name == "own" and [(pid, cam) for _, pid, cam in ds.train] == [(3, 1), (4, 0)]  # the .jpg is not listed
    with pytest.raises(ValueError, match="two groups"):
        MarketLayout(str(tmp_path), "own", pattern=r"p(\d+)")


def test_list_files_dataset(synthetic_root, tmp_path):
    lists = {}
    for key, folder in (("TRAIN", "bounding_box_train"), ("QUERY", "query"), ("GALLERY", "bounding_box_test")):
        lines = [f"{path} {int(os.path.basename(path)[:4])} {int(os.path.basename(path)[6]) - 1}"
                 for path in _synthetic_split(synthetic_root, folder)]
        (tmp_path / f"{key.lower()}.txt").write_text("# path pid camid\n" + "\n".join(lines) + "\n")
        lists[key] = f"{key.lower()}.txt"
    ds = ListFiles(str(tmp_path), lists["TRAIN"], lists["QUERY"], lists["GALLERY"])
    assert len(ds.train) == len(_synthetic_split(synthetic_root, "bounding_box_train")) and ds.query[0][1:] == (
        int(os.path.basename(ds.query[0][0])[:4]), int(os.path.basename(ds.query[0][0])[6]) - 1)
    (tmp_path / "bad.txt").write_text("a.jpg 1\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 1: expected 'path pid camid'"):
        ListFiles(str(tmp_path), "bad.txt", lists["QUERY"], lists["GALLERY"])
    (tmp_path / "missing.txt").write_text("nope.jpg 1 0\n")
    with pytest.raises(FileNotFoundError, match="1 of 1 listed images do not exist, e.g. .*nope.jpg"):
        ListFiles(str(tmp_path), "missing.txt", lists["QUERY"], lists["GALLERY"])

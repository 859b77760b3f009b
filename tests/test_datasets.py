import os

import pytest
from PIL import Image

from pisl.data import ImageListDataset, build_transforms
from pisl.data.datasets import CUHK01, CUHK03NP, MSMT17, Market1501, VeRi
from pisl.config import get_cfg

from pisl.testing import SHARED_DATA, requires_cuhk01, requires_cuhk03


def _touch(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 16)).save(os.path.join(folder, name))


def test_market_parsing(tmp_path):
    d = tmp_path / "Market-1501-v15.09.15"
    _touch(d / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c6s1_000001_00.jpg"])
    _touch(d / "query", ["0002_c3s1_000001_00.jpg"])
    _touch(d / "bounding_box_test", ["-1_c1s1_000001_00.jpg", "0000_c1s1_000002_00.jpg", "0002_c1s1_000003_00.jpg"])
    ds = Market1501(str(tmp_path))
    assert [(pid, cam) for _, pid, cam in ds.train] == [(2, 0), (2, 1), (7, 5)]
    assert [(pid, cam) for _, pid, cam in ds.query] == [(2, 2)]
    # junk (-1) dropped, distractors (0) kept in the gallery
    assert sorted(pid for _, pid, _ in ds.gallery) == [0, 2]


def test_file_names_off_the_pattern_are_counted_with_an_example(tmp_path, caplog):
    d = tmp_path / "Market-1501-v15.09.15"
    _touch(d / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "person2-cam1.jpg"])
    _touch(d / "query", ["0002_c3s1_000001_00.jpg"])
    _touch(d / "bounding_box_test", ["0002_c1s1_000003_00.jpg"])
    assert len(Market1501(str(tmp_path)).train) == 1
    assert "1 of 2 images" in caplog.text and "'person2-cam1.jpg'" in caplog.text
    os.remove(d / "bounding_box_train" / "0002_c1s1_000451_03.jpg")
    # Before: "no images found" although an image is there.
    with pytest.raises(ValueError, match=r"1 of 1 images in .*bounding_box_train do not match .*'person2-cam1.jpg'"):
        Market1501(str(tmp_path))


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Market-1501-v15.09.15, which does not exist \(expected .*bounding_box_train"):
        Market1501(str(tmp_path))


def test_veri_parsing_and_range_check(tmp_path):
    d = tmp_path / "VeRi"
    _touch(d / "image_train", ["0001_c001_00016450_0.jpg"])
    _touch(d / "image_query", ["0002_c002_00030600_0.jpg"])
    _touch(d / "image_test", ["0002_c019_00030600_0.jpg"])
    ds = VeRi(str(tmp_path))
    assert ds.train[0][1:] == (1, 0) and ds.gallery[0][1:] == (2, 18)
    _touch(d / "image_test", ["0002_c021_00030600_0.jpg"])
    with pytest.raises(ValueError, match="camera 21"):
        VeRi(str(tmp_path))


def test_msmt17_lists(tmp_path):
    d = tmp_path / "MSMT17_V1"
    _touch(d / "train" / "0000", ["0000_000_01_0303morning_0015_0.jpg"])
    _touch(d / "test" / "0003", ["0003_000_15_0303morning_0015_0.jpg"])
    (d / "list_train.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n")
    (d / "list_val.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n")
    (d / "list_query.txt").write_text("0003/0003_000_15_0303morning_0015_0.jpg 3\n")
    (d / "list_gallery.txt").write_text("0003/0003_000_15_0303morning_0015_0.jpg 3\n")
    ds = MSMT17(str(tmp_path))
    assert len(ds.train) == 2 and ds.query[0][1:] == (3, 14)
    assert os.path.isfile(ds.train[0][0])


def test_corrupt_image_is_skipped_with_warning(tmp_path, caplog):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (8, 16), (255, 0, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = ImageListDataset([(str(bad), 1, 0), (str(good), 2, 1)], build_transforms(get_cfg(), is_train=False))
    item = ds[0]
    assert item["img_paths"] == str(good) and item["index"] == 1
    assert "bad.jpg" in caplog.text


def test_synthetic_is_deterministic(tmp_path):
    from pisl.data.datasets import Synthetic

    a = Synthetic(str(tmp_path / "a"), seed=3, num_train_ids=4, num_test_ids=3, num_cameras=2, images_per_camera=2)
    b = Synthetic(str(tmp_path / "b"), seed=3, num_train_ids=4, num_test_ids=3, num_cameras=2, images_per_camera=2)
    assert len(a.train) == 16 and len(a.query) == 6 and len(a.gallery) == 6
    for (pa, *la), (pb, *lb) in zip(a.train, b.train):
        assert la == lb and open(pa, "rb").read() == open(pb, "rb").read()


@requires_cuhk03
def test_cuhk03np_real_data_counts():
    ds = CUHK03NP(SHARED_DATA)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (7353, 1400, 5344)
    assert len({pid for _, pid, _ in ds.train}) == 767
    assert {cam for _, _, cam in ds.query} == {0, 1}


def test_cuhk01_split_and_cameras(tmp_path):
    """Identities up to 485 train; above, images 001/003 are queries and 002/004 the gallery;
    001-002 are camera A (0), 003-004 camera B (1)."""
    folder = tmp_path / "cuhk01" / "campus"
    _touch(str(folder), [f"{pid:04d}{n:03d}.png" for pid in (1, 485, 486, 971) for n in range(1, 5)])
    ds = CUHK01(str(tmp_path))
    assert sorted((os.path.basename(p), pid, cam) for p, pid, cam in ds.train)[:4] == [
        ("0001001.png", 1, 0), ("0001002.png", 1, 0), ("0001003.png", 1, 1), ("0001004.png", 1, 1)]
    assert len(ds.train) == 8 and {pid for _, pid, _ in ds.train} == {1, 485}
    assert sorted(os.path.basename(p) for p, _, _ in ds.query) == ["0486001.png", "0486003.png", "0971001.png", "0971003.png"]
    assert sorted((os.path.basename(p), cam) for p, _, cam in ds.gallery) == [
        ("0486002.png", 0), ("0486004.png", 1), ("0971002.png", 0), ("0971004.png", 1)]


def test_cuhk01_bad_names_and_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cuhk01/campus, which does not exist"):
        CUHK01(str(tmp_path))
    _touch(str(tmp_path / "cuhk01" / "campus"), ["0001001.png", "0001005.png"])
    with pytest.raises(ValueError, match=r"1 files .* e.g. '0001005.png'"):
        CUHK01(str(tmp_path))


@requires_cuhk01
def test_cuhk01_real_data_counts():
    ds = CUHK01(SHARED_DATA)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (1940, 972, 972)
    assert len({pid for _, pid, _ in ds.train}) == 485 and len({pid for _, pid, _ in ds.query}) == 486
    # Each query has exactly one gallery image of its identity in the other camera.
    gallery = {(pid, cam) for _, pid, cam in ds.gallery}
    assert all((pid, 1 - cam) in gallery for _, pid, cam in ds.query)

"""INPUT.MISALIGN: crops re-framed per file, the same way in every loader."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pisl.config import ConfigError, get_cfg, load_config
from pisl.data import Misalignment, build_test_loader, build_train_loader, image_dataset
from pisl.data.misalign import misalign_image, misaligned_heights
from pisl.evaluation import extract_features, with_misalignment

from pisl.testing import REPO, make_synthetic


def test_misalign_image_moves_a_row_where_the_formula_says():
    """A 40 x 100 image, black but for a white row at y = 20 (relative 0.205 at the row's
    centre): scale 0.5 and shift +0.2 put it at 0.5 + 0.5 (0.205 - 0.5) + 0.2 = 0.5525, row 55;
    the content now spans rows 45-95, and the uncovered border gets the fill."""
    pixels = np.zeros((100, 40, 3), np.uint8)
    pixels[20] = 255
    out = np.asarray(misalign_image(Image.fromarray(pixels), 0.2, 0.5, 0.0, (9, 9, 9)))
    assert out[:, 20, 0].argmax() == 55
    assert (out[:44, 20] == 9).all() and (out[-4:, 20] == 9).all() and (out[50, :9] == 9).all()
    assert (out[47:94, 20] != 9).all()
    shifted = np.asarray(misalign_image(Image.fromarray(pixels), -0.1, 1.0, 0.0, (0, 0, 0)))
    assert shifted[:, 20, 0].argmax() == 10


def test_misaligned_heights_are_where_misalign_image_puts_the_rows():
    """Hand case: 0.5 + 0.5 (0.205 - 0.5) + 0.2 = 0.5525 (the white row of the test above), the
    crop's top and bottom to 0.45 and 0.95; with shift -0.15 and scale 1.05, 0.205 goes to
    0.04025 and the top to 0.5 + 1.05 (0 - 0.5) - 0.15 = -0.175, clipped to 0. Then, for several shifts and
    scales, the row the image transform moves a white row to is the one the formula gives."""
    assert np.allclose(misaligned_heights([0.205, 0.0, 1.0], [[0.2], [-0.15]], [[0.5], [1.05]]),
                       [[0.5525, 0.45, 0.95], [0.04025, 0.0, 0.875]])
    pixels = np.zeros((100, 40, 3), np.uint8)
    pixels[30] = 255  # relative height 0.305 at the row's centre
    for shift, scale in ((0.1, 0.8), (-0.12, 1.05), (0.0, 0.9)):
        out = np.asarray(misalign_image(Image.fromarray(pixels), shift, scale, 0.0, (0, 0, 0)))
        assert abs(out[:, 20, 0].argmax() + 0.5 - 100 * misaligned_heights(0.305, shift, scale)) <= 1


def test_misalignment_is_drawn_from_the_file_name_alone():
    m = Misalignment(shift=0.2, scale=(0.7, 1.1), offset=0.1)
    a = m.draw("/data/one/0001_c1_0003.jpg")
    assert m.draw("/elsewhere/0001_c1_0003.jpg") == a  # the folder does not matter
    assert m.draw("/data/one/0001_c1_0004.jpg") != a
    assert Misalignment(shift=0.2, scale=(0.7, 1.1), offset=0.1, seed=1).draw("/data/one/0001_c1_0003.jpg") != a
    shift, scale, offset = m.applied([f"{i}.jpg" for i in range(500)]).T
    assert np.abs(shift).max() <= 0.2 and 0.7 <= scale.min() and scale.max() <= 1.1 and np.abs(offset).max() <= 0.1
    assert shift.std() > 0.1  # spread over the range, not stuck at one value


def test_training_and_evaluation_loaders_misalign_each_image_the_same_way(synthetic_root):
    cfg = load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                      ["DATASETS.ROOT", synthetic_root, "INPUT.MISALIGN.ENABLED", "True", "INPUT.FLIP_PROB", "0.0",
                       "INPUT.PADDING", "0", "INPUT.REA.ENABLED", "False", "INPUT.SIZE_TRAIN", "[128, 64]",
                       "INPUT.SIZE_TEST", "[128, 64]", "DATALOADER.NUM_WORKERS", "0"])
    items = make_synthetic(synthetic_root).train
    train = build_train_loader(cfg, items).dataset
    test = image_dataset(cfg, items)
    for i in (0, 7, 30):
        assert torch.equal(train[i]["images"], test[i]["images"])
    # ... and it is the misalignment of that file, not an image left as it was.
    plain = image_dataset(load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                                      ["DATASETS.ROOT", synthetic_root, "INPUT.SIZE_TEST", "[128, 64]"]), items)
    assert not torch.equal(test[0]["images"], plain[0]["images"])
    # What was applied travels with the item, and the aligned item has none.
    for i in (0, 7):
        path = items[i][0]
        assert test[i]["misalignment"].tolist() == list(Misalignment.from_config(cfg).draw(path))
        assert "misalignment" not in plain[i]


def test_extracted_misalignment_is_one_row_per_item_in_item_order(synthetic_root):
    """``with_misalignment`` gathers each batch's misalignment beside the features: row i is
    item i's draw, over several batches; a loader of aligned crops adds no key."""
    cfg = load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                      ["DATASETS.ROOT", synthetic_root, "INPUT.MISALIGN.ENABLED", "True", "MODEL.DEVICE", "cpu",
                       "TEST.IMS_PER_BATCH", "8", "DATALOADER.NUM_WORKERS", "0"])
    items = make_synthetic(synthetic_root).train[:20]
    model = torch.nn.Linear(1, 1)
    mean_pixel = lambda batch: {"global": batch["images"].mean((1, 2, 3))[:, None]}
    feats, idx = extract_features(model, build_test_loader(cfg, items), with_misalignment(mean_pixel))
    assert idx.tolist() == list(range(20)) and feats["global"].shape == (20, 1)
    expected = Misalignment.from_config(cfg).applied([path for path, _, _ in items])
    assert feats["misalignment"].dtype == torch.float64 and np.array_equal(feats["misalignment"].numpy(), expected)
    cfg.defrost()
    cfg.INPUT.MISALIGN.ENABLED = False
    feats, _ = extract_features(model, build_test_loader(cfg, items), with_misalignment(mean_pixel))
    assert list(feats) == ["global"]


def test_bad_misalignment_settings_are_reported_before_the_run():
    with pytest.raises(ConfigError) as err:
        load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                    ["INPUT.MISALIGN.SHIFT", "0.7", "INPUT.MISALIGN.SCALE", "[1.2, 0.8]", "INPUT.MISALIGN.FILL", "red"])
    text = str(err.value)
    assert "INPUT.MISALIGN.SHIFT (0.7)" in text and "INPUT.MISALIGN.SCALE is [1.2, 0.8]" in text
    assert "INPUT.MISALIGN.FILL is 'red'" in text
    assert get_cfg().INPUT.MISALIGN.ENABLED is False

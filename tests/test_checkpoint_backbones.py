import logging
import os

import pytest
import torch
import torch.nn as nn

from pisl.modeling.backbones import MobileNetV2, ResNet50
from pisl.utils.checkpoint import atomic_save, load_model_weights

from pisl.testing import MOBILENET_WEIGHTS, requires_mobilenet_weights


def test_atomic_save_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ck.pth"
    atomic_save({"a": torch.ones(2)}, str(path))
    atomic_save({"a": torch.zeros(2)}, str(path))
    assert torch.load(path)["a"].sum() == 0
    assert os.listdir(tmp_path) == ["ck.pth"]


class _Net(nn.Module):
    """A backbone and a classifier, as the toolbox's models name them."""

    def __init__(self, width=4, classes=5):
        super().__init__()
        self.backbone = nn.Linear(3, width)
        self.classifier = nn.Linear(width, classes)


def test_load_skips_data_sized_classifier_with_one_quiet_line(tmp_path, caplog):
    src = _Net(classes=5)
    atomic_save({"model": src.state_dict()}, str(tmp_path / "m.pth"))
    dst = _Net(classes=7)  # another clustering: another number of classes
    caplog.set_level(logging.INFO)
    load_model_weights(dst, str(tmp_path / "m.pth"))
    assert torch.equal(dst.backbone.weight, src.backbone.weight)
    quiet = [r for r in caplog.records if "data-sized" in r.getMessage()]
    assert len(quiet) == 1 and quiet[0].levelno == logging.INFO and "classifier.weight" in quiet[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # expected, so no warning
    # A tensor of the architecture with another shape is still a warning (with PARTIAL_LOAD).
    other = _Net(width=6, classes=5)
    caplog.clear()
    load_model_weights(other, str(tmp_path / "m.pth"), partial=True)
    assert any(r.levelno == logging.WARNING and "backbone.weight" in r.getMessage() for r in caplog.records)


def test_checkpoint_of_another_architecture_is_an_error_unless_partial(tmp_path):
    # Before: the one fitting tensor (backbone.bias) was enough for "Loaded 1/4" and exit 0.
    atomic_save({"model": _Net(width=4).state_dict()}, str(tmp_path / "m.pth"))
    dst = _Net(width=4)
    dst.backbone = nn.Linear(2, 4)
    with pytest.raises(ValueError, match=r"does not fit this _Net model: 1 of its 4 .*backbone.weight.*PARTIAL_LOAD"):
        load_model_weights(dst, str(tmp_path / "m.pth"))
    load_model_weights(dst, str(tmp_path / "m.pth"), partial=True)
    with pytest.raises(ValueError, match="does not fit"):
        load_model_weights(nn.Conv2d(1, 1, 1), str(tmp_path / "m.pth"), partial=True)


def test_truncated_or_unsafe_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "m.pth"
    atomic_save({"model": _Net().state_dict()}, str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"Cannot read checkpoint {path}.*truncated"):
        load_model_weights(_Net(), str(path))
    torch.save({"model": _Net().state_dict(), "extra": _Net()}, path)  # a pickled module: arbitrary code
    with pytest.raises(ValueError, match=f"{path} holds Python objects"):
        load_model_weights(_Net(), str(path))


def test_pretrained_without_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PRETRAIN_PATH"):
        ResNet50(pretrained=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MobileNetV2(pretrained=True, pretrain_path=str(tmp_path / "missing.pth"))


def test_wrong_weights_file_is_an_error(tmp_path):
    atomic_save(nn.Linear(3, 4).state_dict(), str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="does not fit"):
        MobileNetV2(pretrained=True, pretrain_path=str(tmp_path / "w.pth"))


def test_last_stride_one_feature_map_sizes():
    x = torch.zeros(1, 3, 128, 64)
    assert MobileNetV2(last_stride=1)(x).shape == (1, 1280, 8, 4)
    assert MobileNetV2(last_stride=2)(x).shape == (1, 1280, 4, 2)
    assert ResNet50(last_stride=1)(x).shape == (1, 2048, 8, 4)


@requires_mobilenet_weights
def test_shared_mobilenet_weights_load():
    net = MobileNetV2(pretrained=True, pretrain_path=MOBILENET_WEIGHTS)
    sd = torch.load(MOBILENET_WEIGHTS, map_location="cpu")
    assert torch.equal(net.body[0][0].weight, sd["features.0.0.weight"])

"""What users take away: the Predictor API and tools/extract_features.py."""
import glob
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pisl.config import load_config
from pisl.data import build_test_loader
from pisl.engine import Predictor
from pisl.evaluation import extract_features

from pisl.testing import REPO, TINY, train_net

CONFIG = os.path.join(REPO, "configs/Synthetic/baseline.yml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("trained")
    train_net(out, synthetic_root, overrides=["SOLVER.MAX_EPOCH", "1"])
    cfg = load_config(CONFIG, TINY + ["DATASETS.ROOT", synthetic_root, "MODEL.WEIGHTS", str(out / "model_final.pth")])
    query = os.path.dirname(glob.glob(os.path.join(synthetic_root, "synthetic", "*", "query", "*.jpg"))[0])
    return cfg, query


def test_predictor_gives_the_evaluation_features(trained):
    cfg, query = trained
    paths = sorted(glob.glob(os.path.join(query, "*.jpg")))
    predictor = Predictor(cfg)
    feats = predictor(paths)
    expected, _ = extract_features(predictor.model, build_test_loader(cfg, [(p, 0, 0) for p in paths]))
    assert feats.shape == expected["global"].shape and torch.allclose(feats, expected["global"], atol=1e-5)
    assert torch.allclose(feats.norm(dim=1), torch.ones(len(paths)), atol=1e-5)
    assert torch.allclose(predictor(predictor.to_tensor(paths[:3])), feats[:3], atol=1e-6)
    # pathlib paths and PIL images are read as the string paths are
    assert torch.allclose(predictor([pathlib.Path(paths[0]), Image.open(paths[1])]), feats[:2], atol=1e-6)


def test_predictor_without_weights_is_an_error(trained):
    cfg, _ = trained
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = ""
    with pytest.raises(ValueError, match="needs trained weights"):
        Predictor(cfg)


def test_extract_features_tool_on_a_folder_with_a_corrupt_image(trained, tmp_path):
    cfg, query = trained
    folder = tmp_path / "crops"
    os.makedirs(folder / "sub")
    paths = sorted(glob.glob(os.path.join(query, "*.jpg")))[:5]
    for i, p in enumerate(paths):
        (folder / ("sub" if i % 2 else "") / os.path.basename(p)).write_bytes(open(p, "rb").read())
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "feats.npz"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "extract_features.py"), "--config-file", CONFIG,
                           "--input", str(folder), "--output", str(out), *TINY, "MODEL.WEIGHTS", cfg.MODEL.WEIGHTS],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Skipping unreadable image" in proc.stdout + proc.stderr
    data = np.load(out)
    names = list(data["names"])
    assert len(names) == 5 and "broken.jpg" not in names and any(n.startswith("sub/") for n in names)
    expected = Predictor(cfg)([str(folder / n) for n in names]).numpy()
    assert data["features"].dtype == np.float32 and np.allclose(data["features"], expected, atol=1e-5)


@pytest.mark.parametrize("with_parts, anchors, person_cue",
                         [(False, "stripes", "image"), (True, "stripes", "image"), (True, "person", "image"),
                          (True, "person", "features")])
def test_onnx_export_matches_torch_on_the_tiny_pisl_model(with_parts, anchors, person_cue, tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    from export_onnx import check_onnx, export_onnx
    from pisl.modeling import build_model

    opts = ["MODEL.DEVICE", "cpu", "INPUT.SIZE_TEST", "[64, 32]", "PISL.DIFFUSION.SAMPLE_STEPS", "5",
            "PISL.TEST_WITH_PARTS", str(with_parts), "PISL.DIFFUSION.ANCHORS", anchors,
            "PISL.DIFFUSION.PERSON_CUE", person_cue]
    cfg = load_config(os.path.join(REPO, "projects/PISL/configs/demo.yml"), opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    # A denoiser that moves the boxes, so that the unrolled sampler is really exercised.
    torch.nn.init.normal_(model.part_generator.denoiser.net[-1].weight, std=0.05)
    graph = export_onnx(model, (64, 32), str(tmp_path / "m.onnx"))
    diff, shape = check_onnx(graph, str(tmp_path / "m.onnx"), (64, 32), batch=3)
    assert shape == (3, model.backbone.out_channels * (4 if with_parts else 1)) and diff < 1e-4

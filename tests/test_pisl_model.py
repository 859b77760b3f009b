"""PISL model, training and configs: gradients, P = 2 / 4, the paper configs on stand-in data,
and a short run on real data."""
import os

import numpy as np
import pytest
import torch

from pisl.config import get_cfg, import_projects
from pisl.engine import PseudoLabels
from pisl.modeling import build_model

from conftest import REPO

import_projects(["projects.PISL"])

PISL_DEMO = "projects/PISL/configs/demo.yml"


def _demo_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, PISL_DEMO))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *overrides])
    return cfg


def _pseudo_labels(model, images, labels, camids):
    model.eval()
    feats = model.cluster_features({"images": images})
    model.train()
    n = len(labels)
    return PseudoLabels(0, feats, np.asarray(labels), np.asarray(camids), np.arange(n), int(max(labels)) + 1)


def test_gradients_reach_stn_and_denoiser():
    torch.manual_seed(0)
    model = build_model(_demo_cfg("PISL.NUM_PARTS", "2"))
    images = torch.rand(8, 3, 64, 32)
    labels, cams = [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 0, 1, 0, 1]
    state = _pseudo_labels(model, images, labels, cams)
    for module in model.modules():
        if hasattr(module, "on_pseudo_labels"):
            module.on_pseudo_labels(state)
    batch = {"images": images, "targets": torch.tensor(labels), "camids": torch.tensor(cams), "index": torch.arange(8)}
    losses = model(batch)
    assert set(losses) == {"PSCLoss", "SoftTripletLoss", "CameraContrastLoss", "SCDLoss"}
    sum(losses.values()).backward()
    gen = model.part_generator
    for name, param in [("stn last fc", gen.stn.features[-1].weight), ("stn last fc bias", gen.stn.features[-1].bias),
                        ("denoiser out", gen.denoiser.net[-1].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # The last FC starts at weight 0 (stripes), so the conv is reached from the second step.
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    sum(model(batch).values()).backward()
    assert gen.stn.features[0].weight.grad.abs().sum() > 0
    assert gen.denoiser.net[0].weight.grad.abs().sum() > 0
    assert model.heads.classifier.num_classes == 4 and model.part_classifiers[1].num_classes == 4


def test_cluster_features_are_deterministic_and_normalised():
    model = build_model(_demo_cfg()).eval()
    images = torch.rand(4, 3, 64, 32)
    a, b = model.cluster_features({"images": images}), model.cluster_features({"images": images})
    assert torch.equal(a["parts"], b["parts"]) and a["parts"].shape == (4, 3, model.backbone.out_channels)
    assert torch.allclose(a["parts"].norm(dim=2), torch.ones(4, 3), atol=1e-5)

import logging
import os

import torch
import torch.nn as nn

from ...utils.registry import Registry

BACKBONE_REGISTRY = Registry("BACKBONE")
logger = logging.getLogger(__name__)


def build_backbone(cfg):
    """Build ``MODEL.BACKBONE.NAME``; every backbone returns a feature map and exposes
    ``out_channels``."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME).from_config(cfg)


class Backbone(nn.Module):
    """Base of the registered backbones: ``__init__(last_stride, pretrained, pretrain_path)``,
    ``body`` maps images to a feature map of ``out_channels`` channels. ``imagenet_url`` names
    torchvision's file of its ImageNet weights (None: it has none)."""

    out_channels = 0
    imagenet_url = None

    @classmethod
    def from_config(cls, cfg):
        b = cfg.MODEL.BACKBONE
        return cls(b.LAST_STRIDE, b.PRETRAIN, b.PRETRAIN_PATH)

    def forward(self, x):
        return self.body(x)


def pretrained_problem(path, torchvision_url):
    """(the weights file to load, None) or (None, a one-line problem naming the key to set).
    ``path`` when given, else torchvision's cached download of ``torchvision_url``; never
    downloads. The pre-run check and the backbones give the same message."""
    if path:
        if not os.path.isfile(path):
            return None, f"MODEL.BACKBONE.PRETRAIN_PATH '{path}' does not exist"
        if not os.access(path, os.R_OK):
            return None, f"MODEL.BACKBONE.PRETRAIN_PATH '{path}' is not readable"
        return path, None
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(torchvision_url))
    if not os.path.isfile(cached):
        return None, (
            f"MODEL.BACKBONE.PRETRAIN is True but no ImageNet weights file is here: put {torchvision_url} at "
            f"{cached} (torchvision's cache, moved by TORCH_HOME) or set MODEL.BACKBONE.PRETRAIN_PATH to a local "
            "copy; MODEL.BACKBONE.PRETRAIN False trains from random initialisation instead")
    return cached, None


def backbone_weight_problems(cfg):
    """What is wrong with the backbone's name or ImageNet weights, one line each, without
    building it."""
    b = cfg.MODEL.BACKBONE
    if b.NAME not in BACKBONE_REGISTRY:
        return [f"MODEL.BACKBONE.NAME: no backbone named '{b.NAME}' (registered: {', '.join(BACKBONE_REGISTRY.names())})"]
    url = BACKBONE_REGISTRY.get(b.NAME).imagenet_url
    if not b.PRETRAIN:
        return []
    if url is None:
        return [f"MODEL.BACKBONE.PRETRAIN is True but {b.NAME} has no ImageNet weights: set it False"]
    return [problem for problem in [pretrained_problem(b.PRETRAIN_PATH, url)[1]] if problem]


def find_pretrained_file(path, torchvision_url):
    """The weights file to load (see ``pretrained_problem``); a missing file is a FileNotFoundError."""
    found, problem = pretrained_problem(path, torchvision_url)
    if problem:
        raise FileNotFoundError(problem)
    return found


def load_pretrained(module, path, strip_prefix=""):
    """Load an ImageNet state dict into ``module``; classifier keys may be absent, any other
    missing key is an error (a wrong file must not pass as a silent random init)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k[len(strip_prefix):]: v for k, v in state.items() if k.startswith(strip_prefix)}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{path} does not fit this backbone: missing {result.missing_keys[:5]} ...")
    logger.info(f"Loaded ImageNet weights from {path}")

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
    ``body`` maps images to a feature map of ``out_channels`` channels."""

    out_channels = 0

    @classmethod
    def from_config(cls, cfg):
        b = cfg.MODEL.BACKBONE
        return cls(b.LAST_STRIDE, b.PRETRAIN, b.PRETRAIN_PATH)

    def forward(self, x):
        return self.body(x)


def find_pretrained_file(path, torchvision_url):
    """The weights file to load: ``path`` when given, else torchvision's cached download of
    ``torchvision_url``. Never downloads; a missing file is a clear error."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.BACKBONE.PRETRAIN_PATH '{path}' does not exist")
        return path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(torchvision_url))
    if not os.path.isfile(cached):
        raise FileNotFoundError(
            f"ImageNet weights were asked for (MODEL.BACKBONE.PRETRAIN True) but no file was given "
            f"and torchvision's cache has none at {cached}. Set MODEL.BACKBONE.PRETRAIN_PATH to a "
            f"local copy of {torchvision_url}, put it in that cache, or set MODEL.BACKBONE.PRETRAIN False "
            "to train from random initialisation."
        )
    return cached


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

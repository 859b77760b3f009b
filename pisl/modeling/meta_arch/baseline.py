import torch
import torch.nn as nn

from ..backbones import build_backbone
from ..heads import HEAD_REGISTRY
from ..losses import build_losses, compute_losses
from .build import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register()
class Baseline(nn.Module):
    """Backbone -> head -> losses. ``forward(batch)`` returns a dict of weighted losses in
    training and L2-normalised features in eval. It normalises its own input (images in [0, 1])."""

    def __init__(self, backbone, heads, losses, pixel_mean, pixel_std):
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.losses = losses
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg, num_classes):
        backbone = build_backbone(cfg)
        heads = HEAD_REGISTRY.get(cfg.MODEL.HEADS.NAME).from_config(cfg, backbone.out_channels, num_classes)
        return cls(backbone, heads, build_losses(cfg), cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD)

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess(self, batch):
        return (batch["images"].to(self.device, non_blocking=True) - self.pixel_mean) / self.pixel_std

    def forward(self, batch):
        outputs = self.heads(self.backbone(self.preprocess(batch)))
        if not self.training:
            return outputs
        return compute_losses(self.losses, outputs, batch)

    @torch.no_grad()
    def cluster_features(self, batch):
        """Features used to build pseudo-labels (called in eval mode). Methods with part
        features return more keys; ``global`` is always there."""
        return {"global": self(batch)}

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.registry import Registry

HEAD_REGISTRY = Registry("HEAD")


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling with a learnable exponent p (p=1: average, p->inf: max)."""

    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


def build_pooling(name, gem_p=3.0):
    if name == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if name == "gem":
        return GeneralizedMeanPooling(gem_p)
    raise KeyError(f"Unknown pooling '{name}', expected 'avg' or 'gem'")


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d with weight 1, bias 0 and the bias frozen (the BN-neck of re-ID baselines)."""

    def __init__(self, dim):
        super().__init__(dim)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class ResizableClassifier(nn.Module):
    """A bias-free linear classifier whose class count can change between epochs (clustering
    finds a new number of pseudo-identities each time). ``logit_scale`` > 0 makes it a cosine
    classifier, ``logit_scale * cos(x, w_c)``: its logits no longer grow with the feature norm."""

    def __init__(self, in_dim, num_classes, logit_scale=0.0):
        super().__init__()
        self.in_dim, self.logit_scale = in_dim, logit_scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=0.001)

    @property
    def num_classes(self):
        return self.weight.shape[0]

    def reset(self, weight):
        """Replace the rows by ``weight`` (C x D), e.g. L2-normalised cluster centroids. The
        Parameter object is kept, so optimizers keep referring to it; its optimizer state must
        be reset by the caller when the shape changes (see engine.hooks.reset_optimizer_state)."""
        self.weight.data = weight.detach().to(self.weight.device, self.weight.dtype).clone()

    def forward(self, x):
        if self.logit_scale > 0:
            return self.logit_scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        return F.linear(x, self.weight)


@HEAD_REGISTRY.register()
class EmbeddingHead(nn.Module):
    """Pooling -> BN neck -> (classifier). In training it returns a dict with the BN-neck
    feature (``features``) and ``logits`` when it has classes; in eval the L2-normalised
    BN-neck feature."""

    def __init__(self, in_channels, num_classes=0, pool="avg", gem_p=3.0):
        super().__init__()
        self.pool = build_pooling(pool, gem_p)
        self.neck = BNNeck(in_channels)
        self.classifier = ResizableClassifier(in_channels, num_classes) if num_classes > 0 else None

    @classmethod
    def from_config(cls, cfg, in_channels, num_classes):
        h = cfg.MODEL.HEADS
        return cls(in_channels, num_classes, h.POOL, h.GEM_P)

    def forward(self, feature_map):
        pooled = self.pool(feature_map).flatten(1)
        feat = self.neck(pooled)
        if not self.training:
            return F.normalize(feat, dim=1)
        out = {"pooled": pooled, "features": feat}
        if self.classifier is not None:
            out["logits"] = self.classifier(feat)
        return out

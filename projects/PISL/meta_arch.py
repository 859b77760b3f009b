import torch
import torch.nn as nn
import torch.nn.functional as F

from pisl.cluster import cluster_centroids
from pisl.modeling.heads import BNNeck, ResizableClassifier
from pisl.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from .part_generators import PART_GENERATOR_REGISTRY


@META_ARCH_REGISTRY.register()
class PISL(Baseline):
    """Global branch (Baseline's backbone + BN-neck head) plus P parts from a registered part
    generator, each with its own BN neck and classifier. Parts never pass through the global
    BN neck, so its statistics (used at test time) see global features only.

    Training outputs: ``features``/``logits`` (global), ``part_features`` (B x P x C, BN
    outputs), ``part_logits`` (list of P), and the diffusion terms of the generator.
    Eval: the L2-normalised global feature (or global + parts with ``test_with_parts``).
    """

    def __init__(self, backbone, heads, losses, pixel_mean, pixel_std, part_generator, num_parts, test_with_parts=False):
        super().__init__(backbone, heads, losses, pixel_mean, pixel_std)
        c = backbone.out_channels
        self.part_generator = part_generator
        self.part_necks = nn.ModuleList(BNNeck(c) for _ in range(num_parts))
        self.part_classifiers = nn.ModuleList(ResizableClassifier(c, 1) for _ in range(num_parts))
        self.test_with_parts = test_with_parts

    @classmethod
    def from_config(cls, cfg, num_classes):
        base = Baseline.from_config(cfg, max(num_classes, 1))
        generator = PART_GENERATOR_REGISTRY.get(cfg.PISL.PART_GENERATOR).from_config(cfg, base.backbone.out_channels)
        return cls(base.backbone, base.heads, base.losses, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, generator,
                   cfg.PISL.NUM_PARTS, cfg.PISL.TEST_WITH_PARTS)

    def _part_necks(self, parts):
        return torch.stack([neck(p) for neck, p in zip(self.part_necks, parts.unbind(1))], dim=1)

    def forward(self, batch):
        fmap = self.backbone(self.preprocess(batch))
        if not self.training:
            feats = self.heads(fmap)
            if not self.test_with_parts:
                return feats
            parts = self.part_features(fmap, feats)
            return F.normalize(torch.cat([feats, parts.flatten(1)], dim=1), dim=1)
        outputs = self.heads(fmap)
        generated = self.part_generator(fmap, outputs["features"])
        parts = generated.pop("parts")
        outputs.update(generated)
        outputs["part_features"] = self._part_necks(parts)
        outputs["part_logits"] = [clf(f) for clf, f in zip(self.part_classifiers, outputs["part_features"].unbind(1))]
        return {name: loss(outputs, batch) for name, loss in self.losses.items()}

    def part_features(self, fmap, global_feature):
        """L2-normalised part features (B x P x C) in eval mode."""
        parts = self.part_generator(fmap, global_feature)["parts"]
        return F.normalize(self._part_necks(parts), dim=2)

    @torch.no_grad()
    def cluster_features(self, batch):
        fmap = self.backbone(self.preprocess(batch))
        feats = self.heads(fmap)
        return {"global": feats, "parts": self.part_features(fmap, feats)}

    def on_pseudo_labels(self, state):
        """Classifiers re-sized to this epoch's clusters and set to the L2-normalised centroids."""
        keep = state.clustered
        labels = state.labels[keep]
        self.heads.classifier.reset(cluster_centroids(state.features["global"][keep], labels))
        for p, clf in enumerate(self.part_classifiers):
            clf.reset(cluster_centroids(state.features["parts"][keep][:, p], labels))

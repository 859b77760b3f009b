import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from pisl.cluster import cluster_centroids
from pisl.modeling.heads import BNNeck, ResizableClassifier
from pisl.modeling.losses import compute_losses
from pisl.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from .box_stats import box_metrics, box_table, part_box_picture, part_boxes
from .part_generators import PART_GENERATOR_REGISTRY

logger = logging.getLogger(__name__)


def global_with_parts(global_feature, parts):
    """The ``global+parts`` test feature: the global feature (B x C) and the L2-normalised part
    features (B x P x C), concatenated and L2-normalised."""
    return F.normalize(torch.cat([global_feature, parts.flatten(1)], dim=1), dim=1)


@META_ARCH_REGISTRY.register()
class PISL(Baseline):
    """Global branch (Baseline's backbone + BN-neck head) plus P parts from a registered part
    generator, each with its own BN neck and classifier. Parts never pass through the global
    BN neck, so its statistics (used at test time) see global features only.

    Training outputs: ``features``/``logits`` (global), ``part_features`` (B x P x C, BN
    outputs), ``part_logits`` (list of P), and the diffusion terms of the generator.
    Eval: the L2-normalised global feature (or global + parts with ``test_with_parts``); the
    evaluation also reports the other one with ``evaluate_both`` (``test_features``).
    """

    def __init__(self, backbone, heads, losses, *, pixel_mean, pixel_std, part_generator, num_parts,
                 test_with_parts=False, evaluate_both=True, part_logit_scale=0.0, num_classes=1):
        super().__init__(backbone, heads, losses, pixel_mean, pixel_std)
        self.evaluate_both = evaluate_both
        c = backbone.out_channels
        self.part_generator = part_generator
        self.part_necks = nn.ModuleList(BNNeck(c) for _ in range(num_parts))
        # Sized to the labelled identities in a supervised run; re-sized to the clusters of every
        # epoch (on_pseudo_labels) in an unsupervised one.
        self.part_classifiers = nn.ModuleList(ResizableClassifier(c, num_classes, part_logit_scale) for _ in range(num_parts))
        self.test_with_parts = test_with_parts

    @classmethod
    def from_config(cls, cfg, num_classes):
        classes = max(num_classes, 1)  # 1 until the first clustering in an unsupervised run
        base = Baseline.from_config(cfg, classes)
        generator = PART_GENERATOR_REGISTRY.get(cfg.PISL.PART_GENERATOR).from_config(cfg, base.backbone.out_channels)
        return cls(base.backbone, base.heads, base.losses, pixel_mean=cfg.MODEL.PIXEL_MEAN,
                   pixel_std=cfg.MODEL.PIXEL_STD, part_generator=generator, num_parts=cfg.PISL.NUM_PARTS,
                   test_with_parts=cfg.PISL.TEST_WITH_PARTS, evaluate_both=cfg.PISL.EVALUATE_BOTH,
                   part_logit_scale=cfg.PISL.PSC.PART_LOGIT_SCALE, num_classes=classes)

    def param_groups(self, cfg):
        """Optimizer groups: the part generator (STN and denoiser) with its own weight decay
        (``PISL.DIFFUSION.WEIGHT_DECAY``), everything else with the SOLVER's."""
        generator = set(map(id, self.part_generator.parameters()))
        return [{"params": [p for p in self.parameters() if id(p) not in generator]},
                {"params": list(self.part_generator.parameters()), "weight_decay": cfg.PISL.DIFFUSION.WEIGHT_DECAY}]

    def part_necks_of(self, parts):
        """Each part's BN neck on its pooled feature (B x P x C in, B x P x C out)."""
        return torch.stack([neck(p) for neck, p in zip(self.part_necks, parts.unbind(1))], dim=1)

    def unit_part_features(self, parts):
        """The test-time part features: each part's neck output, L2-normalised (B x P x C)."""
        return F.normalize(self.part_necks_of(parts), dim=2)

    def encode(self, batch):
        """(images, feature map, head output) of a batch: the preprocessed input (the image
        person cue reads it), the backbone's map and the global head's output (in eval mode
        the global feature)."""
        images = self.preprocess(batch)
        fmap = self.backbone(images)
        return images, fmap, self.heads(fmap)

    def forward(self, batch):
        if not self.training:
            return next(iter(self.test_features(batch).values()))
        images, fmap, outputs = self.encode(batch)
        generated = self.part_generator(fmap, outputs["features"], images)
        parts = generated.pop("parts")
        outputs.update(generated)
        outputs["part_features"] = self.part_necks_of(parts)
        outputs["part_logits"] = [clf(f) for clf, f in zip(self.part_classifiers, outputs["part_features"].unbind(1))]
        return compute_losses(self.losses, outputs, batch)

    def part_features(self, fmap, global_feature, images):
        """L2-normalised part features (B x P x C) in eval mode, and their boxes: {"thetas":
        B x 6P, plus "anchors" (B x 6P) where the generator's boxes are offsets from anchors}.
        ``images``: the preprocessed batch that ``fmap`` came from (the image person cue reads it)."""
        generated = self.part_generator(fmap, global_feature, images)
        parts = generated.pop("parts")
        return self.unit_part_features(parts), generated

    @torch.no_grad()
    def test_features(self, batch):
        """The eval feature first (``global``, or ``global+parts`` with ``test_with_parts``),
        then, with ``evaluate_both``, the other one: one backbone pass for both."""
        images, fmap, global_feature = self.encode(batch)
        out = {"global": global_feature}
        if self.test_with_parts or self.evaluate_both:
            parts, _ = self.part_features(fmap, out["global"], images)
            out["global+parts"] = global_with_parts(out["global"], parts)
        if self.test_with_parts:
            out = {"global+parts": out["global+parts"], **({"global": out["global"]} if self.evaluate_both else {})}
        return out

    @torch.no_grad()
    def cluster_features(self, batch):
        images, fmap, feats = self.encode(batch)
        parts, boxes = self.part_features(fmap, feats, images)
        return {"global": feats, "parts": parts, **boxes}

    def describe_boxes(self, features, images, title=None, num_images=16):
        """(the "Part boxes" table, the part-box picture) of ``features`` (``cluster_features`` of
        ``images``, PIL images as the model saw them; with their ``misalignment`` where the
        images were re-framed, see ``pisl.evaluation.with_misalignment``): what the PartBoxHook
        and ``tools/visualize.py parts`` show. The picture needs matplotlib."""
        thetas, anchors, at_bound = part_boxes(features, self.part_generator)
        applied = features.get("misalignment")
        table = box_table(thetas, anchors, at_bound, None if applied is None else applied.numpy())
        picture = part_box_picture(images, thetas.numpy(), num_images, title, anchors=anchors)
        return table, picture

    def on_pseudo_labels(self, state):
        """Classifiers re-sized to this epoch's clusters and set to the L2-normalised centroids;
        the part boxes' statistics are logged, and go to the epoch's metrics."""
        boxes = (*part_boxes(state.features, self.part_generator), state.misalignment)
        logger.info(f"Part boxes of the {len(boxes[0])} training images before epoch {state.epoch}:\n{box_table(*boxes)}")
        state.metrics.update(box_metrics(*boxes))
        keep = state.clustered
        labels = state.labels[keep]
        self.heads.classifier.reset(cluster_centroids(state.features["global"][keep], labels))
        for p, clf in enumerate(self.part_classifiers):
            clf.reset(cluster_centroids(state.features["parts"][keep][:, p], labels))

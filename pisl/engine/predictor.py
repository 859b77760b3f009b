"""Features of a trained model for your own images: config + weights -> one row per image."""
import logging
import os

import torch

from ..config import load_config
from ..data import build_transforms
from ..data.common import read_image
from ..modeling import build_model
from ..utils.checkpoint import load_model_weights

logger = logging.getLogger(__name__)


class Predictor:
    """The model's eval feature (L2-normalised; for PISL global, or global+parts with
    PISL.TEST_WITH_PARTS) for PIL images, image paths or a float tensor N x 3 x H x W in
    [0, 1] at INPUT.SIZE_TEST. Images are resized with the test transform and run in batches of
    TEST.IMS_PER_BATCH on MODEL.DEVICE; the result is a CPU float tensor.

        predictor = Predictor.from_config_file("projects/PISL/configs/market.yml", "model_final.pth")
        feats = predictor([Image.open("a.jpg"), "b.jpg"])
        similarity = feats @ feats.t()
    """

    def __init__(self, cfg, weights=None):
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        weights = weights or cfg.MODEL.WEIGHTS
        if not weights:
            raise ValueError("Predictor needs trained weights: pass weights= or set MODEL.WEIGHTS")
        load_model_weights(self.model, weights, partial=cfg.MODEL.PARTIAL_LOAD)
        self.transform = build_transforms(cfg, is_train=False)
        self.batch_size = cfg.TEST.IMS_PER_BATCH

    @classmethod
    def from_config_file(cls, config_file, weights=None, opts=()):
        return cls(load_config(config_file, opts), weights)

    def to_tensor(self, images):
        """A list of PIL images or paths -> N x 3 x H x W in [0, 1] (the test transform)."""
        return torch.stack([self.transform(read_image(im) if isinstance(im, (str, os.PathLike)) else im.convert("RGB"))
                            for im in images])

    @torch.no_grad()
    def __call__(self, images):
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start: start + self.batch_size]
            tensor = batch if torch.is_tensor(batch) else self.to_tensor(batch)
            chunks.append(self.model({"images": tensor}).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0)

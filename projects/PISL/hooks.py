"""PISL's training hook: pictures of the part boxes during training."""
import logging
import os

import numpy as np
import torch
from torch.utils.data import default_collate

from pisl.data import build_dataset, image_dataset
from pisl.engine.hooks import HOOK_REGISTRY
from pisl.engine.trainer import HookBase
from pisl.evaluation import with_misalignment
from pisl.utils import comm
from pisl.utils.checkpoint import unwrap


logger = logging.getLogger(__name__)


@HOOK_REGISTRY.register()
class PartBoxHook(HookBase):
    """After the epochs in ``PISL.BOX_PICTURE.EPOCHS`` (-1: the last), draws the part boxes of
    ``NUM_IMAGES`` fixed test images (the first test set's gallery) into
    ``OUTPUT_DIR/part_boxes/epoch_NNN.png`` and logs their box statistics. Main process only:
    the model runs on these few images without any collective, so DDP ranks do not wait."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.epochs, self.num_images = list(cfg.PISL.BOX_PICTURE.EPOCHS), cfg.PISL.BOX_PICTURE.NUM_IMAGES
        self.folder = os.path.join(cfg.OUTPUT_DIR, "part_boxes")
        self.written = []

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg)

    def before_train(self):
        if not self.epochs:
            return
        # Built on every process: a dataset may synchronise them (the synthetic one is drawn
        # once, by rank 0, behind a barrier).
        gallery = build_dataset(self.cfg.DATASETS.TESTS[0], self.cfg).gallery
        order = np.random.default_rng(0).permutation(len(gallery))[: self.num_images]
        self.items = [gallery[i] for i in sorted(order)]

    def _due(self):
        last = self.trainer.max_epoch - 1
        return self.trainer.epoch in {last if e == -1 else e for e in self.epochs}

    def after_epoch(self):
        if not comm.is_main_process() or not self.epochs or not self._due():
            return
        try:
            from pisl import visualization as vis

            vis.pyplot()
        except ImportError:
            logger.info("Part-box pictures need matplotlib (pip install -e \".[vis]\"); none drawn")
            self.epochs = []
            return
        model = unwrap(self.trainer.model)
        model.eval()
        dataset = image_dataset(self.cfg, self.items)
        batch = default_collate([dataset[i] for i in range(len(dataset))])
        with torch.no_grad():
            features = {k: v.cpu() for k, v in with_misalignment(model.cluster_features)(batch).items()}
        epoch = self.trainer.epoch
        os.makedirs(self.folder, exist_ok=True)
        table, picture = model.describe_boxes(features, [dataset.framed(i) for i in range(len(dataset))],
                                              f"epoch {epoch}, {len(self.items)} test images", len(self.items))
        path = vis.save(picture, os.path.join(self.folder, f"epoch_{epoch:03d}.png"))
        self.written.append(path)
        logger.info(f"Part boxes of {len(self.items)} test images after epoch {epoch}, drawn in {path}:\n{table}")

    def after_train(self):
        if self.written:
            logger.info(f"Part-box pictures: {', '.join(self.written)}")

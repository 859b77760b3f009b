"""The diagnostics' sample: random gallery images of a config's first test set, encoded."""
import numpy as np
import torch

from pisl.data import build_dataset, build_test_loader


def encode_gallery(model, cfg, num_images, seed):
    """(images, feature maps, global features) of ``num_images`` gallery images of the first test
    set drawn with ``seed``, framed as the config frames them (misaligned or not)."""
    dataset = build_dataset(cfg.DATASETS.TESTS[0], cfg)
    order = np.random.default_rng(seed).permutation(len(dataset.gallery))[:num_images]
    with torch.no_grad():
        encoded = [model.encode(batch) for batch in build_test_loader(cfg, [dataset.gallery[i] for i in order])]
    return tuple(torch.cat(column) for column in zip(*encoded))

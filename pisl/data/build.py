"""Loaders for training (identity-sampled, augmented) and testing (ordered, plain)."""
import torch
from torch.utils.data import DataLoader

from ..utils import comm
from .common import ImageListDataset
from .misalign import Misalignment
from .samplers import SAMPLER_REGISTRY, InferenceSampler
from .transforms import build_transforms


def build_train_loader(cfg, items, sampler_name=None):
    """A loader over ``items`` ((path, label, camid) tuples) that yields exactly
    ``SOLVER.ITERS_PER_EPOCH`` batches per epoch; call ``set_loader_epoch`` before each epoch."""
    dataset = ImageListDataset(items, build_transforms(cfg, is_train=True), Misalignment.from_config(cfg))
    sampler = SAMPLER_REGISTRY.get(sampler_name or cfg.DATALOADER.SAMPLER)(
        targets=[pid for _, pid, _ in items],
        camids=[cam for _, _, cam in items],
        batch_size=cfg.SOLVER.IMS_PER_BATCH,
        num_instances=cfg.DATALOADER.NUM_INSTANCE,
        num_iters=cfg.SOLVER.ITERS_PER_EPOCH,
        seed=cfg.SEED,
    )
    generator = torch.Generator()
    return DataLoader(
        dataset,
        batch_size=cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        persistent_workers=False,
    )


def set_loader_epoch(loader, epoch, seed):
    """Make the epoch's index stream and its workers' augmentation seeds depend only on
    (seed, epoch)."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(seed * 100003 + epoch)


def image_dataset(cfg, items):
    """``items`` as the evaluation and clustering see them: test transforms, and the config's
    misalignment (``INPUT.MISALIGN``)."""
    return ImageListDataset(items, build_transforms(cfg, is_train=False), Misalignment.from_config(cfg))


def build_test_loader(cfg, items):
    """An ordered loader over this process's share of ``items`` (all of them with one process);
    ``evaluation.extract_features`` gathers the shares."""
    dataset = image_dataset(cfg, items)
    return DataLoader(
        dataset,
        batch_size=cfg.TEST.IMS_PER_BATCH,
        sampler=InferenceSampler(len(dataset)),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        pin_memory=torch.cuda.is_available(),
    )

import logging

from ...utils.env import resolve_device
from ...utils.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
logger = logging.getLogger(__name__)


def build_model(cfg, num_classes=0):
    """Build ``MODEL.META_ARCHITECTURE`` on ``MODEL.DEVICE``. ``num_classes`` is the training
    set's identity count (0 for unsupervised methods, whose classes come from clustering)."""
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).from_config(cfg, num_classes)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    logger.info(f"Model {cfg.MODEL.META_ARCHITECTURE}: {n_params:.2f} M parameters")
    return model

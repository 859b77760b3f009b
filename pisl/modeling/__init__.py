from .backbones import BACKBONE_REGISTRY, build_backbone
from .heads import HEAD_REGISTRY
from .losses import LOSS_REGISTRY
from .meta_arch import META_ARCH_REGISTRY, build_model

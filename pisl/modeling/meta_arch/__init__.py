from .baseline import Baseline
from .build import META_ARCH_REGISTRY, build_model

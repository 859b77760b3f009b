from .build import build_test_loader, build_train_loader, image_dataset, set_loader_epoch
from .common import ImageListDataset
from .misalign import Misalignment
from .datasets import DATASET_REGISTRY, build_dataset
from .samplers import SAMPLER_REGISTRY
from .transforms import build_transforms

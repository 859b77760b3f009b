from .build import BACKBONE_REGISTRY, build_backbone, find_pretrained_file, load_pretrained
from .mobilenet import MobileNetV2
from .resnet import ResNet50
from .small_cnn import SmallCNN

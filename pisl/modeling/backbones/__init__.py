from .build import BACKBONE_REGISTRY, backbone_weight_problems, build_backbone, find_pretrained_file, load_pretrained
from .mobilenet import MobileNetV2
from .resnet import ResNet50
from .small_cnn import SmallCNN

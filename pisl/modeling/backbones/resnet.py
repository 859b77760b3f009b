import torch.nn as nn
from torchvision.models import ResNet50_Weights, resnet50

from .build import BACKBONE_REGISTRY, Backbone, find_pretrained_file, load_pretrained


@BACKBONE_REGISTRY.register(name="resnet50")
class ResNet50(Backbone):
    """torchvision ResNet-50 up to layer4 (2048 channels), with an optional last stride of 1
    (feature map H/16 x W/16, as re-ID methods use)."""

    out_channels = 2048
    imagenet_url = ResNet50_Weights.IMAGENET1K_V1.url

    def __init__(self, last_stride=1, pretrained=False, pretrain_path=""):
        super().__init__()
        net = resnet50()
        if pretrained:
            load_pretrained(net, find_pretrained_file(pretrain_path, self.imagenet_url))
        if last_stride == 1:
            net.layer4[0].conv2.stride = (1, 1)
            net.layer4[0].downsample[0].stride = (1, 1)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)

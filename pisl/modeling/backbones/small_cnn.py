import torch.nn as nn

from .build import BACKBONE_REGISTRY, Backbone


def _block(c_in, c_out, stride):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


@BACKBONE_REGISTRY.register(name="small_cnn")
class SmallCNN(Backbone):
    """A 0.6 M-parameter VGG-style network (stride 16) that trains from scratch in minutes on a
    CPU: the backbone of the no-download demo and of fast tests, not of real experiments."""

    out_channels = 256

    def __init__(self, last_stride=1, pretrained=False, pretrain_path=""):
        super().__init__()
        if pretrained:
            raise ValueError("small_cnn has no pretrained weights: set MODEL.BACKBONE.PRETRAIN False")
        widths = (32, 64, 128, 256)
        layers, c_in = [], 3
        for i, width in enumerate(widths):
            layers.append(_block(c_in, width, 1 if (i == 3 and last_stride == 1) else 2))
            c_in = width
        self.body = nn.Sequential(*layers)

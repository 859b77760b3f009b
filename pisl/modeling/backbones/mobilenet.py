from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from .build import BACKBONE_REGISTRY, Backbone, find_pretrained_file, load_pretrained


@BACKBONE_REGISTRY.register(name="mobilenet_v2")
class MobileNetV2(Backbone):
    """torchvision MobileNetV2 (width 1.0) features, 1280 channels. ``last_stride=1`` removes
    the stride of its last down-sampling block (stride 16 instead of 32), like ResNet's."""

    out_channels = 1280
    imagenet_url = MobileNet_V2_Weights.IMAGENET1K_V1.url

    def __init__(self, last_stride=1, pretrained=False, pretrain_path=""):
        super().__init__()
        net = mobilenet_v2()
        if pretrained:
            # Files in torchvision's layout may lack classifier.* (e.g. a features-only export).
            load_pretrained(net.features, find_pretrained_file(pretrain_path, self.imagenet_url), "features.")
        if last_stride == 1:
            net.features[14].conv[1][0].stride = (1, 1)
        self.body = net.features

"""MobileNet-V1 (Howard et al. 2017) as mdistiller sizes it for ImageNet (mdistiller/models/imagenet/
mobilenetv1.py): width 1.0, a stride-2 3x3 stem to 32 channels, 13 depthwise-separable blocks to 1024 channels,
global average pooling and one linear layer; 4.23M parameters at 1000 classes. Module names follow mdistiller's
(`model.<i>`, `fc`), so its state dicts load as they are. Two departures, neither changing the arithmetic:
the pool is adaptive (mdistiller's AvgPool2d(7) is the same on 224 x 224 inputs, and this also runs on
smaller ones) and the ReLUs are not in place (a pre-activation tap must keep what it captured)."""
from __future__ import annotations

from torch import nn

from models.registry import register_model

# (out channels, stride) of the depthwise-separable blocks after the stem.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]
# mdistiller's four feature stages (its forward's feats): the outputs of model[3], [5], [11] and [13].
STAGE_INDICES = (3, 5, 11, 13)


def conv_bn(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def conv_dw(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                         nn.BatchNorm2d(in_channels), nn.ReLU(),
                         nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        layers, channels = [conv_bn(in_channels, 32, 2)], 32
        for out_channels, stride in BLOCKS:
            layers.append(conv_dw(channels, out_channels, stride))
            channels = out_channels
        self.model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(channels, num_classes)
        # mdistiller's feats (post-ReLU) and preact_feats (the block's last BN, before its ReLU).
        self.feature_stages = [f"model.{i}" for i in STAGE_INDICES]
        self.preact_stages = [f"model.{i}.4" for i in STAGE_INDICES]
        self.classifier_name = "fc"

    def forward(self, x):
        return self.fc(self.model(x).flatten(1))


@register_model("mobilenetv1")
def mobilenetv1(num_classes, input_shape=(3, 224, 224)):
    return MobileNetV1(num_classes, input_shape[0])

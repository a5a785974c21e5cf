"""ResNet-18/34/50 (He et al. 2016) adapted to 32x32 inputs as in RepDistiller's resnetv2: a 3x3 stride-1
stem without max-pooling, four stages of 64/128/256/512 (x4 for bottlenecks) channels."""
from __future__ import annotations

from torch import nn

from models.registry import register_model


class Basic(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes),
                                  nn.ReLU(), nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.relu_out = nn.ReLU()

    def forward(self, x):
        return self.relu_out(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                                  nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                                  nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = _shortcut(in_planes, out, stride)
        self.relu_out = nn.ReLU()

    def forward(self, x):
        return self.relu_out(self.body(x) + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNetCifar(nn.Module):
    def __init__(self, block: type, blocks: tuple[int, ...], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        planes, layers = 64, []
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            layer = []
            for i in range(count):
                layer.append(block(planes, width, 2 if stage > 0 and i == 0 else 1))
                planes = width * block.expansion
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(planes, num_classes)
        self.feature_stages = ["relu", "layer1", "layer2", "layer3", "layer4"]
        self.preact_stages = ["relu:input"] + [f"layer{i + 1}.{count - 1}.relu_out:input" for i, count in enumerate(blocks)]
        # The residual branch's last BatchNorm (not the shortcut's) describes each pre-activation, as in OFD.
        last_norm = len(block(1, 1).body) - 1
        self.preact_bn_stages = ["bn1"] + [f"layer{i + 1}.{count - 1}.body.{last_norm}" for i, count in enumerate(blocks)]
        self.classifier_name = "linear"

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(self.pool(x))


@register_model("resnet18_cifar")
def resnet18_cifar(num_classes, input_shape=(3, 32, 32)):
    return ResNetCifar(Basic, (2, 2, 2, 2), num_classes, input_shape[0])


@register_model("resnet34_cifar")
def resnet34_cifar(num_classes, input_shape=(3, 32, 32)):
    return ResNetCifar(Basic, (3, 4, 6, 3), num_classes, input_shape[0])


@register_model("resnet50_cifar")
def resnet50_cifar(num_classes, input_shape=(3, 32, 32)):
    return ResNetCifar(Bottleneck, (3, 4, 6, 3), num_classes, input_shape[0])

"""ShuffleNet V1 (Zhang et al. 2018, groups 3) and V2 (Ma et al. 2018, 1x) as RepDistiller sizes them for
CIFAR: a stride-1 stem and three stages whose first block halves the resolution."""
from __future__ import annotations

import torch
from torch import nn

from models.registry import register_model


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    return x.view(batch, groups, channels // groups, height, width).transpose(1, 2).reshape(batch, channels, height, width)


class ShuffleV1Block(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid = out_planes // 4
        self.first_groups = 1 if in_planes == 24 else groups  # the 24-channel stem is too thin to group
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU()
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu_out = nn.ReLU()

    def forward(self, x):
        out = channel_shuffle(self.relu(self.bn1(self.conv1(x))), self.first_groups)
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        residual = self.shortcut(x)
        return self.relu_out(torch.cat([out, residual], 1) if self.stride == 2 else out + residual)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, out_planes=(240, 480, 960), blocks=(4, 8, 4),
                 groups: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU()
        planes, layers = 24, []
        for width, count in zip(out_planes, blocks):
            layer = []
            for i in range(count):
                # The first block concatenates its pooled input, so its branch makes the rest of the width.
                layer.append(ShuffleV1Block(planes, width - planes if i == 0 else width, 2 if i == 0 else 1, groups))
                planes = width
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(planes, num_classes)
        # RepDistiller's grouping: stem, then each stage's output; the last block's relu_out input is the preact.
        self.feature_stages = ["relu", "layer1", "layer2", "layer3"]
        self.preact_stages = ["relu:input"] + [f"layer{i + 1}.{count - 1}.relu_out:input" for i, count in enumerate(blocks)]
        self.classifier_name = "linear"

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.linear(self.pool(self.layer3(self.layer2(self.layer1(x)))))


class ShuffleV2Block(nn.Module):
    """Stride 1: half the channels pass through, the other half go through 1x1 - dw 3x3 - 1x1 - ReLU.

    The branch's last ReLU is applied after the concatenation and shuffle, as `relu_out`: the passed half is
    already non-negative (every block and the stem end in a ReLU), so the output is unchanged, and the ReLU's
    input is RepDistiller's pre-activation of the block (passed half + un-activated branch)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
                                    nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
                                    nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half))
        self.relu_out = nn.ReLU()

    def forward(self, x):
        passed, transformed = x.chunk(2, dim=1)
        return self.relu_out(channel_shuffle(torch.cat([passed, self.branch(transformed)], 1), 2))


class ShuffleV2DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False),
                                  nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, mid, 1, bias=False),
                                  nn.BatchNorm2d(mid), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                                   nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                   nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())

    def forward(self, x):
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, out_channels=(116, 232, 464, 1024),
                 blocks=(3, 7, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU()
        planes, layers = 24, []
        for width, count in zip(out_channels[:3], blocks):
            layers.append(nn.Sequential(ShuffleV2DownBlock(planes, width), *[ShuffleV2Block(width) for _ in range(count)]))
            planes = width
        self.layer1, self.layer2, self.layer3 = layers
        self.conv2 = nn.Conv2d(planes, out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.relu2 = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(out_channels[3], num_classes)
        # Stem, then each stage's output; a stage ends in a stride-1 block, whose relu_out input is the pre-activation.
        self.feature_stages = ["relu", "layer1", "layer2", "layer3"]
        self.preact_stages = ["relu:input"] + [f"layer{i + 1}.{count}.relu_out:input" for i, count in enumerate(blocks)]
        self.classifier_name = "linear"
        # RepDistiller's get_feat_modules (feature pre-training of AB and FSP): not the last conv2 / bn2
        self.feature_modules = ["conv1", "bn1", "layer1", "layer2", "layer3"]

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(self.pool(self.relu2(self.bn2(self.conv2(x)))))


@register_model("shufflenetv1")
def shufflenetv1(num_classes, input_shape=(3, 32, 32)):
    return ShuffleNetV1(num_classes, input_shape[0])


@register_model("shufflenetv2")
def shufflenetv2(num_classes, input_shape=(3, 32, 32)):
    return ShuffleNetV2(num_classes, input_shape[0])

"""CIFAR ResNets as RepDistiller (Tian et al. 2020) and mdistiller size them: a 3x3 stem and three stages
of basic blocks, depth = 6n + 2; the "x4" variants widen every stage 4x (32/64/128/256 channels).

`shortcut` picks the projection where a block changes width or resolution (He et al. 2016's options):
"B" (default; RepDistiller's and mdistiller's resnet.py) a 1x1 convolution + BatchNorm; "A" (the
semiparametric-distillation code's models/resnet_cifar.py, its teachers) no parameters: the input subsampled
by the block's stride and zero-padded to the new width, half the new channels before and half after."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from models.registry import register_model

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride, self.before = stride, (planes - in_planes) // 2
        self.after = planes - in_planes - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.before, self.after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels=({self.before}, {self.after})"


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = ZeroPadShortcut(in_planes, planes, stride) if shortcut == "A" else \
                nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        # Its own module (not in place) so a pre-hook sees the pre-activation sum.
        self.relu_out = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu_out(out + residual)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3,
                 shortcut: str = "B") -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"CIFAR ResNet shortcut must be 'A' (zero padding, the semiparametric code's) or 'B' "
                              f"(1x1 conv + BN, RepDistiller's), got {shortcut!r}; set the model's shortcut: B")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        layers, planes = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            stride = 1 if stage == 0 else 2
            layer = [BasicBlock(planes, width, stride, shortcut)]
            layer += [BasicBlock(width, width) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*layer))
            planes = width
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(planes, num_classes)
        # RepDistiller's feature list: stem (after ReLU), then each stage's output.
        self.feature_stages = ["relu", "layer1", "layer2", "layer3"]
        self.preact_stages = ["relu:input"] + [f"layer{i}.{blocks - 1}.relu_out:input" for i in (1, 2, 3)]
        # The residual branch's last BatchNorm (not the shortcut's) describes each pre-activation, as in OFD.
        self.preact_bn_stages = ["bn1"] + [f"layer{i}.{blocks - 1}.bn2" for i in (1, 2, 3)]
        self.classifier_name = "fc"
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    @register_model(name)
    def build(num_classes, input_shape=(3, 32, 32), shortcut="B"):
        return CifarResNet(depth, widths, num_classes, input_shape[0], shortcut)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))

"""Wide ResNets (Zagoruyko & Komodakis 2016) as RepDistiller sizes them for CIFAR: pre-activation basic
blocks, depth = 6n + 4, widths 16, 16k, 32k, 64k, no dropout."""
from __future__ import annotations

from torch import nn

from models.registry import register_model


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None if in_planes == planes else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        # A projection shortcut reads the activated input, an identity one the raw input.
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages, planes = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            stride = 1 if stage == 0 else 2
            stages.append(nn.Sequential(*[WideBlock(planes if i == 0 else width, width, stride if i == 0 else 1)
                                          for i in range(blocks)]))
            planes = width
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(planes, num_classes)
        # RepDistiller's and mdistiller's wrn.py feature list: the raw conv1, block1, block2, block3 outputs
        # (pre-activation blocks output un-activated sums). Their pre-activation list normalises each stage by
        # the BatchNorm that reads it next: conv1 itself, block2.0.bn1(block1), block3.0.bn1(block2), bn1(block3).
        self.feature_stages = ["conv1", "block1", "block2", "block3"]
        self.preact_stages = ["conv1", "block2.0.bn1", "block3.0.bn1", "bn1"]
        # Pre-activation blocks: the BatchNorm describing each stage's output is the one that normalises it next.
        self.preact_bn_stages = ["block1.0.bn1", "block2.0.bn1", "block3.0.bn1", "bn1"]
        self.classifier_name = "fc"
        # RepDistiller's get_feat_modules (feature pre-training of AB and FSP): the final bn1 is left out
        self.feature_modules = ["conv1", "block1", "block2", "block3"]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn1(x))))


def _register(depth: int, widen: int) -> None:
    @register_model(f"wrn_{depth}_{widen}")
    def build(num_classes, input_shape=(3, 32, 32)):
        return WideResNet(depth, widen, num_classes, input_shape[0])


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen)

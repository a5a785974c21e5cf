"""Pre-activation ResNet for CIFAR (He et al., ECCV 2016, "Identity Mappings in Deep Residual Networks"), as
the fidelity paper (Stanton et al., 2021; code gnosis) uses it: a 3x3 stem, three stages of pre-activation
basic blocks (BN-ReLU-conv-BN-ReLU-conv plus the shortcut; a bare 1x1 convolution where the shape changes),
depth = 6n + 2, a final BN-ReLU, average pooling and the classifier."""
from __future__ import annotations

from torch import nn

from models.registry import register_model


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PreResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers, planes = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            stride = 1 if stage == 0 else 2
            layers.append(nn.Sequential(PreActBlock(planes, width, stride),
                                        *[PreActBlock(width, width) for _ in range(blocks - 1)]))
            planes = width
        self.layer1, self.layer2, self.layer3 = layers
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(planes, num_classes)
        # As in the WRN: stage outputs are pre-activation sums (each is activated by the next block's own
        # BN-ReLU), so they serve as both the feature stages and the pre-activation taps; the deepest stage is
        # the final BN-ReLU. The BN that normalises each of them describes its distribution (OFD's margin).
        self.feature_stages = ["conv1", "layer1", "layer2", "relu"]
        self.preact_stages = ["conv1", "layer1", "layer2", "relu:input"]
        self.preact_bn_stages = ["layer1.0.bn1", "layer2.0.bn1", "layer3.0.bn1", "bn"]
        self.classifier_name = "fc"
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn(x))))


@register_model("preresnet20")
def preresnet20(num_classes, input_shape=(3, 32, 32)):
    return PreResNet(20, (16, 16, 32, 64), num_classes, input_shape[0])

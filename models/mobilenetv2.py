"""MobileNetV2 (Sandler et al. 2018) as RepDistiller sizes it for CIFAR ("mobile_half"): width 0.5,
expansion 6, a stride-2 stem, and a 1280-channel last convolution; initialised as RepDistiller's (models/init.py)."""
from __future__ import annotations

from torch import nn

from models.init import repdistiller_init
from models.registry import register_model

# (expansion, channels, blocks, stride) per group; expansion None = the network's `expansion`.
GROUPS = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2), (None, 96, 3, 1),
          (None, 160, 3, 2), (None, 320, 1, 1)]


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    # The ReLU is not in place: a pre-hook on it must keep the pre-activation it captured.
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(*conv_bn_relu(in_channels, hidden, 1),
                                  *conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                                  nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 0.5, expansion: int = 6) -> None:
        super().__init__()
        channels = int(32 * width)
        self.conv1 = nn.Sequential(*conv_bn_relu(in_channels, channels, 3, stride=2))
        groups = []
        for t, c, n, s in GROUPS:
            out = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, expansion if t is None else t))
                channels = out
            groups.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*groups)
        self.last_channels = 1280
        self.conv2 = nn.Sequential(*conv_bn_relu(channels, self.last_channels, 1))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(self.last_channels, num_classes)
        # RepDistiller's grouping: stem, then after groups 1, 2, 4 and 6. Block outputs are linear
        # bottlenecks (no ReLU), so each stage is its own pre-activation.
        self.feature_stages = ["conv1", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
        self.preact_stages = ["conv1.2:input", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
        self.classifier_name = "classifier"
        self.feature_modules = ["conv1", "blocks"]  # RepDistiller's get_feat_modules: not the last conv2
        repdistiller_init(self)

    def forward(self, x):
        return self.classifier(self.pool(self.conv2(self.blocks(self.conv1(x)))))


@register_model("mobilenetv2")
def mobilenetv2(num_classes, input_shape=(3, 32, 32), width=0.5, expansion=6):
    return MobileNetV2(num_classes, input_shape[0], width, expansion)

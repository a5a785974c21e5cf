"""Small models: MLPs, a 1-D CNN for mnist1d, the semiparametric KD paper's CNN5, and LeNet-5."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from models.registry import flat_dim, register_model


class MLP(nn.Module):
    """Flatten, then Linear-BN-ReLU blocks; each hidden block is a feature stage."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers, width = [nn.Flatten()], flat_dim(input_shape)
        for size in hidden:
            layers.append(nn.Sequential(nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()))
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.feature_stages = [f"features.{i + 1}" for i in range(len(hidden))]
        self.preact_stages = [f"features.{i + 1}.2:input" for i in range(len(hidden))]
        self.classifier_name = "classifier"

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("mlp")
def mlp(num_classes, input_shape, hidden=(256, 256)):
    return MLP(num_classes, input_shape, hidden)


@register_model("mlp1d")
def mlp1d(num_classes, input_shape=(1, 40), hidden=(100, 100)):
    # Deliberately small for mnist1d, where a CNN clearly beats it: room for a teacher to help.
    return MLP(num_classes, input_shape, hidden)


def _conv_block(conv: type, in_channels: int, out_channels: int, norm: type) -> nn.Sequential:
    return nn.Sequential(conv(in_channels, out_channels, 3, padding=1, bias=False), norm(out_channels), nn.ReLU())


class CNN1D(nn.Module):
    """Three Conv1d-BN-ReLU stages (32, 64, 128 channels), stride-2 pooling between, global average pool."""

    def __init__(self, num_classes: int, input_shape: Sequence[int] = (1, 40),
                 channels: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        stages, width = [], input_shape[0]
        for i, size in enumerate(channels):
            block = _conv_block(nn.Conv1d, width, size, nn.BatchNorm1d)
            if i > 0:
                block.insert(0, nn.MaxPool1d(2))
            stages.append(block)
            width = size
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)
        self.feature_stages = [f"stages.{i}" for i in range(len(channels))]
        self.preact_stages = [f"stages.{i}.{3 if i > 0 else 2}:input" for i in range(len(channels))]
        self.classifier_name = "classifier"

    def forward(self, x):
        return self.classifier(self.pool(self.stages(x)))


@register_model("cnn1d")
def cnn1d(num_classes, input_shape=(1, 40), channels=(32, 64, 128)):
    return CNN1D(num_classes, input_shape, channels)


@register_model("cnn1d_small")
def cnn1d_small(num_classes, input_shape=(1, 40), channels=(8, 16, 32)):
    """The narrow student of the mnist1d CNN pairs."""
    return CNN1D(num_classes, input_shape, channels)


class CNN5(nn.Module):
    """The CIFAR student of Dao et al. 2021 (semiparametric-distillation models/base_cnn.py CNN5): three stages
    conv3x3 (with bias) -> BatchNorm -> 2x2 max-pool -> ReLU of widths c, 2c, 4c, then Linear(4c * H/8 * W/8,
    4c) -> BatchNorm1d -> ReLU and a linear classifier; c = 32 there (0.36M parameters at 10 classes)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int] = (3, 32, 32), width: int = 32) -> None:
        super().__init__()
        channels, height, breadth = input_shape
        stages = []
        for size in (width, 2 * width, 4 * width):
            stages.append(nn.Sequential(nn.Conv2d(channels, size, 3, padding=1), nn.BatchNorm2d(size),
                                        nn.MaxPool2d(2), nn.ReLU()))
            channels = size
        self.stages = nn.Sequential(*stages)
        flat = channels * (height // 8) * (breadth // 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, channels), nn.BatchNorm1d(channels), nn.ReLU())
        self.classifier = nn.Linear(channels, num_classes)
        self.feature_stages = [f"stages.{i}" for i in range(3)]
        self.preact_stages = [f"stages.{i}.3:input" for i in range(3)]  # pooled BatchNorm output
        self.classifier_name = "classifier"

    def forward(self, x):
        return self.classifier(self.head(self.stages(x)))


@register_model("cnn5")
def cnn5(num_classes, input_shape=(3, 32, 32), width=32):
    return CNN5(num_classes, input_shape, width)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling: two conv stages, 120-84 fully connected."""

    def __init__(self, num_classes: int, input_shape: Sequence[int] = (3, 32, 32)) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Sequential(nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        flat = 16 * (height // 4) * (width // 4)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)
        self.feature_stages = ["conv1.1", "conv2.1"]  # before pooling, like the pre-activation taps
        self.preact_stages = ["conv1.1:input", "conv2.1:input"]
        self.classifier_name = "classifier"

    def forward(self, x):
        return self.classifier(self.fc(self.conv2(self.conv1(x))))


@register_model("lenet")
def lenet(num_classes, input_shape=(3, 32, 32)):
    return LeNet5(num_classes, input_shape)

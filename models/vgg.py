"""VGG with BatchNorm as RepDistiller adapts it to CIFAR: five conv blocks (conv layers with bias), max-pool
after the first three (and after the fourth too for 64x64 inputs), global average pooling, one linear
classifier. vgg8 has one conv per block. Initialised as RepDistiller's (models/init.py)."""
from __future__ import annotations

from torch import nn

from models.init import repdistiller_init
from models.registry import register_model

BLOCKS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


class VGG(nn.Module):
    def __init__(self, blocks: list[list[int]], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for widths in blocks:
            layers = []
            for width in widths:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            stages.append(nn.Sequential(*layers))
        self.block0, self.block1, self.block2, self.block3, self.block4 = stages
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(4)])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)
        # Each block's output after its last ReLU, and that ReLU's input as the pre-activation.
        self.feature_stages = [f"block{i}" for i in range(5)]
        self.preact_stages = [f"block{i}.{3 * len(widths) - 1}:input" for i, widths in enumerate(blocks)]
        self.classifier_name = "classifier"
        repdistiller_init(self)

    def forward(self, x):
        # RepDistiller's layout: 32x32 inputs keep block3 and block4 at 4x4; 64x64 ones pool once more.
        pool_after_block3 = x.shape[-2] == 64
        for i, block in enumerate((self.block0, self.block1, self.block2)):
            x = self.pools[i](block(x))
        x = self.block3(x)
        if pool_after_block3:
            x = self.pools[3](x)
        return self.classifier(self.pool(self.block4(x)))


def _register(name: str) -> None:
    @register_model(name)
    def build(num_classes, input_shape=(3, 32, 32)):
        return VGG(BLOCKS[name], num_classes, input_shape[0])


for _name in BLOCKS:
    _register(_name)

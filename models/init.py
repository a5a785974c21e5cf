"""RepDistiller's weight initialisation of its VGG and MobileNetV2 (models/vgg.py and models/mobilenetv2.py
`_initialize_weights`, the same in both): every convolution N(0, sqrt(2 / n)) with n = kernel height x width x
output channels (He's fan-out rule; depthwise convolutions too) and zero bias, BatchNorm weight 1 and bias 0,
every linear layer N(0, 0.01) with zero bias."""
from __future__ import annotations

import math

from torch import nn


def repdistiller_init(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)

"""Architectures by name. Importing the zoo modules registers them."""
from models import (cifar_resnet, lstm, mobilenetv1, mobilenetv2, preresnet, resnet_cifar_imagenet_style,  # noqa: F401
                    shufflenet, small, vgg, wrn)
from models.registry import FeatureSpec, build_model, feature_spec, model_names, register_model

__all__ = ["FeatureSpec", "build_model", "feature_spec", "model_names", "register_model"]

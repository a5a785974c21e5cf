"""Model registry: every architecture by name, each declaring its feature stages for hook-based taps.

Every registered constructor is called as fn(num_classes, input_shape, **kwargs) and returns a module that
sets `feature_stages`, `preact_stages` and `classifier_name` (see FeatureSpec).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn

from errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
TORCHVISION_PREFIX = "torchvision."
TIMM_PREFIX = "timm."  # any timm model (optional: models/timm_models.py)
HF_NAME = "hf"         # a Hugging Face classifier, model.source=<hub id or folder> (optional: models/hf_models.py)


def register_model(name: str):
    def decorate(constructor):
        if name in _REGISTRY:
            raise ValueError(f"model name '{name}' is registered twice")
        _REGISTRY[name] = constructor
        return constructor
    return decorate


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, input_shape: Sequence[int] = (3, 32, 32), **kwargs) -> nn.Module:
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    input_shape = tuple(int(d) for d in input_shape)
    if name.startswith(TORCHVISION_PREFIX):
        from models.torchvision_models import build_torchvision
        model = build_torchvision(name[len(TORCHVISION_PREFIX):], int(num_classes), input_shape, **kwargs)
    elif name.startswith(TIMM_PREFIX):
        from models.timm_models import build_timm
        model = build_timm(name[len(TIMM_PREFIX):], int(num_classes), input_shape, **kwargs)
    elif name == HF_NAME:
        from models.hf_models import build_hf
        model = build_hf(int(num_classes), input_shape, **kwargs)
    elif name in _REGISTRY:
        model = _REGISTRY[name](int(num_classes), input_shape, **kwargs)
    else:
        raise ConfigError(f"unknown model '{name}'; valid: {', '.join(model_names())}, or "
                          f"{TORCHVISION_PREFIX}<name> for any torchvision classifier, {TIMM_PREFIX}<name> for any timm "
                          f"model, or {HF_NAME} (with model.source) for a Hugging Face classifier")
    model.model_name = name
    model.num_classes = int(num_classes)
    return model


@dataclass(frozen=True)
class FeatureSpec:
    """Tap strings: "name" = output of submodule `name`; "name:input" = its first input.

    stages: the feature pyramid, shallow -> deep, post-activation spatial maps;
    preact_stages: the pre-activation tap of each stage (the stage's own tap where none exists);
    embedding: the penultimate vector, the classifier's input."""

    stages: tuple[str, ...]
    preact_stages: tuple[str, ...]
    embedding: str


def feature_spec(model: nn.Module) -> FeatureSpec:
    stages = tuple(getattr(model, "feature_stages", ()))
    preact = tuple(getattr(model, "preact_stages", ()) or stages)
    if len(preact) != len(stages):
        raise ValueError(f"{type(model).__name__} declares {len(stages)} stages but {len(preact)} preact taps")
    classifier = getattr(model, "classifier_name", None)
    if classifier is None:
        linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(model).__name__} declares no classifier_name and has no nn.Linear")
        classifier = linears[-1]
    return FeatureSpec(stages, preact, f"{classifier}:input")


def flat_dim(input_shape: Sequence[int]) -> int:
    return math.prod(input_shape)

"""Any torchvision classification model by name, with optional pretrained weights."""
from __future__ import annotations

import os
from typing import Sequence
from urllib.parse import urlparse

from torch import nn

from errors import ConfigError, UserError


class PretrainedWeightsUnavailable(UserError, RuntimeError):
    """torchvision could not fetch the requested weights (usually: no internet)."""


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no linear classifier to distill through")
    return linears[-1]


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _resolve_weights(name: str, weights: str):
    """"DEFAULT", "IMAGENET1K_V1" or a full "ResNet18_Weights.IMAGENET1K_V1" -> torchvision's weights entry."""
    import torchvision

    available = torchvision.models.get_model_weights(name)
    short = str(weights).rpartition(".")[2]
    if short not in available.__members__:  # __members__ also holds the DEFAULT alias
        raise ConfigError(f"torchvision model '{name}' has no weights '{weights}'; valid: "
                          f"{', '.join(available.__members__)}, or null for random initialisation")
    return available[short]


def _drop_auxiliary_heads(model: nn.Module) -> None:
    # Inception / GoogLeNet return (logits, aux) tuples in training mode; our models return logits only.
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for head in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, head):
                setattr(model, head, None)


def build_torchvision(name: str, num_classes: int, input_shape: Sequence[int], weights: str | None = None) -> nn.Module:
    import torch.hub
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ConfigError(f"unknown torchvision model '{name}'; valid: {', '.join(available)}")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ConfigError(f"torchvision.{name} takes RGB images (input_shape [3, H, W]), got {list(input_shape)}")
    if weights is None:
        model = torchvision.models.get_model(name, num_classes=num_classes)
    else:
        entry = _resolve_weights(name, weights)
        file_name = os.path.basename(urlparse(entry.url).path)
        cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
        try:
            model = torchvision.models.get_model(name, weights=entry)
        except Exception as error:  # noqa: BLE001 - offline downloads fail with many types (URLError, OSError, ...)
            raise PretrainedWeightsUnavailable(
                f"could not load torchvision weights {type(entry).__name__}.{entry.name} for {name} "
                f"({type(error).__name__}: {error}); download {entry.url} and put it at "
                f"{os.path.join(cache_dir, file_name)} (torch.hub.get_dir() is {torch.hub.get_dir()}; "
                f"set TORCH_HOME to move it), or use model.weights=null") from None
        classifier_name, classifier = _last_linear(model)
        if classifier.out_features != num_classes:  # a new head for the new task
            _replace(model, classifier_name, nn.Linear(classifier.in_features, num_classes))
    _drop_auxiliary_heads(model)
    model.classifier_name, _ = _last_linear(model)
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        model.feature_stages = ["layer1", "layer2", "layer3", "layer4"]
    else:
        # Other families have no common stage layout: only the embedding is declared.
        model.feature_stages = []
    # torchvision's blocks reuse one in-place ReLU, so no module input holds a pre-activation: stages stand in.
    model.preact_stages = list(model.feature_stages)
    return model

"""Any torchvision classification model by name, with optional pretrained weights."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from errors import ConfigError, UserError


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no linear classifier to distill through")
    return linears[-1]


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def build_torchvision(name: str, num_classes: int, input_shape: Sequence[int], weights: str | None = None) -> nn.Module:
    import torch.hub
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ConfigError(f"unknown torchvision model '{name}'; valid: {', '.join(available)}")
    if weights is None:
        model = torchvision.models.get_model(name, num_classes=num_classes)
    else:
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except Exception as error:  # offline: URLError / OSError from the download
            raise UserError(f"could not load torchvision weights {name}:{weights} ({type(error).__name__}: {error}); "
                            f"offline, put the weight file in {torch.hub.get_dir()}/checkpoints/ "
                            f"or use model.weights=null") from None
        classifier_name, classifier = _last_linear(model)
        if classifier.out_features != num_classes:  # a new head for the new task
            _replace(model, classifier_name, nn.Linear(classifier.in_features, num_classes))
    classifier_name, _ = _last_linear(model)
    model.classifier_name = classifier_name
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        # torchvision's blocks reuse one ReLU module, so stage outputs stand in as pre-activations.
        model.feature_stages = ["layer1", "layer2", "layer3", "layer4"]
    else:
        model.feature_stages = []
    model.preact_stages = list(model.feature_stages)
    return model

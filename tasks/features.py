"""Feature capture by forward hooks on named modules, so no architecture is edited for a method.

A *symbolic* tap names a feature independent of the architecture; `resolve_tap` maps it onto the
module taps the architecture declares (models.feature_spec):
  "stage:<i>"   output of feature stage i (python indexing, so "stage:-1" is the last stage)
  "preact:<i>"  pre-activation of feature stage i
  "embedding"   the penultimate vector (input of the classifier)
  "module:<name>" / "module:<name>:input"  any module's output / first input, by name
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from errors import ConfigError
from models import feature_spec


def resolve_tap(model: nn.Module, symbolic: str) -> str:
    """Symbolic tap -> module tap string ("<module name>" or "<module name>:input")."""
    kind, _, arg = symbolic.partition(":")
    if kind == "embedding" and not arg:
        return feature_spec(model).embedding
    if kind == "module" and arg:
        return arg
    if kind in ("stage", "preact"):
        spec = feature_spec(model)
        stages = spec.stages if kind == "stage" else spec.preact_stages
        try:
            return stages[int(arg)]
        except (ValueError, IndexError):
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(f"feature tap '{symbolic}' does not exist on {name}, which declares "
                             f"{len(stages)} stages; use an index in [-{len(stages)}, {len(stages) - 1}]") from None
    raise ConfigError(f"unknown feature tap '{symbolic}'; use 'stage:<i>', 'preact:<i>', 'embedding' "
                     f"or 'module:<name>[:input]'")


class FeatureTaps:
    """Hooks the given symbolic taps on a model; after each forward, `features[tap]` holds the tensor."""

    def __init__(self, model: nn.Module, taps: Iterable[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        modules = dict(model.named_modules())
        for symbolic in taps:
            name, _, where = resolve_tap(model, symbolic).partition(":")
            if name not in modules:
                raise ConfigError(f"feature tap '{symbolic}' names module '{name}', which "
                                 f"{type(model).__name__} does not have")
            self._handles.append(self._hook(modules[name], symbolic, take_input=(where == "input")))

    def _hook(self, module: nn.Module, key: str, take_input: bool):
        if take_input:
            def pre_hook(_module, args):
                self.features[key] = args[0]
            return module.register_forward_pre_hook(pre_hook)

        def hook(_module, _args, output):
            self.features[key] = output
        return module.register_forward_hook(hook)

    def pop(self) -> dict[str, torch.Tensor]:
        """The features of the last forward; clears them so a stale tensor is never read twice."""
        features, self.features = self.features, {}
        return features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

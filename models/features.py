"""Feature capture by forward hooks on named modules, so no architecture is edited for a method.

A *symbolic* tap names a feature independent of the architecture; `resolve_tap` maps it onto the
module taps the architecture declares (models.feature_spec):
  "stage:<i>"   output of feature stage i (python indexing, so "stage:-1" is the last stage)
  "preact:<i>"  pre-activation of feature stage i
  "embedding"   the penultimate vector (input of the classifier)
  "class_head"  the classifier's output (a single-head model's logits; a distilled DeiT's class head)
  "distillation_head"  the output of a distillation head, on models that declare one (`distillation_head_name`:
                timm's distilled DeiTs), whose own logits are the mean of both heads (losses/deit.py)
  "module:<name>" / "module:<name>:input"  any module's output / first input, by name
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from errors import ConfigError
from models.registry import feature_spec


def resolve_tap(model: nn.Module, symbolic: str) -> str:
    """Symbolic tap -> module tap string ("<module name>" or "<module name>:input")."""
    kind, _, arg = symbolic.partition(":")
    if kind == "embedding" and not arg:
        return feature_spec(model).embedding
    if kind == "class_head" and not arg:
        return feature_spec(model).embedding.rpartition(":")[0]
    if kind == "distillation_head" and not arg:
        head = getattr(model, "distillation_head_name", None)
        if head is None:
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(f"feature tap 'distillation_head' needs a model with a distillation token and head, "
                              f"and {name} has none; use a distilled DeiT, e.g. student=timm "
                              f"student.name=timm.deit_tiny_distilled_patch16_224")
        return head
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
    raise ConfigError(f"unknown feature tap '{symbolic}'; use 'stage:<i>', 'preact:<i>', 'embedding', "
                     f"'class_head', 'distillation_head' or 'module:<name>[:input]'")


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


def preact_batchnorms(model: nn.Module, taps: Iterable[str], example_input: torch.Tensor) -> dict[str, nn.Module]:
    """For each pre-activation tap, the BatchNorm whose affine parameters describe that pre-activation's
    distribution (OFD's margin needs it). An architecture may declare them (`preact_bn_stages`, one module
    name per stage); otherwise this traces one forward and takes the last BatchNorm run before the tap."""
    declared = getattr(model, "preact_bn_stages", None)
    modules = dict(model.named_modules())
    found: dict[str, nn.Module] = {}
    if declared is not None:
        for tap in taps:
            found[tap] = modules[declared[int(tap.partition(":")[2])]]
    else:
        last_norm: list[nn.Module] = []
        handles = [module.register_forward_hook(lambda m, *_: last_norm.append(m))
                   for module in modules.values() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
        for tap in taps:
            name, _, where = resolve_tap(model, tap).partition(":")

            def record(*_, key=tap):
                found.setdefault(key, last_norm[-1] if last_norm else None)
            hook = modules[name].register_forward_pre_hook(record) if where == "input" else \
                modules[name].register_forward_hook(record)
            handles.append(hook)
        was_training = model.training
        with torch.no_grad():
            model.eval()
            model(example_input)
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for tap, norm in found.items():
        if norm is None:
            raise ConfigError(f"no BatchNorm precedes feature tap '{tap}' of {type(model).__name__}; "
                              f"declare its `preact_bn_stages`")
    return found


def feature_modules(model: nn.Module) -> list[nn.Module]:
    """The modules a feature pre-training phase trains (RepDistiller's get_feat_modules): those an architecture
    declares by name (`feature_modules`: e.g. a WRN leaves out its final BatchNorm, MobileNetV2 and ShuffleNetV2
    their last 1x1 convolution), else every child but the classifier."""
    modules = dict(model.named_modules())
    declared = getattr(model, "feature_modules", None)
    if declared is not None:
        return [modules[name] for name in declared]
    classifier = feature_spec(model).embedding.partition(":")[0].split(".")[0]  # the child holding the classifier
    return [child for name, child in model.named_children() if name != classifier]

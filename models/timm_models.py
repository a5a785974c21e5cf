"""Any timm model by name (model=timm model.name=timm.<timm name>), as a teacher or a student.

Feature taps come from timm's own intermediate-feature API: `forward_intermediates` returns one feature per
entry of the model's `feature_info` (stages for CNNs, blocks for ViTs, as NCHW maps: ViT tokens are
reshaped to their patch grid, prefix tokens dropped), and each passes through an identity module
`stage_taps.<i>` that the project's hooks tap as `stage:<i>` (models/features.py). Models without
`forward_intermediates` are tapped on their `feature_info` modules directly. `embedding` is the input of
timm's classifier (`get_classifier()`); a distilled DeiT also declares its distillation head
(`distillation_head`, read by losses/deit.py).

Input size and normalisation come from the model's pretrained config (timm's `pretrained_cfg`): a model with
a fixed input size (ViTs) is built for the data's image size (timm resamples the position embeddings of
pretrained weights), and pretrained weights are refused on data normalised with another mean/std (the
message gives the data.mean/data.std to set). timm is optional (`pip install timm`, or `.[timm]`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from errors import ConfigError, UserError
from models.optional import require


class PretrainedTimmWeightsUnavailable(UserError, RuntimeError):
    """timm could not fetch the requested weights (usually: no internet)."""


def _module_name(root: nn.Module, module: nn.Module) -> str:
    return next(name for name, candidate in root.named_modules() if candidate is module)


class TimmClassifier(nn.Module):
    """A timm model (`net`) returning its logits (a distilled DeiT: the mean of its two heads, as DeiT
    evaluates), with its intermediate features exposed to forward hooks (see the module docstring)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.library_prefix = "net."  # a state dict of the bare library model loads too (models/checkpoints.py)
        stages = [info["module"] for info in getattr(net, "feature_info", [])]
        if hasattr(net, "forward_intermediates") and stages:
            self.stage_taps = nn.ModuleList(nn.Identity() for _ in stages)
            self.feature_stages = [f"stage_taps.{i}" for i in range(len(stages))]
        else:
            self.stage_taps = None
            self.feature_stages = [f"net.{name}" for name in stages]
        self.preact_stages = list(self.feature_stages)  # timm blocks end in their activation: stages stand in
        heads = net.get_classifier()
        heads = heads if isinstance(heads, tuple) else (heads,)
        if not isinstance(heads[0], nn.Linear):
            raise ConfigError(f"timm model {type(net).__name__} has no linear classifier "
                              f"({type(heads[0]).__name__}); pick a classification model")
        self.classifier_name = f"net.{_module_name(net, heads[0])}"
        if len(heads) == 2:  # DeiT's distilled models: (class head, distillation head)
            self.distillation_head_name = f"net.{_module_name(net, heads[1])}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage_taps is None:
            return self.net(x)
        final, intermediates = self.net.forward_intermediates(x)
        for tap, feature in zip(self.stage_taps, intermediates):
            tap(feature)
        return self.net.forward_head(final)


def _check_normalization(name: str, pretrained_cfg: dict, data_mean, data_std) -> None:
    mean, std = pretrained_cfg.get("mean"), pretrained_cfg.get("std")
    if mean is None or data_mean is None or data_std is None:
        return
    if not (torch.allclose(torch.tensor(mean, dtype=torch.float64), torch.tensor(list(data_mean), dtype=torch.float64), atol=1e-3)
            and torch.allclose(torch.tensor(std, dtype=torch.float64), torch.tensor(list(data_std), dtype=torch.float64), atol=1e-3)):
        raise ConfigError(f"timm.{name} was pretrained on inputs normalised with mean {list(mean)} and std {list(std)}, "
                          f"but the data normalises with mean {list(data_mean)} and std {list(data_std)}; set "
                          f"data.mean=[{','.join(map(str, mean))}] data.std=[{','.join(map(str, std))}]")


def build_timm(name: str, num_classes: int, input_shape: Sequence[int], pretrained: bool = False,
               weights_file: str | None = None, data_mean=None, data_std=None, model_kwargs: dict | None = None
               ) -> nn.Module:
    """timm.create_model(name) for `num_classes` and images of `input_shape`; `model_kwargs` go to timm (e.g.
    depth=2 embed_dim=32 for a tiny ViT). `pretrained` loads timm's weights (from the Hugging Face hub, or
    `weights_file`, a local file of them) and replaces the head when num_classes differs."""
    timm = require("timm", "model=timm")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0].split('.')[0]}*")[:8]
        raise ConfigError(f"unknown timm model '{name}'; e.g. {', '.join(close) or 'resnet18, vit_tiny_patch16_224'} "
                          f"(timm.list_models() lists them all)")
    if len(input_shape) != 3:
        raise ConfigError(f"timm.{name} takes images (input_shape [C, H, W]), got {list(input_shape)}; "
                          f"use image data")
    kwargs = dict(model_kwargs or {})
    pretrained_cfg = timm.get_pretrained_cfg(name)
    pretrained_cfg = pretrained_cfg.to_dict() if pretrained_cfg is not None else {}
    if pretrained:
        _check_normalization(name, pretrained_cfg, data_mean, data_std)
    size = tuple(int(d) for d in input_shape[1:])
    if pretrained_cfg.get("fixed_input_size") and tuple(pretrained_cfg.get("input_size", (0,))[1:]) != size:
        kwargs.setdefault("img_size", size)  # ViTs: position embeddings for the data's grid
    kwargs.setdefault("in_chans", int(input_shape[0]))
    if weights_file:
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file)}
    try:
        net = timm.create_model(name, pretrained=bool(pretrained or weights_file), num_classes=int(num_classes),
                                **kwargs)
    except TypeError as error:  # a model_kwargs key the architecture does not take
        raise ConfigError(f"timm.{name} does not take these model.model_kwargs: {error}") from None
    except Exception as error:  # noqa: BLE001 - offline downloads fail with many types
        if not (pretrained or weights_file):
            raise
        raise PretrainedTimmWeightsUnavailable(
            f"could not load timm's pretrained weights for {name} ({type(error).__name__}: {error}); on a machine "
            f"without internet, download them (huggingface.co/{pretrained_cfg.get('hf_hub_id') or 'timm'}) and pass "
            f"model.weights_file=PATH, or use model.pretrained=false") from None
    model = TimmClassifier(net)
    model.pretrained_cfg = pretrained_cfg
    return model

"""Hugging Face classifiers (model=hf model.source=<hub id or local folder>), as teachers and students.

Images (data input_shape [C, H, W]) build transformers' AutoModelForImageClassification, token sequences (input
shape [length], e.g. data=imdb) AutoModelForSequenceClassification, from the source's config (a hub id, or a
folder written by `save_pretrained`). `pretrained=true` also loads its weights (the same call for a hub id and a
folder) and replaces the head when num_classes differs. The model answers with its `.logits`; its hidden states
(`output_hidden_states`) pass through identity modules `stage_taps.<i>` (stage i: the output of layer i, the
embeddings' output left out), tapped as `stage:<i>` (models/features.py); `embedding` is the classifier's input.

Text: the data feeds every model the same ids, those of the project's vocabulary (datamodules/text.py: 0 <pad>,
1 <unk>, then the words), so a Hugging Face text model is built from the source's architecture with vocab_size set
to that vocabulary and pad id 0, and trained here: the transformer teacher of a transformer -> LSTM distillation
on IMDB is trained by the run (offline, from random weights). Its attention mask hides the pads. A pretrained
text model reads its own tokenizer's ids, which this data path does not produce, so `pretrained=true` is refused
for text (its embedding rows would be looked up with the wrong ids). transformers is optional
(`pip install transformers`, or `.[hf]`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from errors import ConfigError, UserError
from models.optional import require

PAD = 0  # datamodules/text.py's pad id
NUM_SPECIAL_TOKENS = 2  # <pad>, <unk> precede the vocabulary's words


class HuggingFaceSourceUnavailable(UserError, RuntimeError):
    """The source's config or weights could not be read (no internet for a hub id, or a wrong folder)."""


class HFClassifier(nn.Module):
    """A transformers classifier (`net`) answering with its logits; hidden states exposed to forward hooks."""

    def __init__(self, net: nn.Module, text: bool, stages: int) -> None:
        super().__init__()
        self.net = net
        self.library_prefix = "net."  # a state dict of the bare library model loads too (models/checkpoints.py)
        self.text = text
        self.stage_taps = nn.ModuleList(nn.Identity() for _ in range(stages))
        self.feature_stages = [f"stage_taps.{i}" for i in range(stages)]
        self.preact_stages = list(self.feature_stages)
        heads = [name for name, module in net.named_modules()
                 if isinstance(module, nn.Linear) and module.out_features == net.config.num_labels]
        if not heads:
            raise ConfigError(f"{type(net).__name__} has no linear classifier with {net.config.num_labels} outputs")
        self.classifier_name = f"net.{heads[-1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.text:
            if x.dtype not in (torch.int64, torch.int32):
                raise ConfigError(f"this Hugging Face text model reads word ids (an integer tensor (B, length)), "
                                  f"got {x.dtype} inputs; use token data such as data=imdb")
            out = self.net(input_ids=x, attention_mask=(x != PAD).long(), output_hidden_states=True)
        else:
            out = self.net(pixel_values=x, output_hidden_states=True)
        for tap, hidden in zip(self.stage_taps, out.hidden_states[1:]):
            tap(hidden)
        return out.logits


def _config(transformers, source: str, num_classes: int, input_shape: Sequence[int], pretrained: bool,
            vocab_size: int | None, overrides: dict):
    try:
        config = transformers.AutoConfig.from_pretrained(source, num_labels=num_classes, **overrides)
    except Exception as error:  # noqa: BLE001 - offline hub lookups and bad folders fail with many types
        raise HuggingFaceSourceUnavailable(
            f"could not read the Hugging Face model config of model.source={source} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); give a hub id this machine can reach, or a folder holding its "
            f"config.json (e.g. `huggingface-cli download {source} --local-dir DIR` on a machine with internet, then "
            f"model.source=DIR)") from None
    config.id2label = {i: str(i) for i in range(num_classes)}
    config.label2id = {str(i): i for i in range(num_classes)}
    if len(input_shape) == 1:
        if pretrained:
            raise ConfigError(f"model.source={source} with model.pretrained=true: a pretrained text model reads its "
                              f"own tokenizer's ids, but the data gives the project's word ids (datamodules/text.py); "
                              f"use model.pretrained=false to train this architecture here on those ids")
        if vocab_size is None:
            raise ConfigError("model=hf on token data needs the data's vocabulary size (data.vocab_size); use token "
                              "data such as data=imdb")
        config.vocab_size = int(vocab_size) + NUM_SPECIAL_TOKENS
        config.pad_token_id = PAD
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and positions < input_shape[0]:
            raise ConfigError(f"model.source={source} takes at most {positions} tokens but data.max_length is "
                              f"{input_shape[0]}; lower data.max_length or raise model.config.max_position_embeddings")
    elif len(input_shape) == 3:
        if not pretrained:  # built for the data's images
            for key, value in (("image_size", int(input_shape[1])), ("num_channels", int(input_shape[0]))):
                if hasattr(config, key):
                    setattr(config, key, value)
    else:
        raise ConfigError(f"model=hf takes images ([C, H, W]) or token ids ([length]), got input_shape "
                          f"{list(input_shape)}")
    return config


def build_hf(num_classes: int, input_shape: Sequence[int], source: str | None = None, pretrained: bool = False,
             vocab_size: int | None = None, config: dict | None = None) -> nn.Module:
    """A Hugging Face classifier from `source` (hub id or folder) for `num_classes` and inputs of `input_shape`;
    `config` overrides entries of the source's config (e.g. num_hidden_layers)."""
    if not source:
        raise ConfigError("model=hf needs model.source=<hub id or local folder>, e.g. model.source=google/vit-base-"
                          "patch16-224 or a folder written by save_pretrained")
    transformers = require("transformers", "model=hf")
    text = len(tuple(input_shape)) == 1
    hf_config = _config(transformers, str(source), int(num_classes), tuple(input_shape), bool(pretrained), vocab_size,
                        dict(config or {}))
    auto = transformers.AutoModelForSequenceClassification if text else transformers.AutoModelForImageClassification
    try:
        if pretrained:
            net = auto.from_pretrained(str(source), config=hf_config, ignore_mismatched_sizes=True)
        else:
            net = auto.from_config(hf_config)
    except ValueError as error:  # an architecture without a classifier of this kind
        raise ConfigError(f"model.source={source} ({hf_config.model_type}) has no "
                          f"{'sequence' if text else 'image'} classification model in transformers: {error}") from None
    except OSError as error:
        raise HuggingFaceSourceUnavailable(f"could not load the weights of model.source={source} ({error}); give a "
                                           f"folder that holds them, or model.pretrained=false") from None
    with torch.no_grad():  # how many hidden states the architecture returns: one probe forward
        probe = (torch.ones((1, int(input_shape[0])), dtype=torch.int64) if text else torch.zeros(1, *input_shape))
        stages = len(net.eval()(**({"input_ids": probe} if text else {"pixel_values": probe}),
                                output_hidden_states=True).hidden_states) - 1
    net.train()
    return HFClassifier(net, text, stages)

"""Bidirectional LSTM text classifier over padded word-id sequences (data=imdb), the architecture of the
fidelity paper's IMDB experiments (Stanton et al. 2021, gnosis `config/classifier/lstm.yaml`: 128-d
embeddings, one bidirectional layer of 100 cells per direction, a linear head on both final states)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from errors import ConfigError
from models.registry import register_model

PAD = 0  # the id datamodules/text.py pads with; ids 0 (<pad>) and 1 (<unk>) precede the vocabulary's words
NUM_SPECIAL_TOKENS = 2


class BiLSTMEncoder(nn.Module):
    """(embedded tokens (B, L, E), lengths (B,)) -> (B, 2H): the last forward state and the first backward
    state of the real tokens.

    Padding-aware by packing (pack_padded_sequence) rather than masked pooling: a bidirectional LSTM's
    backward direction would otherwise start at the padded end and carry the pads into every state, which
    masking the outputs afterwards cannot undo. Packed, the LSTM never reads a pad, so the same review padded
    to any length gives the same encoding."""

    def __init__(self, embedding_dim: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=True)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)  # hidden: (layers * 2, B, H), the last layer's two directions last
        return torch.cat([hidden[-2], hidden[-1]], dim=1)


class LSTMClassifier(nn.Module):
    """Embedding (pad row fixed at zero) -> bidirectional LSTM -> linear head.

    One feature stage, the (B, 2H) sentence encoding: the LSTM has no spatial pyramid, and a per-token
    stage would carry padding into feature losses. It is also the classifier's input (`embedding` tap)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], vocab_size: int, embedding_dim: int = 128,
                 hidden_size: int = 100, num_layers: int = 1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + NUM_SPECIAL_TOKENS, embedding_dim, padding_idx=PAD)
        self.encoder = BiLSTMEncoder(embedding_dim, hidden_size, num_layers)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)
        self.feature_stages = ["encoder"]
        self.preact_stages = ["encoder"]  # no activation follows the encoding: the stage is its own tap
        self.classifier_name = "classifier"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.int64, torch.int32):
            raise ConfigError(f"lstm reads word ids (an integer tensor of shape (B, max_length)), got "
                              f"{x.dtype} inputs; use token data such as data=imdb")
        # Pads only trail (datamodules/text.py pads on the right); an empty review still reads one pad.
        lengths = (x != PAD).sum(dim=1).clamp(min=1)
        return self.classifier(self.encoder(self.embedding(x), lengths))


@register_model("lstm")
def lstm(num_classes, input_shape=(100,), vocab_size=20000, embedding_dim=128, hidden_size=100, num_layers=1):
    if vocab_size is None:
        raise ConfigError("model lstm needs a vocabulary size and the data has none (data.vocab_size); use "
                          "token data such as data=imdb, or set model.vocab_size=N for ids in [0, N + 2)")
    if len(tuple(input_shape)) != 1:
        raise ConfigError(f"model lstm reads sequences of word ids (input_shape [max_length]), but the data's "
                          f"input_shape is {list(input_shape)}; use token data such as data=imdb")
    for key, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim),
                       ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if int(value) < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {value}")
    return LSTMClassifier(num_classes, input_shape, int(vocab_size), int(embedding_dim), int(hidden_size),
                          int(num_layers))

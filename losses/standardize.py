"""Logit standardization (Sun et al., CVPR 2024): each row of logits z-scored before the temperature softmax.

Shared by every logit term that offers `standardize` (KD, DKD, CTKD, MLKD, ...), so the idea lives once."""
from __future__ import annotations

import torch

# The anchor's guard against a constant row (sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py
# `normalize`): added to the standard deviation, not under a square root.
STD_EPS = 1e-7


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """(z - mean(z)) / (1e-7 + std(z)) over the class dimension, per row. The anchor's `logit.std` is torch's
    default, the unbiased (n - 1) estimate; torchdistill's LogitStdKDLoss uses the same."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (STD_EPS + std)

"""Rebuild a model from a checkpoint: ours carry their model config; foreign ones need an architecture."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from errors import UserError, one_line

# Key under which every checkpoint of this codebase stores the resolved model config.
MODEL_CONFIG_KEY = "kd_model_config"
# The LightningModules keep the trained model (teacher or student) under this attribute name.
MODEL_PREFIX = "model."


GENERIC_FIX = "pass a .ckpt written by train.py or distill_train.py"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used: `reason` names the file and why; `fix` says how to continue (callers
    that know where the file comes from give a better one with `with_fix`)."""

    def __init__(self, path: str | Path, reason: str, fix: str = GENERIC_FIX) -> None:
        self.path, self.reason, self.fix = str(path), reason, fix
        super().__init__(f"{reason}; {fix}")

    def with_fix(self, fix: str) -> "CheckpointError":
        return CheckpointError(self.path, self.reason, fix)


def read_checkpoint(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"checkpoint {path} {'is a folder' if path.is_dir() else 'does not exist'}",
                              f"{GENERIC_FIX} (see a run folder's checkpoints/)")
    try:
        # Our checkpoints hold plain configs besides tensors, so they need the full unpickler;
        # only load checkpoints you trust.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a non-checkpoint file
        raise CheckpointError(path, f"{path} cannot be read: it is truncated or not a model checkpoint (torch.load "
                                    f"failed: {type(error).__name__}: {one_line(error)[:160]})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(checkpoint: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """Our Lightning checkpoints, a bare state dict, or the common {'model'|'state_dict': state dict}."""
    if isinstance(checkpoint, Mapping) and MODEL_CONFIG_KEY in checkpoint:
        return {k[len(MODEL_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    if _is_state_dict(checkpoint):
        return dict(checkpoint)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(checkpoint, Mapping) and _is_state_dict(checkpoint.get(key)):
            return dict(checkpoint[key])
    raise CheckpointError(path, f"{path} is not a model checkpoint: it holds no model weights",
                          f"{GENERIC_FIX}, or a file with a PyTorch state dict")


def state_mismatch(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps `state_dict` from loading into a module whose own state dict is `own` (None: it fits)."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [k for k in set(own) & set(state_dict)  # (a module's extra state, e.g. CRD's draw count, has none)
                  if torch.is_tensor(own[k]) and getattr(state_dict[k], "shape", None) != own[k].shape]
    return "; ".join(part for part in (
        f"missing {len(missing)} keys (e.g. {missing[:3]})" if missing else "",
        f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})" if unexpected else "",
        f"{len(mismatched)} shape mismatches (e.g. {sorted(mismatched)[:3]})" if mismatched else "") if part) or None


def wrapped_keys(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """A wrapped library model (timm's, Hugging Face's: `net` inside the project's wrapper, which declares
    `library_prefix`) reads a state dict saved from the bare library model under the wrapper's prefix."""
    prefix = getattr(model, "library_prefix", None)
    if prefix is None or any(key.startswith(prefix) for key in state_dict):
        return state_dict
    return {prefix + key: value for key, value in state_dict.items()}


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    name = getattr(model, "model_name", type(model).__name__)
    state_dict = wrapped_keys(model, state_dict)
    details = state_mismatch(model.state_dict(), state_dict)
    if details:
        raise CheckpointError(path, f"{path} does not fit architecture '{name}' ({details})",
                              "it was saved from another architecture or class count: pass the one it was trained with")
    model.load_state_dict(state_dict)


def model_from_checkpoint(path: str | Path, fallback_config: Mapping | None = None) -> tuple[nn.Module, dict]:
    """(model with loaded weights, its model config). `fallback_config` builds foreign checkpoints."""
    from hydra.utils import instantiate

    checkpoint = read_checkpoint(path)
    config = checkpoint.get(MODEL_CONFIG_KEY) if isinstance(checkpoint, Mapping) else None
    if config is None:
        if fallback_config is None:
            raise CheckpointError(path, f"{path} carries no model config (it was not written by this codebase)",
                                  "also name its architecture, e.g. teacher/model=resnet32x4")
        config = dict(fallback_config)
    model = instantiate(config)
    load_weights(model, extract_state_dict(checkpoint, path), path)
    return model, config

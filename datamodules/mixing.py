"""Distillation data made on the batch, on its device: mixup, mixup3, cutmix (`cfg/augment/`).

Each returns the mixed inputs and soft labels (the mixing weights over the components' one-hot labels),
so cross-entropy stays exact: CE with soft labels = sum_j w_j CE(y_j). The teacher labels the mixed input.
Draws come from a NumPy generator seeded by (seed, global step), so a resumed run replays them.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from errors import ConfigError


class BatchMixing:
    """No mixing: the batch as it comes."""

    name = "none"
    components = 1

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        if not alpha > 0:
            raise ConfigError(f"augment.alpha parametrises Beta(alpha, alpha) and must be > 0, got {alpha}; "
                              f"mixup's usual value is 1.0")
        self.alpha = float(alpha)

    @property
    def active(self) -> bool:
        return self.components > 1

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int, seed: int, step: int):
        """(inputs, soft labels (B, K), rows the teacher labels or None) for one training batch. Mixings
        label every row from the components' labels; generated rows (augment=synthetic) are labelled by
        the teacher after its forward, at `temperature`."""
        if not inputs.is_floating_point():
            raise ConfigError(f"augment={self.name} mixes inputs, but this data gives {inputs.dtype} inputs (token "
                              f"ids?); use augment=none")
        rng = np.random.default_rng([seed, step])
        partners = [torch.from_numpy(rng.permutation(len(inputs))).to(inputs.device)
                    for _ in range(self.components - 1)]
        one_hot = F.one_hot(targets, num_classes).float()
        mixed, weights = self.mix(inputs, partners, rng)
        soft = weights[0] * one_hot + sum(w * one_hot[p] for w, p in zip(weights[1:], partners))
        return mixed, soft, None

    def mix(self, inputs, partners, rng):
        return inputs, [1.0]


class Mixup(BatchMixing):
    """Zhang et al. 2018: x = lam x_i + (1 - lam) x_j, lam ~ Beta(alpha, alpha), one draw per batch."""

    name, components = "mixup", 2

    def mix(self, inputs, partners, rng):
        lam = float(rng.beta(self.alpha, self.alpha))
        return lam * inputs + (1 - lam) * inputs[partners[0]], [lam, 1 - lam]


class Mixup3(BatchMixing):
    """Three inputs, weights from three Beta(alpha, alpha) draws normalised to sum to 1."""

    name, components = "mixup3", 3

    def mix(self, inputs, partners, rng):
        draws = rng.beta(self.alpha, self.alpha, size=3)
        weights = [float(w) for w in draws / draws.sum()]
        return weights[0] * inputs + weights[1] * inputs[partners[0]] + weights[2] * inputs[partners[1]], weights


class CutMix(BatchMixing):
    """Yun et al. 2019: a box of area share (1 - lam), lam ~ Beta(alpha, alpha), pasted from the partner at
    the same place; lam is then corrected to the box actually pasted (clipped at the borders). Works on
    any number of spatial dimensions (a segment for 1-d signals)."""

    name, components = "cutmix", 2

    def mix(self, inputs, partners, rng):
        if inputs.dim() < 3:
            raise ConfigError(f"augment=cutmix pastes a region of a spatial input, but this data gives inputs of "
                              f"shape {tuple(inputs.shape[1:])}; use augment=mixup")
        lam = float(rng.beta(self.alpha, self.alpha))
        sizes = inputs.shape[2:]
        side = (1 - lam) ** (1 / len(sizes))  # the box keeps the input's aspect ratio
        box = []
        for size in sizes:
            centre, half = int(rng.integers(size)), int(round(size * side)) // 2
            box.append(slice(max(centre - half, 0), min(centre + half, size)))
        mixed = inputs.clone()
        region = (slice(None), slice(None), *box)
        mixed[region] = inputs[partners[0]][region]
        pasted = float(np.prod([s.stop - s.start for s in box])) / float(np.prod(sizes))
        return mixed, [1 - pasted, pasted]

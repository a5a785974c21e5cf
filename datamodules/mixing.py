"""Distillation data made on the batch, on its device: mixup, mixup3, cutmix, mixup_interpolated,
mixup3_interpolated (`cfg/augment/`).

Each returns the mixed inputs and soft labels (the mixing weights over the components' one-hot labels),
so cross-entropy stays exact: CE with soft labels = sum_j w_j CE(y_j). The teacher labels the mixed input,
except under mixup_interpolated and mixup3_interpolated, where its cached outputs on the components are mixed
instead.
Draws come from a NumPy generator seeded by (seed, global step), so a resumed run replays them, and a
draw can be replayed on other tensors of the same batch (`interpolate`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from errors import ConfigError


@dataclass
class Mix:
    """One batch's draw: component k of row i is row partners[k][i] (partners[0] is the row itself) with
    weight weights[k]; `box` is cutmix's pasted region (slices over the spatial dimensions)."""
    partners: list[torch.Tensor]
    weights: list[float]
    box: tuple[slice, ...] | None = None


class BatchMixing:
    """No mixing: the batch as it comes."""

    name = "none"
    components = 1
    interpolates_teacher = False  # True: mix the teacher's cached outputs instead of querying it

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        self.alpha = float(alpha)  # > 0: runs/validation.py checks augment.alpha

    @property
    def active(self) -> bool:
        return self.components > 1

    def draw(self, count: int, spatial: tuple[int, ...], rng: np.random.Generator) -> Mix:
        partners = [np.arange(count)] + [rng.permutation(count) for _ in range(self.components - 1)]
        weights, box = self.draw_weights(spatial, rng)
        return Mix([torch.from_numpy(p) for p in partners], weights, box)

    def draw_weights(self, spatial, rng) -> tuple[list[float], tuple[slice, ...] | None]:
        return [1.0], None

    def _draw_for(self, inputs: torch.Tensor, seed: int, step: int) -> Mix:
        mix = self.draw(len(inputs), tuple(inputs.shape[2:]), np.random.default_rng([seed, step]))
        mix.partners = [p.to(inputs.device) for p in mix.partners]
        return mix

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int, seed: int, step: int):
        """(inputs, soft labels (B, K), rows the teacher labels or None) for one training batch. Mixings
        label every row from the components' labels; generated rows (augment=synthetic) are labelled by
        the teacher after its forward, at `temperature`."""
        if not inputs.is_floating_point():
            raise ConfigError(f"augment={self.name} mixes inputs, but this data gives {inputs.dtype} inputs (token "
                              f"ids?); use augment=none")
        mix = self._draw_for(inputs, seed, step)
        one_hot = F.one_hot(targets, num_classes).float()
        soft = sum(w * one_hot[p] for w, p in zip(mix.weights, mix.partners))
        return self.apply(inputs, mix), soft, None

    def apply(self, inputs: torch.Tensor, mix: Mix) -> torch.Tensor:
        return sum(w * inputs[p] for w, p in zip(mix.weights, mix.partners))

    def interpolate(self, outputs: torch.Tensor, inputs: torch.Tensor, seed: int, step: int) -> torch.Tensor:
        """The same draw as `__call__` on these inputs, applied to per-row `outputs` (e.g. teacher logits)."""
        mix = self._draw_for(inputs, seed, step)
        return sum(w * outputs[p] for w, p in zip(mix.weights, mix.partners))


class Mixup(BatchMixing):
    """Zhang et al. 2018: x = lam x_i + (1 - lam) x_j, lam ~ Beta(alpha, alpha), one draw per batch."""

    name, components = "mixup", 2

    def draw_weights(self, spatial, rng):
        lam = float(rng.beta(self.alpha, self.alpha))
        return [lam, 1 - lam], None


TEACHER_MIXES = ("probabilities", "logits")


class InterpolatedTeacher:
    """Mixed inputs the teacher is never asked about: its cached outputs on the components are mixed with the
    mixing weights instead (needs teacher=cached). `teacher_mix`: "probabilities" (default; comparative KD's
    mixup, alextxu/ckd helper/MixupTrainHelpers.py with --loss_fn 0) mixes the components' softmax at T 1 and
    answers with the log of the mixture, so a cross-entropy to the teacher at T 1 (kd.terms.teacher_ce) is
    lam CE(s, softmax v_i) + (1 - lam) CE(s, softmax v_j), CKD's; "logits" mixes the logits themselves."""

    interpolates_teacher = True

    def __init__(self, alpha: float = 1.0, name: str | None = None, teacher_mix: str = "probabilities") -> None:
        super().__init__(alpha, name)
        if teacher_mix not in TEACHER_MIXES:
            raise ConfigError(f"augment.teacher_mix must be one of {list(TEACHER_MIXES)}, got {teacher_mix!r}; "
                              f"'probabilities' is comparative KD's (its mixup's cross-entropy targets)")
        self.teacher_mix = teacher_mix

    def interpolate(self, outputs: torch.Tensor, inputs: torch.Tensor, seed: int, step: int) -> torch.Tensor:
        if self.teacher_mix == "logits":
            return super().interpolate(outputs, inputs, seed, step)
        probabilities = super().interpolate(outputs.float().softmax(dim=1), inputs, seed, step)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


class MixupInterpolated(InterpolatedTeacher, Mixup):
    """Comparative KD's mixup (mixup.yml): two components, the teacher's cached outputs on them mixed."""

    name = "mixup_interpolated"


class Mixup3(BatchMixing):
    """Three inputs, weights from three Beta(alpha, alpha) draws normalised to sum to 1."""

    name, components = "mixup3", 3

    def draw_weights(self, spatial, rng):
        draws = rng.beta(self.alpha, self.alpha, size=3)
        return [float(w) for w in draws / draws.sum()], None


class Mixup3Interpolated(InterpolatedTeacher, Mixup3):
    """Three components, the teacher's cached outputs on them mixed (comparative KD's README names a mixup3
    arm, "mixes three samples instead of two", but ships no code for it: the weights are augment=mixup3's)."""

    name = "mixup3_interpolated"


class CutMix(BatchMixing):
    """Yun et al. 2019: a box of area share (1 - lam), lam ~ Beta(alpha, alpha), pasted from the partner at
    the same place; lam is then corrected to the box actually pasted (clipped at the borders). Works on
    any number of spatial dimensions (a segment for 1-d signals)."""

    name, components = "cutmix", 2

    def draw_weights(self, spatial, rng):
        if not spatial:
            raise ConfigError("augment=cutmix pastes a region of a spatial input, but this data gives flat "
                              "vectors; use augment=mixup")
        lam = float(rng.beta(self.alpha, self.alpha))
        side = (1 - lam) ** (1 / len(spatial))  # the box keeps the input's aspect ratio
        box = []
        for size in spatial:
            centre, half = int(rng.integers(size)), int(round(size * side)) // 2
            box.append(slice(max(centre - half, 0), min(centre + half, size)))
        pasted = float(np.prod([s.stop - s.start for s in box])) / float(np.prod(spatial))
        return [1 - pasted, pasted], tuple(box)

    def apply(self, inputs, mix):
        mixed = inputs.clone()
        region = (slice(None), slice(None), *mix.box)
        mixed[region] = inputs[mix.partners[1]][region]
        return mixed

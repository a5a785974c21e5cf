"""augment=synthetic: a share of each distillation batch replaced by GAN samples that the teacher labels.

The generator (trained by scripts/train_gan.py on the same data) runs on the batch's device; its samples
come out in the data's normalised space (see models/gan.py). The last round(ratio * B) rows (at least one)
of each batch are replaced; the task then labels exactly those rows with softmax(teacher logits / T) at this
augmentation's own `temperature`, while real rows keep their one-hot labels. Latent noise is drawn from a
generator seeded by (seed, global step), so a resumed run replays the same samples.

What the fidelity study did (Stanton et al. 2021, "Does Knowledge Distillation Really Work?"): its authors'
code (samuelstanton/gnosis gnosis/distillation/dataloaders.py DistillLoader) appends int(synth_ratio * B) fresh
samples of an SN-GAN (latent dim 128) trained on the same data to B - int(synth_ratio * B) real examples at every
step (so an epoch still sees every real example), and labels the GAN rows at `synth_temp` (1.0 by default; the
configs never set it) and the real rows at `temp` (4.0) in one soft cross-entropy; hence `temperature: 1.0` here,
and kd.terms.kd.generated_temperature for a KD term. Here the generated rows replace real ones of the loaded
batch, so those real examples sit out that step.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn.functional as F

from datamodules.mixing import BatchMixing
from datamodules.sampling import hashed_seed
from errors import ConfigError
from models.gan import TRAIN_COMMAND, NormalisedGenerator, check_generator_shape, load_generator, \
    read_generator_checkpoint


class SyntheticReplacement(BatchMixing):
    """Replace the last round(ratio * B) rows of a batch (at least one) with generated samples."""

    name = "synthetic"

    def __init__(self, generator: str | None = None, ratio: float = 0.2, temperature: float = 1.0,
                 name: str = "synthetic") -> None:
        super().__init__()
        if generator is None or not str(generator).strip():
            raise ConfigError(f"augment=synthetic needs a generator: pass augment.generator=PATH, the generator.pt "
                              f"that {TRAIN_COMMAND} writes")
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
            raise ConfigError(f"augment.ratio is the share of each batch replaced by generated samples and must be "
                              f"in (0, 1], got {ratio!r}; 0.2 replaces a fifth")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
            raise ConfigError(f"augment.temperature (the teacher's temperature on generated rows) must be > 0, got "
                              f"{temperature!r}; the fidelity study's code uses 1.0")
        self.name = str(name)
        self.generator_path = str(generator)
        self.ratio = float(ratio)
        self.temperature = float(temperature)
        # Read now, not at the first step: a missing or foreign file stops the run before any training.
        self._checkpoint_config = read_generator_checkpoint(self.generator_path)["config"]
        self._generator: NormalisedGenerator | None = None

    @property
    def active(self) -> bool:
        return True

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one generated sample, (C, H, W)."""
        return tuple(int(d) for d in self._checkpoint_config["image_shape"])

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """ConfigError (naming both shapes and the fix) unless the generator makes inputs of `shape`, the
        data's per-example input shape (e.g. datamodule.input_shape); returns None when they match."""
        check_generator_shape({"config": self._checkpoint_config}, self.generator_path, shape)

    def generated_count(self, batch_size: int) -> int:
        return min(batch_size, max(1, round(self.ratio * batch_size)))

    def latent_noise(self, count: int, seed: int, step: int) -> torch.Tensor:
        """(count, latent_dim) standard normal noise, a pure function of (seed, step) (and the process's rank
        under DDP, so ranks do not all get the same samples). Drawn on the CPU so the same run replays the
        same samples on any device; it is small next to the samples it makes."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        draws = torch.Generator().manual_seed(hashed_seed(seed, step, rank))
        return torch.randn(count, int(self._checkpoint_config["latent_dim"]), generator=draws)

    def _generator_on(self, device: torch.device) -> NormalisedGenerator:
        if self._generator is None:
            self._generator = load_generator(self.generator_path, self.image_shape)
        if self._generator.mean.device != device:
            self._generator = self._generator.to(device)
        return self._generator

    @torch.no_grad()
    def generate(self, count: int, seed: int, step: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """`count` samples for (seed, step), in the data's normalised space, on `device`."""
        generator = self._generator_on(torch.device(device))
        return generator(self.latent_noise(count, seed, step).to(device)).float()

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int, seed: int, step: int):
        """(inputs with the last rows generated, soft labels (B, K): one-hot on real rows and zeros on
        generated ones, which the task fills with the teacher's labels, bool mask (B,) of generated rows)."""
        if not inputs.is_floating_point():
            raise ConfigError(f"augment=synthetic makes images, but this data gives {inputs.dtype} inputs (token "
                              f"ids?); use augment=none")
        self.check_input_shape(inputs.shape[1:])
        batch = len(inputs)
        count = self.generated_count(batch)
        generated = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        generated[batch - count:] = True
        replaced = inputs.clone()
        replaced[generated] = self.generate(count, seed, step, inputs.device).to(inputs.dtype)
        soft = F.one_hot(targets, num_classes).float()
        soft[generated] = 0.0
        return replaced, soft, generated

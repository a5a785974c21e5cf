"""A DCGAN for small square images (32x32 by default), its generator checkpoint, and the loader that puts
generated samples in the normalised space a student sees (augment=synthetic).

Architecture: DCGAN (Radford et al., ICLR 2016): no pooling or fully connected hidden layers; the generator
upsamples a latent vector with stride-2 transposed convolutions (BatchNorm + ReLU, tanh output), the
discriminator downsamples with stride-2 convolutions (LeakyReLU 0.2); weights start from N(0, 0.02).
For 32x32 and width 64 the generator runs 128 -> 256x4x4 -> 128x8x8 -> 64x16x16 -> Cx32x32.

Discriminator normalisation: spectral normalisation on every discriminator layer in place of BatchNorm
(SN-GAN, Miyato et al., ICLR 2018) by default. It bounds the discriminator's Lipschitz constant, which the
authors show keeps training stable over a wide range of optimiser settings, and without BatchNorm a
discriminator's score for one image does not depend on the rest of its batch. It is also the GAN family
whose samples the fidelity study distilled on (Stanton et al. 2021, the SN-GAN of their code).
`spectral_norm=False` gives the paper DCGAN discriminator (BatchNorm after every hidden convolution).

Checkpoint (`generator.pt`, a plain dict that `torch.load(weights_only=True)` reads):
    format: "kd-generator", format_version: 1
    config: {architecture: "dcgan", image_shape: [C, H, W], latent_dim, width}
    normalization: {mean: [C floats], std: [C floats]}: a sample g in [-1, 1] (tanh) is the image
        (g + 1) / 2 in [0, 1], which the student sees as ((g + 1) / 2 - mean) / std, the data's own
        per-channel normalisation
    data: name of the data it was trained on
    state_dict: the generator's weights
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

from errors import ConfigError

CHECKPOINT_FORMAT = "kd-generator"
CHECKPOINT_VERSION = 1
TRAIN_COMMAND = "python scripts/train_gan.py data=<the data you distill on>"


def upsampling_stages(image_size: int) -> int:
    """Stride-2 stages from the 4x4 seed to `image_size`: 3 for 32x32. Sides must be 4 * 2^k, k >= 2."""
    stages = math.log2(image_size / 4) if image_size > 0 else -1
    if image_size < 16 or stages != int(stages):
        raise ConfigError(f"the DCGAN here makes square images whose side is a power of two >= 16 (32 for CIFAR), "
                          f"not {image_size}; use data whose inputs are e.g. [3, 32, 32]")
    return int(stages)


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2]:
        raise ConfigError(f"a GAN here needs square images of shape [channels, side, side], got {list(shape)}; "
                          f"use image data such as data=cifar10 ([3, 32, 32])")
    upsampling_stages(shape[1])
    return shape


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: every weight from N(0, 0.02); BatchNorm scales around 1."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        weight = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, image_shape: Sequence[int] = (3, 32, 32), latent_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        if latent_dim < 1 or width < 1:
            raise ConfigError(f"gan.latent_dim and gan.width must be >= 1, got {latent_dim} and {width}")
        self.latent_dim, self.width = int(latent_dim), int(width)
        stages = upsampling_stages(self.image_shape[1])
        channels = self.width * 2 ** (stages - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(self.latent_dim, channels, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]  # 1x1 -> 4x4
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        # No BatchNorm on the output layer (Radford et al.: it made samples oscillate).
        layers += [nn.ConvTranspose2d(channels, self.image_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.latent_dim, 1, 1))

    def config(self) -> dict:
        return {"architecture": "dcgan", "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "width": self.width}


class DCGANDiscriminator(nn.Module):
    """images (B, C, S, S) in [-1, 1] -> one real/fake logit each (B,)."""

    def __init__(self, image_shape: Sequence[int] = (3, 32, 32), width: int = 64, spectral_norm: bool = True) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        stages = upsampling_stages(self.image_shape[1])
        normed = with_spectral_norm if spectral_norm else (lambda layer: layer)
        channels = int(width)
        # No normalisation on the input layer (Radford et al.).
        layers: list[nn.Module] = [normed(nn.Conv2d(self.image_shape[0], channels, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        for _ in range(stages - 1):
            layers.append(normed(nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=spectral_norm)))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(channels * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            channels *= 2
        layers.append(normed(nn.Conv2d(channels, 1, 4, 1, 0)))  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


@torch.no_grad()
def refresh_batchnorm_statistics(generator: DCGANGenerator, batches: int = 50, batch_size: int = 128,
                                 seed: int = 0) -> None:
    """Recompute the generator's BatchNorm running statistics as exact averages over fresh samples
    ("standing statistics", Brock et al. 2019), so eval-mode samples (as augment=synthetic draws them)
    match train-mode ones instead of trailing the last training steps' momentum averages."""
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    generator.train()
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        generator(torch.randn(batch_size, generator.latent_dim, generator=rng).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.train(was_training)


# ------------------------------------------------------------------------------------------- checkpoints
def save_generator(path: str | Path, generator: DCGANGenerator, mean: Sequence[float], std: Sequence[float],
                   data: str) -> Path:
    channels = generator.image_shape[0]
    if len(mean) != channels or len(std) != channels or any(s <= 0 for s in std):
        raise ValueError(f"normalisation needs {channels} means and positive stds, got mean={mean}, std={std}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": generator.config(),
                  "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
                  "data": str(data), "state_dict": {k: v.detach().cpu() for k, v in generator.state_dict().items()}}
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)  # a generator.pt exists only once it is whole
    return path


def read_generator_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked to be one `save_generator` wrote; ConfigError otherwise."""
    path = Path(path)
    fix = f"pass the generator.pt that {TRAIN_COMMAND} writes (outputs/gan/<data>-s<seed>/generator.pt)"
    if not path.is_file():
        raise ConfigError(f"augment.generator={path} does not exist; {fix}")
    try:
        # Plain tensors, lists and strings only: the safe loader suffices.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a file it cannot read
        raise ConfigError(f"{path} is not a generator checkpoint (it cannot be read as one: "
                          f"{type(error).__name__}); {fix}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a generator checkpoint (a model checkpoint of train.py or "
                          f"distill_train.py is not one); {fix}")
    if checkpoint.get("format_version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} is a generator checkpoint of format version {checkpoint.get('format_version')}, "
                          f"this code reads version {CHECKPOINT_VERSION}; train it again with {TRAIN_COMMAND}")
    return checkpoint


def check_generator_shape(checkpoint: dict, path: str | Path, expected_input_shape: Sequence[int]) -> None:
    made = [int(d) for d in checkpoint["config"]["image_shape"]]
    expected = [int(d) for d in expected_input_shape]
    if made != expected:
        raise ConfigError(f"the generator {path} makes images of shape {made} but this data's inputs have shape "
                          f"{expected}; train a generator on this data with {TRAIN_COMMAND} and pass its "
                          f"generator.pt as augment.generator=PATH")


class NormalisedGenerator(nn.Module):
    """A trained generator whose samples come out in the data's normalised space: z -> (x01 - mean) / std."""

    def __init__(self, generator: DCGANGenerator, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.generator.image_shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.generator(z) + 1) / 2 - self.mean) / self.std


def load_generator(path: str | Path, expected_input_shape: Sequence[int] | None = None) -> NormalisedGenerator:
    """The generator of `path` (CPU, eval mode, no gradients), its samples in the data's normalised space.
    ConfigError if the file is not a generator checkpoint or makes images of another shape than
    `expected_input_shape` (the data's per-example input shape, e.g. (3, 32, 32))."""
    checkpoint = read_generator_checkpoint(path)
    if expected_input_shape is not None:
        check_generator_shape(checkpoint, path, expected_input_shape)
    config = checkpoint["config"]
    generator = DCGANGenerator(config["image_shape"], config["latent_dim"], config["width"])
    try:
        generator.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ConfigError(f"{path} is a damaged generator checkpoint (its weights do not fit its own config: "
                          f"{str(error).splitlines()[0]}); train it again with {TRAIN_COMMAND}") from None
    norm = checkpoint["normalization"]
    return NormalisedGenerator(generator, norm["mean"], norm["std"]).eval().requires_grad_(False)

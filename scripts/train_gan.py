"""Train a GAN on a dataset of this codebase, for distillation with augment=synthetic.

    python scripts/train_gan.py data=cifar10 [gan.epochs=50 seed=0 device=cuda ...]   (config: cfg/gan.yaml)
    python distill_train.py ... augment=synthetic augment.generator=outputs/gan/cifar10-s0/generator.pt

A DCGAN with a spectral-normalised discriminator (models/gan.py), the non-saturating GAN loss, Adam 2e-4 with
betas (0.5, 0.999). Data comes from the project's own datamodules (cfg/data/), on the training split only.
One run writes one folder, ${output_dir} (outputs/gan/<data>-s<seed>/ by default): generator.pt (the
generator with its config and the data's normalisation), samples.png (a grid of samples) and record.json
(command, config, per-epoch losses, wall time). Runs on the CPU or a GPU; bad input stops with one line.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader


from errors import ConfigError
from runs.stops import exit_on_user_error
from runs.folders import git_state
from runs.records import aside_folder, write_record
from models.gan import (DCGANDiscriminator, DCGANGenerator, check_image_shape,
                        refresh_batchnorm_statistics, save_generator)

log = logging.getLogger("train_gan")
GENERATOR_FILE, SAMPLES_FILE = "generator.pt", "samples.png"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no GPU is visible here; use device=auto or device=cpu")
    return device


def claim_output_folder(folder: Path, rerun: bool) -> None:
    """One generator per folder: a finished run is never overwritten; rerun=true moves it aside."""
    if not (folder / GENERATOR_FILE).exists():
        return
    if not rerun:
        raise ConfigError(f"{folder} already holds a generator; pass rerun=true to train again (the old folder is "
                          f"kept aside) or output_dir=PATH for another folder")
    folder.rename(aside_folder(folder))


def data_normalisation(datamodule, loader: DataLoader, channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) with which the data maps images in [0, 1] to what the student sees: x = (x01 - mean) / std.
    Datamodules that normalise images state theirs (CIFAR, image folders); for others, the generator's
    [-1, 1] is spread over each channel's observed range, written in the same mean/std form."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is not None and std is not None and len(mean) == channels and len(std) == channels:
        return [float(m) for m in mean], [float(s) for s in std]
    low = torch.full((channels,), float("inf"))
    high = torch.full((channels,), float("-inf"))
    for x, _, _ in loader:
        per_channel = x.transpose(0, 1).flatten(1)
        low, high = torch.minimum(low, per_channel.min(1).values), torch.maximum(high, per_channel.max(1).values)
    span = (high - low).clamp_min(1e-6)
    return (-low / span).tolist(), (1 / span).tolist()


def train_gan(cfg: DictConfig, command: str | None = None) -> dict:
    """Train the GAN of `cfg` (cfg/gan.yaml composed); returns the run record written beside generator.pt."""
    from runs.training import build_datamodule
    from torchvision.utils import save_image

    started = time.time()
    settings = cfg.gan
    folder = Path(cfg.output_dir)
    device = pick_device(str(cfg.device))
    for key in ("epochs", "batch_size", "sample_count"):
        if int(settings[key]) < 1:
            raise ConfigError(f"gan.{key} must be >= 1, got {settings[key]}")
    if settings.max_steps is not None and int(settings.max_steps) < 1:
        raise ConfigError(f"gan.max_steps must be >= 1 or null, got {settings.max_steps}")
    claim_output_folder(folder, bool(cfg.rerun))
    torch.manual_seed(int(cfg.seed))

    datamodule = build_datamodule(cfg)
    try:
        image_shape = check_image_shape(datamodule.input_shape)
    except ConfigError as error:
        raise ConfigError(f"data={cfg.data.name} gives inputs of shape {list(datamodule.input_shape)}, but {error}") \
            from None
    datamodule.setup("fit")
    train_set = datamodule.train_set
    if datamodule.eval_transform is not None:
        # Unpadded images: a crop of the zero-padded image would teach the generator black borders.
        train_set.transform = datamodule.eval_transform
    batch_size = int(settings.batch_size)
    if batch_size > len(train_set):
        raise ConfigError(f"gan.batch_size={batch_size} is more than the {len(train_set)} training examples of "
                          f"{cfg.data.name}; lower it")
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,  # equal BatchNorm batches
                        num_workers=int(cfg.data.get("num_workers") or 0),
                        generator=torch.Generator().manual_seed(int(cfg.seed)))
    mean, std = data_normalisation(datamodule, loader, image_shape[0])
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    generator = DCGANGenerator(image_shape, int(settings.latent_dim), int(settings.width)).to(device)
    discriminator = DCGANDiscriminator(image_shape, int(settings.width), bool(settings.spectral_norm)).to(device)
    betas = tuple(float(b) for b in settings.betas)
    generator_optimizer = torch.optim.Adam(generator.parameters(), lr=float(settings.lr_generator), betas=betas)
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=float(settings.lr_discriminator),
                                               betas=betas)

    losses, step, max_steps = [], 0, settings.max_steps
    for epoch in range(int(settings.epochs)):
        totals = {"discriminator": 0.0, "generator": 0.0, "real_score": 0.0, "fake_score": 0.0}
        batches = 0
        for x, _, _ in loader:
            if not x.is_floating_point():
                raise ConfigError(f"data={cfg.data.name} gives {x.dtype} inputs, not images; train the GAN on image "
                                  f"data such as data=cifar10")
            real = ((x.to(device) * std_t + mean_t) * 2 - 1).clamp(-1, 1)  # the tanh range of the generator
            if settings.flip:
                flipped = torch.rand(len(real), device=device) < 0.5
                real = torch.where(flipped.view(-1, 1, 1, 1), real.flip(3), real)
            fake = generator(torch.randn(len(real), generator.latent_dim, device=device))
            real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
            discriminator_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            discriminator_optimizer.zero_grad(set_to_none=True)
            discriminator_loss.backward()
            discriminator_optimizer.step()
            # Non-saturating generator loss (Goodfellow et al. 2014), as DCGAN trains: maximise log D(G(z)).
            judged = discriminator(fake)
            generator_loss = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
            generator_optimizer.zero_grad(set_to_none=True)
            generator_loss.backward()
            generator_optimizer.step()
            # Mean D(x) on real and generated images: near 0.5 both while the two stay in balance.
            scores = {"real_score": real_logits.sigmoid().mean(), "fake_score": fake_logits.sigmoid().mean(),
                      "discriminator": discriminator_loss, "generator": generator_loss}
            for key, value in scores.items():
                totals[key] += float(value.detach())
            batches += 1
            step += 1
            if max_steps is not None and step >= int(max_steps):
                break
        losses.append({"epoch": epoch, "steps": batches, **{k: v / max(batches, 1) for k, v in totals.items()}})
        log.info("epoch %d: D loss %.4f, G loss %.4f, D(real) %.3f, D(fake) %.3f", epoch, losses[-1]["discriminator"],
                 losses[-1]["generator"], losses[-1]["real_score"], losses[-1]["fake_score"])
        if max_steps is not None and step >= int(max_steps):
            break

    refresh_batchnorm_statistics(generator, batches=50, batch_size=batch_size, seed=int(cfg.seed))
    generator.eval()
    checkpoint = save_generator(folder / GENERATOR_FILE, generator, mean, std, str(cfg.data.name))
    with torch.no_grad():
        noise = torch.randn(int(settings.sample_count), generator.latent_dim,
                            generator=torch.Generator().manual_seed(int(cfg.seed)))
        save_image((generator(noise.to(device)) + 1) / 2, folder / SAMPLES_FILE, nrow=8)
    record = {"task": "gan", "command": command or "scripts/train_gan.py:train_gan (called in-process)",
              "run_dir": str(folder), "seed": int(cfg.seed), **git_state(),
              "config": OmegaConf.to_container(cfg, resolve=True), "data": str(cfg.data.name),
              "image_shape": list(image_shape), "normalization": {"mean": mean, "std": std},
              "device": str(device), "steps": step, "epochs": len(losses), "wall_time_s": time.time() - started,
              "checkpoint": str(checkpoint), "samples": str(folder / SAMPLES_FILE), "losses": losses}
    write_record(folder, record)
    return record


@hydra.main(config_path="../cfg", config_name="gan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = exit_on_user_error(lambda c: train_gan(c, " ".join(["python", *sys.argv])), cfg)
    print(f"generator: {record['checkpoint']} ({record['steps']} steps, {record['wall_time_s']:.0f} s); "
          f"samples: {record['samples']}; distill with augment=synthetic augment.generator={record['checkpoint']}")


if __name__ == "__main__":
    main()

"""What every side of the benchmark (benchmarks/training.py) reads alike: the CIFAR-100-shaped data, its
normalisation and the sizes (its own module, so the sides' modules import it without importing each other)."""
from __future__ import annotations

CIFAR100_TRAIN = 50_000
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
CRD_NEGATIVES = 16_384


def random_cifar100(count: int):
    """(images uint8 (N, 3, 32, 32), labels): the same data for every side."""
    import torch
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 100, (count,), generator=generator)


def normalise(images):
    """uint8 batch -> normalised float batch (CIFAR-100 statistics), the one data cost every side pays."""
    import torch
    mean = torch.tensor(CIFAR100_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(CIFAR100_STD).view(3, 1, 1) * 255
    return images.float().sub_(mean).div_(std)


def images_needed(args) -> int:
    """One batch per warm-up, timed and profiled step."""
    return args.batch * (args.warmup + args.steps + getattr(args, "profile_steps", 0))

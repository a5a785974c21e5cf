"""A shuffling sampler whose order is a pure function of (seed, epoch)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSeededRandomSampler(Sampler[int]):
    """Lightning calls `set_epoch` each epoch, so a resumed run sees exactly the order an uninterrupted run
    would have seen (the default RandomSampler draws from the global RNG, which a restart does not restore)."""

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class EpochSeededDrawSampler(EpochSeededRandomSampler):
    """The same order, each position paired with the epoch's draw seed: the dataset seeds the random
    training transform from (draw seed, example), so crops and flips are a function of (seed, epoch,
    example) too - identical after a resume and whatever the number of loader workers."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draw = self.seed * 1_000_003 + self.epoch
        return iter((position, draw) for position in super().__iter__())

"""Samplers whose order is a pure function of (seed, epoch), and each process's share of them under
multi-process (DDP) training."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from errors import ConfigError


def hashed_seed(*words: int) -> int:
    """A 63-bit seed that is a hash of the integers `words` (e.g. seed, epoch, batch), so one draw can be
    redrawn alone (a resumed run) and no other use of a random generator shifts it."""
    words = [int(v) % 2**64 for v in words]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


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


class ProcessShard(Sampler):
    """Process `rank`'s share, of `processes`, of an order (`order`: a sampler, or None for 0..length-1):
    its items rank, rank + P, rank + 2P, ... So with batch B each, step k's P batches together are items
    kPB .. (k+1)PB - 1 of the order: what one process with batch P*B takes at step k.

    Training (`pad=True`): when the order's length is not a multiple of P, it is topped up with its own
    first items (as torch's DistributedSampler does), so every process takes the same number of steps (DDP
    needs them all at every gradient exchange). Evaluation (`pad=False`): nothing is added, so each example
    is counted exactly once; shares differ by at most one example. `set_epoch` reaches the order."""

    def __init__(self, order: Sampler | None, length: int, rank: int, processes: int, pad: bool) -> None:
        if length < processes:
            raise ConfigError(f"a set of {length} examples cannot be shared by {processes} processes (each needs at "
                              f"least one); use more data (data.val_size, data.test_subset) or fewer devices "
                              f"(trainer.devices)")
        self.order, self.length, self.rank, self.processes, self.pad = order, int(length), rank, processes, pad

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.order, "set_epoch"):
            self.order.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.order, "epoch", 0))

    def __iter__(self) -> Iterator:
        items = list(self.order) if self.order is not None else list(range(self.length))
        if self.pad:
            items += items[: len(self) * self.processes - len(items)]
        return iter(items[self.rank:: self.processes])

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.length / self.processes)
        return len(range(self.rank, self.length, self.processes))

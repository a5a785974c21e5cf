"""Samplers whose order is a pure function of (seed, epoch), and each process's share of them under
multi-process (DDP) training."""
from __future__ import annotations

import hashlib
import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

from errors import ConfigError


def hashed_seed(*words: int) -> int:
    """A 63-bit seed that is a hash of the integers `words` (e.g. seed, epoch, batch), so one draw can be
    redrawn alone (a resumed run) and no other use of a random generator shifts it. BLAKE2b of the words as
    64-bit integers: 3 us, against numpy's SeedSequence's 18 us, paid at every training step."""
    data = b"".join((int(word) % 2**64).to_bytes(8, "little") for word in words)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


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
    """Process `rank`'s share, of `processes`, of an order (`order`: a sampler, or None for 0..length-1).

    Training (`batch_size` B given): the order is cut into global batches of P*B items and process r takes
    the r-th block of B of each, so at every step the P batches, in rank order, are the batch one process
    with batch P*B takes (what a term that gathers the processes' rows in rank order sees). The last, short
    global batch is split into P equal blocks, topped up with the order's first items when the length is not
    a multiple of P (as torch's DistributedSampler does), so every process takes the same number of steps
    (DDP needs them all at every gradient exchange).
    Evaluation (`batch_size` None): items rank, rank + P, ...; nothing added, so each example counts exactly
    once (shares differ by at most one). `set_epoch` reaches the order."""

    def __init__(self, order: Sampler | None, length: int, rank: int, processes: int,
                 batch_size: int | None = None) -> None:
        if length < processes:
            raise ConfigError(f"a set of {length} examples cannot be shared by {processes} processes (each needs at "
                              f"least one); use more data (data.val_size, data.test_subset) or fewer devices "
                              f"(trainer.devices)")
        self.order, self.length, self.rank, self.processes = order, int(length), rank, processes
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.order, "set_epoch"):
            self.order.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.order, "epoch", 0))

    def __iter__(self) -> Iterator:
        items = list(self.order) if self.order is not None else list(range(self.length))
        if self.batch_size is None:
            return iter(items[self.rank:: self.processes])
        items += items[: len(self) * self.processes - len(items)]
        step = self.processes * self.batch_size
        full = len(items) // step * step
        tail = (len(items) - full) // self.processes
        share = [item for start in range(0, full, step)
                 for item in items[start + self.rank * self.batch_size: start + (self.rank + 1) * self.batch_size]]
        return iter(share + items[full + self.rank * tail: full + (self.rank + 1) * tail])

    def __len__(self) -> int:
        if self.batch_size is None:
            return len(range(self.rank, self.length, self.processes))
        return math.ceil(self.length / self.processes)

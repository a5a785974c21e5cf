"""Fixed augmented views of the training examples, for a cached teacher (teacher=cached).

Position p * V + v of a `ViewDataset` is view v of training example p: the training transform run with the
torch RNG seeded by (view seed, the example's original index, v), so a view is the same image whenever it
is asked for, in any process. Its batches carry the index encoded as original index * V + v, which the
cached teacher decodes to look up its stored outputs for exactly that view."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from datamodules.sampling import hashed_seed


# How view seeds are derived; part of a teacher cache's key, so a table made with other draws is never reused.
VIEW_SEEDING = "blake2b"


def view_seed(seed: int, index: int, view: int) -> int:
    """The seed of one augmented view of one example (datamodules.sampling.hashed_seed, paid per image)."""
    return hashed_seed(seed, index, view)


def seeded_transform(transform, x, seed: int):
    """transform(x) with torch's global generator seeded by `seed` and restored after: its draws are a
    function of the seed. (Done on the generator itself: torch.random.fork_rng costs ~1 ms per call.)"""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        return transform(x)
    finally:
        generator.set_state(state)


class ViewDataset(Dataset):
    def __init__(self, examples: Dataset, views: int, seed: int) -> None:
        self.examples, self.views, self.seed = examples, int(views), int(seed)
        self.base, self.indices = examples.base, examples.indices  # as an IndexedDataset

    def __len__(self) -> int:
        return len(self.examples) * self.views

    def __getitem__(self, position: int):
        example, view = divmod(int(position), self.views)
        if self.examples.transform is None:  # nothing random to fix
            x, y, index = self.examples[example]
        else:
            x, y, index = seeded_transform(self.examples.__getitem__, example,
                                           view_seed(self.seed, int(self.indices[example]), view))
        return x, y, index * self.views + view


class EpochSeededViewSampler(Sampler[int]):
    """Each epoch: every example once, in a (seed, epoch)-seeded order, each in one of its V views drawn
    from the same generator (so a resumed run replays the uninterrupted run's batches)."""

    def __init__(self, examples: int, views: int, seed: int = 0) -> None:
        self.examples, self.views, self.seed, self.epoch = examples, views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.examples, generator=generator)
        views = torch.randint(self.views, (self.examples,), generator=generator)
        return iter((order * self.views + views).tolist())

    def __len__(self) -> int:
        return self.examples

"""Two augmented views of each training example in one batch: a weak one (the data's own training transform) and a
strong one (RandAugment after the crop and flip, as MLKD's anchor makes it: datamodules/strong_augment.py).

A term asks for them by declaring `train_views = ("strong",)` (losses/base.py); the run then calls
`KDDataModule.use_views`, and the training batches become (Views(weak, strong), y, index): still three items, the
inputs a named pair of equally shaped tensors whose rows are the same examples in the same order. Labels and
indices are the examples', once. Validation and test batches keep plain inputs. The two views are drawn apart:
each its own crop and flip, as the anchor's MultipleApply runs two independent transforms on one image.

DataLoader path: the draws of example e's view v are a function of (seed, epoch, e, v) (`seeded_transform`, as for
one view), so they do not depend on the number of workers or processes. Device-resident path
(datamodules/device_data.py): the weak view draws exactly as a one-view batch, the strong view from its own seed of
(seed, epoch, batch, 1). Under DDP both are shared out by `ProcessShard` like any batch: a sampler's items, not
tensors, are shared.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from datamodules.views import seeded_transform, view_seed

STRONG = "strong"
VIEW_NAMES = (STRONG,)  # the extra views the data side can make (the weak view is the batch's own)


class Views(NamedTuple):
    """The inputs of a two-view batch. DataLoader's collate and Lightning's device transfer keep the type."""

    weak: torch.Tensor
    strong: torch.Tensor

    def others(self) -> dict[str, torch.Tensor]:
        """The views beyond the weak one, by name (what a term reads as batch.views[name])."""
        return {STRONG: self.strong}


class TwoViewDataset(Dataset):
    """An IndexedDataset's examples as (Views(weak, strong), y, index): `examples.transform` makes the weak view,
    `strong_transform` the strong one. Reads a (position, draw seed) pair from EpochSeededDrawSampler like
    IndexedDataset does. Exposes `base`, `indices` and `transform` (the weak one), which device-resident loaders
    read."""

    def __init__(self, examples: Dataset, strong_transform) -> None:
        self.examples, self.strong_transform = examples, strong_transform
        self.base, self.indices, self.transform = examples.base, examples.indices, examples.transform

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int | tuple[int, int]):
        position, draw = i if isinstance(i, tuple) else (i, None)
        index = int(self.indices[position])
        raw, label = self.base[index]
        views = []
        for number, transform in enumerate((self.transform, self.strong_transform)):  # view 0 draws as one view does
            if transform is None:
                views.append(raw)
            elif draw is None:
                views.append(transform(raw))
            else:
                views.append(seeded_transform(transform, raw, view_seed(draw, index, number)))
        return Views(*views), torch.as_tensor(label, dtype=torch.int64), torch.as_tensor(index, dtype=torch.int64)

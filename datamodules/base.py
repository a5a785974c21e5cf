"""Shared LightningDataModule: a seeded train/val split of the training set, a separate test set, and
batches of (x, y, index) where index is the example's position in the original training (or test) set."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.sampling import EpochSeededRandomSampler
from errors import ConfigError, UserError


class DatasetNotFoundError(UserError, RuntimeError):
    pass


class IndexedDataset(Dataset):
    """`base[indices[i]]` with `transform` applied, returned as (x, y, indices[i])."""

    def __init__(self, base: Any, indices: Sequence[int], transform=None) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        x, y = self.base[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.as_tensor(y, dtype=torch.int64), torch.as_tensor(index, dtype=torch.int64)


class KDDataModule(pl.LightningDataModule):
    # Fixed datasets set these; configurable ones (synthetic) leave them None.
    true_num_classes: int | None = None
    true_input_shape: tuple[int, ...] | None = None

    def __init__(self, name: str, num_classes: int, input_shape: Sequence[int], data_dir: str = "data",
                 batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0,
                 val_size: int | float = 0.1, split_seed: int = 0, train_subset: int | None = None,
                 test_subset: int | None = None, pin_memory: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.name = name
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        if self.true_num_classes is not None and self.num_classes != self.true_num_classes:
            raise ConfigError(f"data.num_classes={self.num_classes} does not match {name} "
                              f"({self.true_num_classes} classes); remove the override")
        if self.true_input_shape is not None and self.input_shape != self.true_input_shape:
            raise ConfigError(f"data.input_shape={list(self.input_shape)} does not match {name} "
                              f"({list(self.true_input_shape)}); remove the override")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.data_dir = str(data_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.pin_memory = bool(pin_memory)
        self.seed = int(seed)
        self.train_set = self.val_set = self.test_set = None

    # -- what each dataset provides ---------------------------------------------------------------
    def load_train(self) -> Any:
        """The full training set, indexable as base[i] -> (raw x, label)."""
        raise NotImplementedError

    def load_test(self) -> Any:
        raise NotImplementedError

    train_transform = None
    eval_transform = None

    # -- split -------------------------------------------------------------------------------------
    def _split_indices(self, n_train: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, val indices) of the original training set; depends on split_seed only."""
        val_count = int(round(self.val_size * n_train)) if isinstance(self.val_size, float) else int(self.val_size)
        if not 0 <= val_count < n_train:
            raise ConfigError(f"data.val_size={self.val_size} leaves no training data out of {n_train} examples; "
                              f"use a smaller val_size (0 validates on the test set)")
        order = np.random.default_rng(self.split_seed).permutation(n_train)
        val, train = np.sort(order[:val_count]), order[val_count:]
        if self.train_subset is not None:
            train = train[: int(self.train_subset)]
        return np.sort(train), val

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.prepare_data()
        train_base, test_base = self.load_train(), self.load_test()
        self.train_indices, self.val_indices = self._split_indices(len(train_base))
        self.train_set = IndexedDataset(train_base, self.train_indices, self.train_transform)
        test_indices = np.arange(len(test_base))
        if self.test_subset is not None:
            test_indices = np.sort(np.random.default_rng(self.split_seed).permutation(len(test_base))
                                   [: int(self.test_subset)])
        self.test_set = IndexedDataset(test_base, test_indices, self.eval_transform)
        # val_size=0: validate on the test set (RepDistiller's protocol, which reports the last epoch).
        self.val_set = (IndexedDataset(train_base, self.val_indices, self.eval_transform)
                        if len(self.val_indices) else self.test_set)

    # -- loaders -----------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, EpochSeededRandomSampler(len(self.train_set), self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

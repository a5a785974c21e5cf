"""Shared LightningDataModule: a seeded train/val split of the training set, a separate test set, and
batches of (x, y, index) where index is the example's position in the original training (or test) set."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.device_data import DeviceBatches, DeviceData, check_supported
from datamodules.sampling import EpochSeededDrawSampler, EpochSeededRandomSampler, ProcessShard
from datamodules.tuples import ClassGroupedBatchSampler, TermBatchSampler, TupleBatchSampler
from datamodules.two_views import VIEW_NAMES, TwoViewDataset
from datamodules.views import EpochSeededViewSampler, ViewDataset, seeded_transform, view_seed
from errors import ConfigError, UserError


class DatasetNotFoundError(UserError, RuntimeError):
    """The data is not on disk and could not be fetched; the message says what to put where."""


class IndexedDataset(Dataset):
    """`base[indices[i]]` with `transform` applied, returned as (x, y, indices[i]).

    Keeping the original index lets later code route an example by identity (cross-fitting folds, memory
    banks), whatever subset or split it was drawn into."""

    def __init__(self, base: Any, indices: Sequence[int], transform=None) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int | tuple[int, int]):
        i, draw = i if isinstance(i, tuple) else (i, None)
        index = int(self.indices[i])
        x, y = self.base[index]
        if self.transform is not None and draw is not None:  # the transform's draws: a function of (draw, example)
            x = seeded_transform(self.transform, x, view_seed(draw, index, 0))
        elif self.transform is not None:
            x = self.transform(x)
        return x, torch.as_tensor(y, dtype=torch.int64), torch.as_tensor(index, dtype=torch.int64)


def check_crossfit(crossfit: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """(folds, held-out fold) from `data.crossfit`, or (None, None) when not cross-fitting."""
    folds = (crossfit or {}).get("folds")
    fold = (crossfit or {}).get("fold")
    if folds is None and fold is None:
        return None, None
    if folds is None or isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"data.crossfit.folds must be an integer >= 2, got {folds!r}; e.g. "
                          f"data.crossfit.folds=5 data.crossfit.fold=0")
    if fold is None or isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"data.crossfit.fold={fold!r} is out of range for {folds} folds; use 0 to {folds - 1} "
                          f"(the fold this teacher leaves out)")
    return folds, fold


def drops_lone_example(sampler, batch_size: int) -> bool:
    """Whether a training epoch (a `sampler`; None: evaluation, never) would end in a batch of one example,
    which is then left out (drop_last): BatchNorm cannot normalise a single example in training, and the
    anchors' CIFAR loaders never meet one (50000 examples at their batch sizes). The example is not lost for
    good: the epoch-seeded order puts another example last in the next epoch."""
    return sampler is not None and len(sampler) % int(batch_size) == 1 and len(sampler) > 1


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


class KDDataModule(pl.LightningDataModule):
    """Subclasses provide `load_train()` / `load_test()` (indexable as base[i] -> (raw x, label)) and,
    where needed, `prepare_data()`, `train_transform`, `eval_transform`.

    After `setup()`: `train_set`, `val_set`, `test_set` (IndexedDatasets) and `train_indices`, `val_indices`
    (original training-set indices). `val_size=0` validates on the test set (RepDistiller's protocol)."""

    # Fixed datasets set these; configurable ones (synthetic) leave them None.
    true_name: str | None = None
    true_num_classes: int | None = None
    true_input_shape: tuple[int, ...] | None = None
    train_transform = None
    eval_transform = None
    # Whether the whole dataset is held in memory as tensors, so `data.device_resident=true` can serve it.
    holds_whole_tensors = False
    # The strong augmented view's transform (datamodules/two_views.py), set by data that make one; `makes_strong_view`
    # says so before an instance exists (for the message that names them).
    strong_transform = None
    makes_strong_view = False
    train_views: tuple[str, ...] = ()  # the extra views training batches carry (use_views)

    def __init__(self, name: str, num_classes: int, input_shape: Sequence[int], data_dir: str = "data",
                 batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0,
                 val_size: int | float = 0.1, split_seed: int = 0, train_subset: int | None = None,
                 test_subset: int | None = None, pin_memory: bool = False, seed: int = 0,
                 crossfit: Mapping[str, Any] | None = None, device_resident: bool = False) -> None:
        super().__init__()
        self.name = name
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self._check_against_truth()
        # Sizes and splits are checked with every other typed value before a run builds anything (runs/validation.py).
        self.data_dir = str(data_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.train_subset = None if train_subset is None else int(train_subset)
        self.test_subset = None if test_subset is None else int(test_subset)
        self.pin_memory = bool(pin_memory)
        self.seed = int(seed)
        self.train_set = self.val_set = self.test_set = None
        self.train_indices = self.val_indices = None
        self.crossfit_folds, self.crossfit_fold = check_crossfit(crossfit)
        self.pool_limit: int | None = None
        # Opt-in: whole sets as tensors on the model's device, batches cut and augmented there (device_data.py).
        self.device_resident = check_supported(self, device_resident)
        self._device_data: DeviceData | None = None
        self._term_batches: TermBatchSampler | None = None

    def _check_against_truth(self) -> None:
        """One clear error when a config override contradicts what a fixed dataset is."""
        truth = self.true_name or self.name
        if self.true_name is not None and self.name != self.true_name:
            raise ConfigError(f"data.name={self.name} does not match {type(self).__name__} ({self.true_name}); "
                              f"pick the dataset with data={self.name} instead of overriding data.name")
        if self.true_num_classes is not None and self.num_classes != self.true_num_classes:
            raise ConfigError(f"data.num_classes={self.num_classes} does not match {truth} "
                              f"({self.true_num_classes} classes); remove the override")
        if self.true_input_shape is not None and self.input_shape != self.true_input_shape:
            raise ConfigError(f"data.input_shape={list(self.input_shape)} does not match {truth} "
                              f"({list(self.true_input_shape)}); remove the override")

    # -- what each dataset provides ---------------------------------------------------------------
    def load_train(self) -> Any:
        """The full training set, indexable as base[i] -> (raw x, label)."""
        raise NotImplementedError

    def load_test(self) -> Any:
        raise NotImplementedError

    # -- split -------------------------------------------------------------------------------------
    def _split_indices(self, n_train: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, val indices) of the original training set, both sorted.

        A permutation seeded by `split_seed` alone (never `seed`), so every run, teacher or student, holds
        out the same validation examples. `train_subset` keeps a seeded random part of the rest."""
        if isinstance(self.val_size, float):
            val_count = int(round(self.val_size * n_train))
        else:
            val_count = int(self.val_size)
        if not 0 <= val_count < n_train:
            raise ConfigError(f"data.val_size={self.val_size} leaves no training data out of {n_train} examples; "
                              f"use a smaller val_size (0 validates on the test set)")
        order = np.random.default_rng(self.split_seed).permutation(n_train)
        val, train = order[:val_count], order[val_count:]
        if self.train_subset is not None:
            train = train[: self.train_subset]
        return np.sort(train), np.sort(val)

    def fold_assignment(self, folds: int) -> np.ndarray:
        """Cross-fitting folds over the original training set (after `setup`): entry i is the fold of
        training example i, or -1 for examples outside the training split (validation). A permutation of
        the training indices seeded by `split_seed` alone, so teacher runs and student runs agree."""
        assignment = np.full(self._train_base_size, -1, dtype=np.int64)
        order = np.random.default_rng([self.split_seed, folds]).permutation(self.train_indices)
        for fold, members in enumerate(np.array_split(order, folds)):
            assignment[members] = fold
        return assignment

    def limit_train_pool(self, count: int) -> None:
        """Train on a seeded random `count` of the training split (a teacher-call budget). Before `setup`."""
        if self.train_set is not None:
            raise RuntimeError("limit_train_pool must be called before setup()")
        self.pool_limit = int(count)

    def train_pool_indices(self) -> np.ndarray:
        """Original training-set indices the train loader draws from (after `setup`): the training split,
        less the held-out fold when cross-fitting a teacher, cut to `pool_limit` under a teacher budget."""
        pool = self.train_indices
        if self.crossfit_folds is not None:
            pool = pool[self.fold_assignment(self.crossfit_folds)[pool] != self.crossfit_fold]
        if self.pool_limit is not None:
            if self.pool_limit > len(pool):
                raise ConfigError(f"teacher.budget={self.pool_limit} is more than the {len(pool)} training examples "
                                  f"of {self.name}; lower it, or drop it (teacher.budget=null) to use them all")
            pool = np.sort(np.random.default_rng([self.split_seed, self.pool_limit]).permutation(pool)[: self.pool_limit])
        return pool

    def train_labels(self) -> torch.Tensor:
        """The label of every example of the original training set (int64), -1 for those the train loader
        never draws (validation, a held-out fold, outside a teacher budget): what a term that samples
        training examples by class needs (CRD's other-class negatives). After `setup`."""
        base, pool = self.train_set.base, self.train_set.indices
        if hasattr(base, "targets"):  # torchvision sets (CIFAR, ImageFolder)
            known = torch.as_tensor(np.asarray(base.targets), dtype=torch.int64)[pool]
        elif hasattr(base, "tensors"):  # TensorDataset (mnist1d, digits, synthetic, text, tabular)
            known = torch.as_tensor(base.tensors[1], dtype=torch.int64)[pool]
        else:  # any other indexable set: read the pool's labels once
            known = torch.tensor([int(base[int(i)][1]) for i in pool], dtype=torch.int64)
        labels = torch.full((len(base),), -1, dtype=torch.int64)
        labels[torch.as_tensor(pool)] = known
        return labels

    def _test_indices(self, n_test: int) -> np.ndarray:
        if self.test_subset is None:
            return np.arange(n_test)
        return np.sort(np.random.default_rng(self.split_seed).permutation(n_test)[: self.test_subset])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        # Lightning calls prepare_data itself; direct users may not, and then this fetches or fails clearly.
        self.prepare_data()
        train_base, test_base = self.load_train(), self.load_test()
        self._train_base_size = len(train_base)
        self.train_indices, self.val_indices = self._split_indices(len(train_base))
        self.train_set = IndexedDataset(train_base, self.train_pool_indices(), self.train_transform)
        self.test_set = IndexedDataset(test_base, self._test_indices(len(test_base)), self.eval_transform)
        # Val examples come from the training files but are evaluated like test examples: no augmentation.
        self.val_set = (IndexedDataset(train_base, self.val_indices, self.eval_transform)
                        if len(self.val_indices) else self.test_set)

    # -- loaders -----------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler=None) -> DataLoader | DeviceBatches:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        sampler = self._process_share(dataset, sampler, batch_size)
        drop_last = drops_lone_example(sampler, batch_size)
        # Fixed views (a cached teacher) keep the DataLoader: its stored logits belong to torchvision's draws.
        if self.device_resident and not isinstance(dataset, ViewDataset):
            if self._device_data is None:
                self._device_data = DeviceData(self)
            return self._device_data.loader(dataset, batch_size, sampler, drop_last)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def _process_share(self, dataset, sampler, batch_size: int):
        """Under a multi-process trainer (DDP), this process's share (ProcessShard): of the training order (a
        sampler) in blocks of the batch, padded to equal shares; of an evaluation set (no sampler) without
        padding. The trainer is told not to add its own DistributedSampler (runs/training.py `build_trainer`)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size == 1:
            return sampler
        return ProcessShard(sampler, len(dataset), trainer.global_rank, trainer.world_size,
                            batch_size if sampler is not None else None)

    def train_dataloader(self) -> DataLoader:
        # Order is a pure function of (seed, epoch): a resumed run replays the uninterrupted run's batches.
        if self._term_batches is not None:
            return DataLoader(self.train_set, batch_sampler=self._term_batches, num_workers=self.num_workers,
                              pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        served = TwoViewDataset(self.train_set, self.strong_transform) if self.train_views else self.train_set
        if isinstance(self.train_set, ViewDataset):
            sampler = EpochSeededViewSampler(len(self.train_set.examples), self.train_set.views, self.seed)
        else:
            # random transforms draw from (seed, epoch, example) (the device path seeds its own batch draws)
            sampler_type = (EpochSeededDrawSampler if self.augments and not self.device_resident
                            else EpochSeededRandomSampler)
            sampler = sampler_type(len(self.train_set), self.seed) if self.train_set is not None else None
        return self._loader(served, self.batch_size, sampler)

    @property
    def augments(self) -> bool:
        """Whether training examples are drawn at random (a random training transform)."""
        return self.train_transform is not None and self.train_transform is not self.eval_transform

    def use_views(self, views: tuple[str, ...], asked_by: str) -> None:
        """Training batches carry these extra augmented views of each example (datamodules/two_views.py), which
        `asked_by` (e.g. "kd.terms.instance") reads; one ConfigError, naming the data that make them, otherwise."""
        unknown = sorted(set(views) - set(VIEW_NAMES))
        if unknown:
            raise ConfigError(f"{asked_by} asks for the views {unknown}; the data side makes {list(VIEW_NAMES)}")
        if views and not self.makes_strong_view:
            makers = sorted(cls.true_name for cls in _subclasses(KDDataModule) if cls.makes_strong_view and cls.true_name)
            raise ConfigError(f"{asked_by} reads a strong augmented view of each training example, which data={self.name} "
                              f"does not make (it has no image augmentation to strengthen); use "
                              f"{' or '.join(f'data={name}' for name in makers)}")
        self.train_views = tuple(views)

    def use_fixed_views(self, views: int, seed: int) -> ViewDataset:
        """Serve the training set as `views` fixed augmented views per example (after `setup`)."""
        if not isinstance(self.train_set, ViewDataset):
            self.train_set = ViewDataset(self.train_set, views, seed)
        return self.train_set

    # -- batches a distillation term makes its own (datamodules/tuples.py) -------------------------------
    def _term_batch_settings(self, what: str) -> dict:
        """(count, batch_size, seed, views, fresh_draws) for a term's batch sampler; after `setup` and after a
        cached teacher has fixed its views."""
        if self.train_set is None:
            raise RuntimeError(f"{what} must be set up after setup()")
        views = self.train_set.views if isinstance(self.train_set, ViewDataset) else 1
        if self.device_resident and views == 1:
            raise ConfigError(f"{what} are drawn by a batch sampler, which data.device_resident=true does not serve; "
                              f"set data.device_resident=false")
        count = len(self.train_set) // views
        return {"count": count, "batch_size": self.batch_size, "seed": self.seed, "views": views,
                "fresh_draws": views == 1 and self.augments}

    def use_tuple_batches(self, positives: int, negatives: int, pool_size: int) -> None:
        """Train on tuples of examples from a fixed pool (comparative KD's CKDSample; datamodules/tuples.py)."""
        settings = self._term_batch_settings("tuple batches (kd.terms.ckd pairs: pool)")
        self._term_batches = TupleBatchSampler(**settings, positives=positives, negatives=negatives,
                                               pool_size=pool_size)

    def use_class_grouped_batches(self, per_class: int) -> None:
        """Train on batches of `per_class` examples of random classes (comparative KD's RKDSampler)."""
        settings = self._term_batch_settings("class-grouped batches")
        examples = self.train_set.examples if isinstance(self.train_set, ViewDataset) else self.train_set
        self._term_batches = ClassGroupedBatchSampler(**settings, labels=self._labels_of(examples),
                                                      per_class=per_class)

    @staticmethod
    def _labels_of(dataset: IndexedDataset) -> np.ndarray:
        """The labels of an IndexedDataset's examples, without decoding inputs where the base keeps `targets`."""
        targets = getattr(dataset.base, "targets", None)
        if targets is not None:
            return np.asarray(targets)[dataset.indices]
        return np.asarray([int(dataset.base[int(i)][1]) for i in dataset.indices])

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def teardown(self, stage: str | None = None) -> None:
        # Lightning calls this after fit, validate and test: give back the device copy of resident data.
        if self._device_data is not None:
            self._device_data.release()

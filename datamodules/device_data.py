"""Device-resident batches for in-memory datasets (`data.device_resident=true`).

The whole dataset lives in one tensor (uint8 images for CIFAR, the stored float32 for mnist1d, digits and
synthetic); each batch is gathered from it by index, and the CIFAR training recipe (random crop of the
4-padded image, horizontal flip, normalisation) runs on the batch, vectorised, on the batch's device. No
DataLoader, no worker processes, no per-image PIL work.

What stays the same as the DataLoader path: the splits and indices (the datamodule's `setup` is unchanged;
the loaders read `train_set.indices` etc.), batches of (x, y, index) with index the original example index,
the training order (the same `EpochSeededRandomSampler` permutation, so a pure function of (seed, epoch)),
drop_last False, unaugmented validation and test batches, and under DDP each process's share of every loader
(the datamodule's `ProcessShard`, handed in as the sampler). What differs: the crop offsets and flips are
drawn from a torch.Generator seeded by (seed, epoch, batch) on the data's device instead of the global RNG in
torchvision's transforms: the same distribution, other draws (and CPU and CUDA draw differently). Under DDP,
process r of P draws its batch b from batch number b * P + r, so no two processes repeat each other's draws
(and one process draws exactly as before).

How batches reach the device: the loaders read the trainer's `strategy.root_device` when an epoch's
iteration starts (the datamodule is attached to the trainer by then) and move the resident tensors there once,
keeping them for later epochs, so every batch is born on the model's device and Lightning's batch transfer is a
no-op (`Tensor.to` on the same device returns the tensor). Without a trainer (tests, scripts) they stay on
the CPU or go to the device passed in. The datamodule's `teardown` drops the device copy.

How the epoch reaches the order: a training `DeviceBatches` exposes its sampler as `.sampler`; Lightning's fit loop calls `set_epoch` on any loader's `.sampler` at every epoch start (also after
a resume, with the restored epoch), and `iter()` reads the epoch from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.sampling import hashed_seed
from datamodules.strong_augment import FixMatchRandAugment
from datamodules.two_views import Views
from errors import ConfigError

DeviceLike = torch.device | str | Callable[[], torch.device] | None


# --------------------------------------------------------------------------------------------- support
def check_supported(datamodule: Any, value: Any) -> bool:
    """`data.device_resident` as a bool, or one ConfigError: it must be a bool, and the dataset must be held
    in memory as whole tensors (CIFAR, mnist1d, digits, synthetic)."""
    if not isinstance(value, bool):
        raise ConfigError(f"data.device_resident must be true or false, got {value!r}")
    if not value:
        return False
    if not getattr(datamodule, "holds_whole_tensors", False):
        raise ConfigError(f"data.device_resident=true needs a dataset held in memory as whole tensors (cifar10, "
                          f"cifar100, mnist1d, digits, synthetic); {datamodule.name} ({type(datamodule).__name__}) "
                          f"is read example by example: set data.device_resident=false (data.num_workers speeds "
                          f"it up instead)")
    return True


def resident_tensors(base: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, int64 labels) of a whole dataset, on the CPU: a TensorDataset's tensors as stored, a
    torchvision CIFAR set's HWC uint8 array as NCHW uint8 (the layout ToTensor produces)."""
    if hasattr(base, "tensors"):
        x, y = base.tensors[:2]
        return x, torch.as_tensor(y, dtype=torch.int64)
    data, targets = getattr(base, "data", None), getattr(base, "targets", None)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4 and targets is not None:
        return (torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(),
                torch.as_tensor(np.asarray(targets), dtype=torch.int64))
    raise ConfigError(f"data.device_resident=true cannot hold {type(base).__name__} as one tensor; set "
                      f"data.device_resident=false")


def normalise_device(device: torch.device | str) -> torch.device:
    """`cuda` and `cuda:0` name the same device; compare them as the one a tensor reports."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class ResidentTensors:
    """One dataset's inputs and labels: on the CPU until first asked for on a device, then moved there once
    (the train and validation loaders share the training set's copy)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        self.cpu = (x, y)
        self._moved: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.cpu[0])

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        device = normalise_device(device)
        if device.type == "cpu":
            return self.cpu
        if self._moved is None or self._moved[0].device != device:
            self._moved = None  # free the old copy before making the new one
            self._moved = (self.cpu[0].to(device), self.cpu[1].to(device))
        return self._moved

    def release(self) -> None:
        self._moved = None


# ------------------------------------------------------------------------------------------ augmentation
def crop_and_flip(x: torch.Tensor, padding: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Per sample b: the HxW window at (offsets[b, 0], offsets[b, 1]) of x[b] zero-padded by `padding` on
    every side, mirrored left-right where flips[b] - torchvision's RandomCrop(size=(H, W), padding) then
    RandomHorizontalFlip, for given draws. One gather over the whole batch, no loop over samples."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4) if padding else x  # zeros, as RandomCrop's fill=0
    width = w + 2 * padding
    rows = offsets[:, :1] + torch.arange(h, device=x.device)                   # (b, h): rows of the padded image
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]    # (b, w): its columns, mirrored
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


@dataclass(frozen=True)
class BatchTransform:
    """torchvision's per-image transform as one operation on a batch: random crop (offsets uniform in
    0..2*padding on both axes) and flip, then uint8 -> [0, 1] (ToTensor) and per-channel normalisation."""

    padding: int = 0
    flip_p: float = 0.0
    to_unit: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rand_augment_ops: int = 0  # the strong view's RandAugment (datamodules/strong_augment.py) after crop and flip

    @property
    def random(self) -> bool:
        return self.padding > 0 or self.flip_p > 0 or self.rand_augment_ops > 0

    def deterministic(self) -> "BatchTransform":
        """This transform without its random part (what evaluation sees)."""
        return replace(self, padding=0, flip_p=0.0, rand_augment_ops=0)

    @classmethod
    def from_torchvision(cls, transform: Any, image_shape: Sequence[int]) -> "BatchTransform":
        """Reads a torchvision Compose of RandomCrop, RandomHorizontalFlip, ToTensor and Normalize (or, for the
        strong view, PILToTensor, FixMatchRandAugment and ConvertImageDtype(float32) in ToTensor's place); anything
        else stops with a ConfigError (the device path could not promise the same distribution)."""
        from torchvision import transforms as T

        if transform is None:
            return cls()
        steps = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
        found: dict[str, Any] = {}
        for step in steps:
            spatial_ok = "mean" not in found  # zero padding is black in pixels, not after normalising
            if isinstance(step, T.RandomCrop) and spatial_ok:
                pads = [step.padding] if isinstance(step.padding, int) else list(step.padding or [0])
                if (tuple(step.size) != tuple(image_shape[-2:]) or len(set(pads)) != 1
                        or step.padding_mode != "constant" or step.fill != 0):
                    raise cls._unsupported(step, "only RandomCrop(<image size>, padding=P) with equal zero "
                                                 "padding on every side is reproduced")
                found["padding"] = int(pads[0])
            elif isinstance(step, T.RandomHorizontalFlip) and spatial_ok:
                found["flip_p"] = float(step.p)
            elif isinstance(step, T.ToTensor) or (isinstance(step, T.ConvertImageDtype) and spatial_ok
                                                   and step.dtype == torch.float32 and found.get("uint8")):
                found["to_unit"] = True
            elif isinstance(step, T.PILToTensor) and spatial_ok and "to_unit" not in found:
                found["uint8"] = True  # the resident images already are uint8 CHW tensors
            elif isinstance(step, FixMatchRandAugment) and found.get("uint8") and "to_unit" not in found:
                found["rand_augment_ops"] = step.ops
            elif isinstance(step, T.Normalize):
                found["mean"] = tuple(float(v) for v in step.mean)
                found["std"] = tuple(float(v) for v in step.std)
            else:
                raise cls._unsupported(step, "crop and flip must come before Normalize, and no other step is "
                                             "reproduced")
        found.pop("uint8", None)
        return cls(**found)

    @staticmethod
    def _unsupported(step: Any, why: str) -> ConfigError:
        return ConfigError(f"data.device_resident=true cannot reproduce the transform step {step!r} on the batch "
                           f"({why}); set data.device_resident=false")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The batch x (N, C, H, W; uint8 if to_unit) transformed; the random steps draw from `generator`
        (None: only the deterministic steps run)."""
        if self.random and generator is not None:
            n = x.shape[0]
            offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator, device=x.device)
            flips = torch.rand(n, generator=generator, device=x.device) < self.flip_p
            x = crop_and_flip(x, self.padding, offsets, flips)  # still uint8: a quarter of the bytes to move
        if self.rand_augment_ops and generator is not None:
            x = FixMatchRandAugment(self.rand_augment_ops)(x, generator)
        if self.to_unit:
            x = x.to(torch.float32).div(255)  # ToTensor's arithmetic, so results match it bit for bit
        elif self.mean is not None:
            x = x.clone()  # normalised in place below
        if self.mean is not None:
            # Normalize's float32 subtract-then-divide, one scalar op per channel: CPU broadcasting over a
            # (C, 1, 1) tensor is several times slower. The scalars are the float32 values Normalize uses.
            channels = x.shape[1]
            means = self.mean * channels if len(self.mean) == 1 else self.mean  # one value: every channel,
            stds = self.std * channels if len(self.std) == 1 else self.std      # as Normalize broadcasts it
            for channel, (mean, std) in enumerate(zip(means, stds)):
                x[:, channel].sub_(float(np.float32(mean))).div_(float(np.float32(std)))
        return x


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """Seed of one batch's augmentation draws: a hash of (seed, epoch, batch), so any batch can be redrawn
    alone (a resumed run) and no other use of a random generator shifts it."""
    return hashed_seed(seed, epoch, batch)


# ---------------------------------------------------------------------------------------------- loaders
class DeviceBatches:
    """An iterable of (x, y, index) batches cut from resident tensors: what the datamodule's loaders return
    under `data.device_resident=true`. `len()` is the number of batches (a short last one left out with
    drop_last, as a DataLoader does).

    rows: original indices of the examples served (positions in `resident`). sampler: an epoch-seeded
    sampler over positions in `rows` (training), a ProcessShard (DDP), or None for `rows` in order. device:
    where the batches are made - a device, or a callable asked when each iteration starts (the trainer's
    device)."""

    batch_sampler = None  # Lightning looks for it next to `sampler` when checking for shuffling

    def __init__(self, resident: ResidentTensors, rows: Sequence[int] | torch.Tensor, batch_size: int,
                 transform: BatchTransform | None = None, sampler: Any = None, seed: int = 0,
                 augment: bool = True, device: DeviceLike = None, strong: BatchTransform | None = None,
                 drop_last: bool = False) -> None:
        self.resident = resident
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        self.batch_size = int(batch_size)
        self.transform = transform or BatchTransform()
        self.sampler = sampler
        self.seed = int(seed)
        self.augment = bool(augment)
        self.device = device
        self.strong = strong  # given: batches of Views(weak, strong) (datamodules/two_views.py)
        self.drop_last = bool(drop_last)
        self._rows_on: torch.Tensor | None = None

    def __len__(self) -> int:
        served = len(self.rows) if self.sampler is None else len(self.sampler)
        return served // self.batch_size if self.drop_last else math.ceil(served / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def target_device(self) -> torch.device:
        device = self.device() if callable(self.device) else self.device
        return normalise_device(device if device is not None else "cpu")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        # A generator: nothing is read until the first batch is asked for. Lightning creates the iterator
        # before it calls set_epoch on the first epoch of a resumed fit, so the epoch is read here, lazily
        # (as a DataLoader reads its sampler).
        epoch = self.epoch
        order = None if self.sampler is None else torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        device = self.target_device()
        x_all, y_all = self.resident.on(device)
        if self._rows_on is None or self._rows_on.device != device:
            self._rows_on = self.rows.to(device)
        rows = self._rows_on if order is None else self._rows_on[order.to(device)]
        transform = self.transform if self.augment else self.transform.deterministic()
        generator = torch.Generator(device=device) if transform.random else None
        strong_generator = torch.Generator(device=device) if self.strong is not None else None
        rank, processes = getattr(self.sampler, "rank", 0), getattr(self.sampler, "processes", 1)
        for batch in range(len(self)):
            index = rows[batch * self.batch_size: (batch + 1) * self.batch_size]
            examples = x_all.index_select(0, index)
            number = batch * processes + rank
            if generator is not None:
                generator.manual_seed(batch_seed(self.seed, epoch, number))
            x = transform(examples, generator)
            if strong_generator is not None:  # its own draws: the weak view draws as a one-view batch
                strong_generator.manual_seed(hashed_seed(self.seed, epoch, number, 1))
                x = Views(x, self.strong(examples, strong_generator))
            yield x, y_all.index_select(0, index), index


class DeviceData:
    """A set-up datamodule's training and test sets as resident tensors, and loaders over them."""

    def __init__(self, datamodule: Any, device: DeviceLike = None) -> None:
        self.datamodule = datamodule
        self.device = device
        self.train = ResidentTensors(*resident_tensors(datamodule.train_set.base))
        self.test = ResidentTensors(*resident_tensors(datamodule.test_set.base))

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device() if callable(self.device) else torch.device(self.device)
        trainer = getattr(self.datamodule, "trainer", None)
        return torch.device("cpu") if trainer is None else trainer.strategy.root_device

    def _resident_for(self, dataset: Any) -> ResidentTensors:
        # Loaders index the resident tensors by original index, so the dataset must be a view of one of them.
        if dataset.base is self.datamodule.train_set.base:
            return self.train  # the training split, and the validation rows held out of it
        if dataset.base is self.datamodule.test_set.base:
            return self.test
        raise RuntimeError(f"no resident copy of {type(dataset.base).__name__} for a device-resident loader")

    def loader(self, dataset: Any, batch_size: int, sampler: Any = None, drop_last: bool = False) -> DeviceBatches:
        """Batches of an IndexedDataset (`base`, `indices`, `transform`) in the sampler's order (None: in
        order), with the dataset's own transform, read into its batch form."""
        resident = self._resident_for(dataset)
        transform = BatchTransform.from_torchvision(dataset.transform, self.datamodule.input_shape)
        strong_transform = getattr(dataset, "strong_transform", None)  # a TwoViewDataset's
        strong = (None if strong_transform is None
                  else BatchTransform.from_torchvision(strong_transform, self.datamodule.input_shape))
        if any(t.to_unit for t in (transform, strong) if t is not None) and resident.cpu[0].dtype != torch.uint8:
            raise ConfigError("data.device_resident=true: ToTensor's scaling needs uint8 images; set "
                              "data.device_resident=false")
        return DeviceBatches(resident, dataset.indices, batch_size, transform, sampler, self.datamodule.seed,
                             device=self._device, strong=strong, drop_last=drop_last)

    def release(self) -> None:
        self.train.release()
        self.test.release()

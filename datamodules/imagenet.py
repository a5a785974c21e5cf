"""ImageNet (ILSVRC-2012) in torchvision's folder layout, with a choice of JPEG decoder.

    <root>/train/<wnid>/*.JPEG     1000 class folders of training images
    <root>/val/<wnid>/*.JPEG       the 50k labelled val images, sorted into the same class folders (the test set,
                                   as ImageNet papers report on it)

Transforms are the anchors' (torchvision's reference recipe, as torchdistill and mdistiller use it):
RandomResizedCrop(224) + horizontal flip for training, Resize(256) + CenterCrop(224) for evaluation, ImageNet
mean/std (datamodules/folders.py). `decode` picks who turns the files into pixels:

  pil          PIL in the loader workers (torchvision's ImageFolder default).
  torchvision  torchvision.io.decode_jpeg (libjpeg-turbo) in the loader workers, the crops on uint8 tensors.
  torchvision with decode_device=cuda: the workers only read the files; each batch is decoded on the GPU by
               nvjpeg (torchvision.io.decode_jpeg(device="cuda"), batched) in the main process, before the batch
               moves to the device, and cropped there. decode_device=cpu runs that same batched path on the CPU
               (what the suite tests on machines without a GPU). Random crops draw from a per-image seed taken in
               the worker, which the training sampler's (seed, epoch, example) draws fix: a resumed run crops as
               the uninterrupted one did, as with the other decoders.

The three give the same images up to the decoders' and resizers' rounding (PIL resizes PIL images, the others
uint8 tensors with antialiasing). scripts/benchmark_imagenet_decode.py times them on the same files. NVIDIA
DALI is not used: torchvision's nvjpeg path needs no other package. torchvision 0.29 marks its image decoders
deprecated in favour of TorchCodec (a warning on every call, silenced here); they still work, and this module is
the one place to move when they go.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from torchvision import transforms
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from datamodules.base import IndexedDataset
from datamodules.folders import ImageFolderDataModule
from datamodules.views import seeded_transform, view_seed
from errors import ConfigError

warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
                        category=DeprecationWarning)

DECODERS = ("pil", "torchvision")
DECODE_DEVICES = (None, "cpu", "cuda")


def decode_file(path: str) -> torch.Tensor:
    """An image file as a (3, H, W) uint8 tensor, by torchvision's decoders (any format they read, RGB)."""
    return decode_image(read_file(path), mode=ImageReadMode.RGB)


def tensor_transforms(pipeline: transforms.Compose) -> transforms.Compose:
    """The same crops and normalisation for uint8 image tensors: ToTensor (PIL -> float in [0, 1]) becomes
    ConvertImageDtype, which scales uint8 to [0, 1] the same way."""
    steps = [transforms.ConvertImageDtype(torch.float32) if isinstance(step, transforms.ToTensor) else step
             for step in pipeline.transforms]
    return transforms.Compose(steps)


@dataclass
class EncodedImage:
    """A file's bytes, read in a loader worker, to be decoded with its batch; `seed` fixes its random crop. A
    numpy array, not a tensor: a worker hands tensors over through one shared-memory file descriptor each, which a
    batch of hundreds of small files exhausts; arrays are pickled with the batch."""

    data: np.ndarray
    seed: int


class EncodedImages(Dataset):
    """An IndexedDataset of image files served undecoded: (EncodedImage, label, index)."""

    def __init__(self, examples: IndexedDataset) -> None:
        self.examples = examples
        self.samples = examples.base.samples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        i, draw = i if isinstance(i, tuple) else (i, None)
        index = int(self.examples.indices[i])
        path, label = self.samples[index]
        # With the sampler's draw, as IndexedDataset seeds the transform; without, any seed (evaluation is not random).
        seed = view_seed(draw, index, 0) if draw is not None else int(torch.randint(2**62, ()))
        return EncodedImage(np.fromfile(path, dtype=np.uint8), seed), torch.as_tensor(label), torch.as_tensor(index)


def collate_encoded(batch):
    images = [row[0] for row in batch]
    labels, indices = default_collate([row[1:] for row in batch])
    return images, labels, indices


class ImageNetDataModule(ImageFolderDataModule):
    """data=imagenet: ImageFolderDataModule with ImageNet's name and the decoder choice (module docstring)."""

    def __init__(self, *args, decode: str = "pil", decode_device: str | None = None, **kwargs) -> None:
        if decode not in DECODERS:
            raise ConfigError(f"data.decode={decode!r} is not a decoder; use one of {list(DECODERS)}")
        if decode_device not in DECODE_DEVICES:
            raise ConfigError(f"data.decode_device={decode_device!r}: use null (decode in the loader workers), cpu "
                              f"or cuda (decode each batch there)")
        if decode_device is not None and decode != "torchvision":
            raise ConfigError(f"data.decode_device={decode_device} decodes batches with torchvision; set "
                              f"data.decode=torchvision (or data.decode_device=null for PIL in the workers)")
        if decode_device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("data.decode_device=cuda needs a CUDA GPU and none is visible here; use "
                              "data.decode_device=null (decode in the loader workers)")
        super().__init__(*args, **kwargs)
        self.decode, self.decode_device = decode, decode_device
        if decode == "torchvision":
            self.train_transform = tensor_transforms(self.train_transform)
            self.eval_transform = tensor_transforms(self.eval_transform)

    def _dataset(self, folder: Path):
        dataset = super()._dataset(folder)
        if self.decode == "torchvision":
            dataset.loader = decode_file
        return dataset

    # -- batches decoded on a device ------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler=None):
        if self.decode_device is None or not isinstance(dataset, IndexedDataset):
            return super()._loader(dataset, batch_size, sampler)
        loader = super()._loader(EncodedImages(dataset), batch_size, sampler)
        loader.collate_fn = collate_encoded
        return loader

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, indices = batch
        if not isinstance(images, list):
            return batch
        transform = self.train_transform if self.trainer is not None and self.trainer.training else self.eval_transform
        return self.decode_batch(images, transform), labels, indices

    def decode_batch(self, images: list[EncodedImage], transform) -> torch.Tensor:
        """The batch's files decoded together on `decode_device` (nvjpeg on a GPU), each cropped with its seed."""
        device = torch.device(self.decode_device)
        files = [torch.from_numpy(image.data) for image in images]
        try:
            decoded = decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # a file the batched JPEG decoder refuses (ImageNet holds a few CMYK and PNG ones)
            decoded = [decode_image(data, mode=ImageReadMode.RGB).to(device) for data in files]
        return torch.stack([seeded_transform(transform, pixels, image.seed)
                            for pixels, image in zip(decoded, images)])

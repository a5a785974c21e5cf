"""Your own images in torchvision's ImageFolder layout, with the standard ImageNet training recipe:

    <root>/train/<class name>/*.png|jpg|...     training images (the val split is carved from these)
    <root>/val/<class name>/...                  held-out images, used as the test set (ImageNet's
    (or <root>/test/<class name>/...)            convention: papers report on the labelled val set)

Classes are the subfolders of train/, in sorted order (class index = position); `num_classes` is read
from there, so the config may leave it null (a number it does give must agree)."""
from __future__ import annotations

import os
from pathlib import Path

from torchvision import datasets, transforms

from datamodules.base import DatasetNotFoundError, KDDataModule
from errors import ConfigError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


class UnreadableImageError(UserError, OSError):
    pass


# Folders with at most this many images have every file's header read when the data is set up (well under a
# second per thousand files), so an unreadable one stops the run before training; larger ones (ImageNet's
# 1.28M would take minutes) are checked as each file is read.
CHECKED_UP_FRONT = 20_000


def check_images(samples: list[tuple[str, int]]) -> None:
    """Every file opens as an image (PIL reads only its header), up to CHECKED_UP_FRONT files."""
    if len(samples) > CHECKED_UP_FRONT:
        return
    from PIL import Image
    for path, _ in samples:
        try:
            with Image.open(path):
                pass
        except (OSError, ValueError, SyntaxError) as error:
            raise UnreadableImageError(f"{path} is not an image that PIL can read ({type(error).__name__}); remove it "
                                       f"from the class folder, or replace it with a readable image") from None


def load_image(path: str):
    """torchvision's default loader (PIL, RGB); a file that PIL cannot read stops the run naming it, instead of
    a traceback from inside a loader worker (in folders too large for `check_images`)."""
    try:
        return datasets.folder.default_loader(path)
    except (OSError, ValueError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise UnreadableImageError(f"{path} is not an image that PIL can read ({type(error).__name__}); remove it from "
                                   f"the class folder, or replace it with a readable image") from None


class _FixedClassImageFolder(datasets.ImageFolder):
    """ImageFolder whose class indices come from the training folder, so a held-out folder that lacks a
    class (or lists them differently) still labels every image as the training set does."""

    def __init__(self, root: str, classes: list[str]) -> None:
        self._fixed_classes = classes
        super().__init__(root, loader=load_image, allow_empty=True)

    def find_classes(self, directory):
        return self._fixed_classes, {name: i for i, name in enumerate(self._fixed_classes)}


class ImageFolderDataModule(KDDataModule):
    """Images resized/cropped to `image_size` (RGB): RandomResizedCrop + horizontal flip for training,
    Resize(`resize_size`, default image_size / 0.875: 256 for 224) + CenterCrop for evaluation, both
    normalised with the ImageNet mean and std."""

    test_folder_names = ("val", "test")

    def __init__(self, name: str = "image_folder", root: str | None = None, num_classes: int | None = None,
                 input_shape=None, image_size: int = 224, resize_size: int | None = None,
                 test_dir: str | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs) -> None:
        if not root:
            raise ConfigError("data=image_folder needs data.root=PATH: a folder with train/<class>/ and "
                              "val/<class>/ (or test/<class>/) subfolders of images")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ConfigError(f"data.image_size must be an integer >= 1, got {image_size!r}")
        self.root = Path(root).expanduser()
        self.train_folder, self.test_folder = self._find_folders(test_dir)
        self.classes = class_folders(self.train_folder)
        if len(self.classes) == 1:
            raise ConfigError(f"{self.train_folder} has one class folder ({self.classes[0]}); classification needs two "
                              f"or more: put each class's training images in its own subfolder of train/")
        if not self.classes:
            raise DatasetNotFoundError(f"{self.train_folder} has no class subfolders; put each class's training "
                                       f"images in {self.train_folder}/<class name>/")
        unknown = sorted(set(class_folders(self.test_folder)) - set(self.classes))
        if unknown:
            raise ConfigError(f"{self.test_folder} has classes that {self.train_folder} lacks: {unknown}; "
                              f"give every class training images, or remove those folders")
        if num_classes is not None and int(num_classes) != len(self.classes):
            raise ConfigError(f"data.num_classes={num_classes} but {self.train_folder} has {len(self.classes)} "
                              f"class folders; remove the override (null reads it from the folder) or fix the "
                              f"folders")
        expected_shape = (3, image_size, image_size)
        if input_shape is not None and tuple(int(d) for d in input_shape) != expected_shape:
            raise ConfigError(f"data.input_shape={list(input_shape)} does not match data.image_size={image_size} "
                              f"(images are {list(expected_shape)}); set data.image_size instead")
        super().__init__(name, len(self.classes), expected_shape, **kwargs)
        self.image_size = image_size
        self.resize_size = int(resize_size) if resize_size else int(round(image_size / 0.875))
        if self.resize_size < image_size:
            raise ConfigError(f"data.resize_size={resize_size} is smaller than data.image_size={image_size}; "
                              f"the centre crop needs resize_size >= image_size (null: image_size / 0.875)")
        self.mean, self.std = tuple(mean), tuple(std)
        normalize = transforms.Normalize(self.mean, self.std)
        self.train_transform = transforms.Compose([
            transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), normalize])
        self.eval_transform = transforms.Compose([
            transforms.Resize(self.resize_size), transforms.CenterCrop(image_size),
            transforms.ToTensor(), normalize])

    def _find_folders(self, test_dir: str | None) -> tuple[Path, Path]:
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"data.root={self.root} does not exist; set data.root=PATH to a folder "
                                       f"with train/<class>/ and val/<class>/ (or test/<class>/) image subfolders")
        train = self.root / "train"
        names = [test_dir] if test_dir else self.test_folder_names
        held_out = next((self.root / name for name in names if (self.root / name).is_dir()), None)
        if not train.is_dir() or held_out is None:
            missing = [str(path) for path, ok in ((train, train.is_dir()), (self.root / names[0], held_out))
                       if not ok]
            wanted = f"{test_dir}/" if test_dir else "val/ (or test/)"
            raise DatasetNotFoundError(f"{self.root} lacks {' and '.join(missing)}; image_folder data needs "
                                       f"train/<class>/ and {wanted} subfolders of images under data.root")
        return train, held_out

    def prepare_data(self) -> None:
        pass  # the user's own files: nothing to fetch, and __init__ already checked the folders

    def load_train(self):
        dataset = self._dataset(self.train_folder)
        empty = sorted(set(self.classes) - {self.classes[target] for target in dataset.targets})
        if empty:
            raise DatasetNotFoundError(f"class folders without training images in {self.train_folder}: {empty}; "
                                       f"add images or remove those folders")
        return dataset

    def load_test(self):
        return self._dataset(self.test_folder)  # a held-out folder may lack classes

    def _dataset(self, folder: Path):
        dataset = _FixedClassImageFolder(str(folder), self.classes)
        if not len(dataset):
            raise DatasetNotFoundError(f"{folder} holds no images in its class subfolders (readable: "
                                       f"{', '.join(datasets.folder.IMG_EXTENSIONS)})")
        check_images(dataset.samples)
        return dataset

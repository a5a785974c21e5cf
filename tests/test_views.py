"""Two augmented views per training example (datamodules/two_views.py, datamodules/strong_augment.py): the strong
view's operations against PIL (as MLKD's anchor calls them), seeded draws, the DataLoader and device-resident paths,
each process's share under DDP, and the refusals (data without a strong view, combinations that cannot serve)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from datamodules.sampling import ProcessShard
from datamodules.strong_augment import NAMES, OPERATIONS, FixMatchRandAugment, apply_operation, cutout
from datamodules.two_views import Views
from errors import ConfigError, UserError
from runs.training import instantiate, run_distill, run_train
from tests.fake_cifar import fake_cifar100  # noqa: F401 - fixture
from tests.helpers import CFG_DIR, compose_config


def pil_operation(img: Image.Image, name: str, v: float) -> Image.Image:
    """The anchor's PIL call for each operation (mdistiller/dataset/cifar100.py augment_list)."""
    affine = {"shear_x": (1, v, 0, 0, 1, 0), "shear_y": (1, 0, 0, v, 1, 0),
              "translate_x": (1, 0, v * img.size[0], 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, v * img.size[1])}
    if name in affine:
        return img.transform(img.size, Image.AFFINE, affine[name])
    enhance = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
               "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}
    if name in enhance:
        return enhance[name](img).enhance(v)
    return {"autocontrast": lambda: ImageOps.autocontrast(img), "equalize": lambda: ImageOps.equalize(img),
            "identity": lambda: img, "posterize": lambda: ImageOps.posterize(img, max(1, int(v))),
            "rotate": lambda: img.rotate(v), "solarize": lambda: ImageOps.solarize(img, v)}[name]()


def pil_cutout(img: Image.Image, v: float, cx: float, cy: float) -> Image.Image:
    if v <= 0:
        return img
    side, (w, h) = v * img.size[0], img.size
    x0, y0 = int(max(0, cx - side / 2.0)), int(max(0, cy - side / 2.0))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + side), min(h, y0 + side)), (125, 123, 114))
    return img


def random_images(count=6, seed=0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images[:, 8:20, 6:22] //= 3  # some structure for equalize and autocontrast
    return images


@pytest.mark.parametrize("name", NAMES)
def test_each_strong_operation_is_pils(name):
    images = random_images()
    low, high = OPERATIONS[name] or (0.0, 0.0)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    for v in np.linspace(low, high, 4)[1:]:
        mine = apply_operation(batch, torch.full((6,), NAMES.index(name)), torch.full((6,), float(v), dtype=torch.float64))
        expected = np.stack([np.asarray(pil_operation(Image.fromarray(im), name, float(v))) for im in images])
        np.testing.assert_array_equal(mine.permute(0, 2, 3, 1).numpy(), expected, err_msg=f"{name} at {v}")


def test_cutout_is_pils_and_the_draws_cover_the_anchors_ranges():
    images = random_images()
    fractions = torch.tensor([0.0, 0.1, 0.25, 0.33, 0.49, 0.5], dtype=torch.float64)
    corners = torch.tensor([[1.0, 1.0], [5.5, 30.2], [31.9, 2.2], [16.0, 16.0], [1.3, 32.0], [20.7, 9.9]],
                           dtype=torch.float64)
    mine = cutout(torch.from_numpy(images).permute(0, 3, 1, 2), fractions, corners).permute(0, 2, 3, 1).numpy()
    expected = [np.asarray(pil_cutout(Image.fromarray(im), float(f), *map(float, c)))
                for im, f, c in zip(images, fractions, corners)]
    np.testing.assert_array_equal(mine, np.stack(expected))
    # seeded draws: the same generator state, the same images; another seed, other images
    batch = torch.from_numpy(random_images(64, seed=1)).permute(0, 3, 1, 2).contiguous()
    augment = FixMatchRandAugment(ops=2)
    first, again = (augment(batch, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(first, again) and not torch.equal(first, augment(batch, torch.Generator().manual_seed(4)))
    assert first.dtype == torch.uint8 and first.shape == batch.shape
    with pytest.raises(ConfigError, match="uint8 RGB"):
        augment(batch.float())


def cifar_module(data_dir, **overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{CFG_DIR}/data/cifar100.yaml"),
                           {"val_size": 0, "batch_size": 8, **overrides})
    dm = instantiate(OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 0, "data": node}).data)
    dm.setup("fit")
    dm.use_views(("strong",), "kd.terms.instance_level")
    return dm


def first_batch(loader, epoch=0):
    loader.sampler.set_epoch(epoch)
    return next(iter(loader))


@pytest.mark.parametrize("resident", [False, True])
def test_two_view_batches(fake_cifar100, resident):
    """(Views(weak, strong), y, index): the weak view is the one-view batch, the strong one its own seeded draw;
    an epoch's batches are the same when asked again and other in the next epoch."""
    dm = cifar_module(fake_cifar100, device_resident=resident)
    (views, y, index), (again, _, _) = first_batch(dm.train_dataloader()), first_batch(dm.train_dataloader())
    assert isinstance(views, Views) and views.weak.shape == views.strong.shape == (8, 3, 32, 32)
    assert views.strong.dtype == torch.float32 and not torch.equal(views.weak, views.strong)
    assert torch.equal(views.strong, again.strong) and torch.equal(views.weak, again.weak)
    assert not torch.equal(first_batch(dm.train_dataloader(), epoch=1)[0].strong, views.strong)
    dm.train_views = ()
    one_view, y1, index1 = first_batch(dm.train_dataloader())
    assert torch.equal(one_view, views.weak) and torch.equal(y1, y) and torch.equal(index1, index)
    assert not isinstance(next(iter(dm.val_dataloader()))[0], Views)  # evaluation keeps plain inputs


def test_device_resident_strong_view_draws_as_the_dataloader_path_does(fake_cifar100):
    """The same operations on the same images: with the DataLoader path's draws fed to the batch transform, the
    device-resident strong view equals it pixel for pixel (the crop, the flip, RandAugment, ToTensor, Normalize)."""
    dm = cifar_module(fake_cifar100, device_resident=True)
    transform = dm.train_dataloader().strong
    assert transform.rand_augment_ops == 2 and transform.padding == 4 and transform.to_unit
    images = torch.from_numpy(dm.train_set.base.data[:4]).permute(0, 3, 1, 2).contiguous()
    # one image at a time through torchvision's Compose (PIL in, the per-image path), drawing from a seeded global
    # generator, against the device transform with a generator in the same state on the batch of one
    for number, image in enumerate(images):
        torch.manual_seed(number)
        expected = dm.strong_transform(Image.fromarray(image.permute(1, 2, 0).numpy()))
        mine = transform(image.unsqueeze(0), torch.Generator().manual_seed(number))[0]
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-6)


def test_two_processes_share_two_view_batches(fake_cifar100):
    """Under DDP each process takes its block of every global batch (ProcessShard), views and all: process 0's and
    1's batches of 4, in rank order, are one process's batch of 8, both views (DataLoader draws depend on the
    example, not on the process)."""
    dm = cifar_module(fake_cifar100)
    alone = first_batch(dm.train_dataloader())
    shares = []
    for rank in (0, 1):
        dm.batch_size = 4
        loader = dm.train_dataloader()
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=4,
                                             sampler=ProcessShard(loader.sampler, len(loader.dataset), rank, 2, 4))
        shares.append(first_batch(loader))
    for part in ("weak", "strong"):
        together = torch.cat([getattr(share[0], part) for share in shares])
        assert torch.equal(together, getattr(alone[0], part)), part
    assert torch.equal(torch.cat([share[2] for share in shares]), alone[2])


def test_data_without_a_strong_view_refuse_in_one_line(data_dir):
    cfg = compose_config("distill", ["kd=mlkd", "data.train_subset=32", "data.val_size=16", "trainer.max_epochs=1",
                                     f"paths.data_dir={data_dir}", "trainer.accelerator=cpu"])
    assert cfg.data.name == "mnist1d"
    with pytest.raises(UserError, match=r"kd.terms.batch_level, .* reads a strong augmented view .* data=mnist1d "
                                        r"does not make .* use data=cifar10 or data=cifar100 or data=digits$"):
        run_distill(cfg, quiet=True)


@pytest.fixture(scope="module")
def tiny_teacher(fake_cifar100, tmp_path_factory):
    outputs = tmp_path_factory.mktemp("views_teacher")
    cfg = compose_config("train", [*FEW_STEPS, "model=resnet8", f"paths.data_dir={fake_cifar100}",
                                   f"paths.output_dir={outputs}"])
    return run_train(cfg, quiet=True)["checkpoints"]["last"]


FEW_STEPS = ["data=cifar100", "data.val_size=0", "data.batch_size=8", "trainer.max_epochs=1",
             "trainer.limit_train_batches=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger"]


@pytest.mark.parametrize("overrides,refusal", [
    (["augment=mixup"], "cannot combine with .*read two augmented views"),
    (["teacher=cached"], "teacher=cached only holds its outputs on fixed views")])
def test_views_refuse_what_cannot_serve_them(overrides, refusal, tiny_teacher, fake_cifar100, tmp_path):
    cfg = compose_config("distill", [*FEW_STEPS, "~experiment", "kd=mlkd", "student=resnet8", "teacher/model=resnet8",
                                     f"teacher.checkpoint={tiny_teacher}", f"paths.data_dir={fake_cifar100}",
                                     f"paths.output_dir={tmp_path}", *overrides])
    with pytest.raises(UserError, match=refusal):
        run_distill(cfg, quiet=True)


@pytest.mark.parametrize("resident", [False, True])
def test_mlkd_end_to_end_counts_both_views(resident, tiny_teacher, fake_cifar100, tmp_path):
    cfg = compose_config("distill", [*FEW_STEPS, "~experiment", "kd=mlkd_ls", "student=resnet8",
                                     "teacher/model=resnet8", f"teacher.checkpoint={tiny_teacher}",
                                     f"paths.data_dir={fake_cifar100}", f"paths.output_dir={tmp_path}",
                                     f"data.device_resident={str(resident).lower()}"])
    record = run_distill(cfg, quiet=True)
    assert record["teacher_calls"] == 2 * 2 * 8 and record["teacher_examples"] == 16  # 2 steps, 2 views of 8
    assert 0.0 <= record["last"]["test/top1"] <= 1.0

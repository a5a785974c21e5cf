"""augment=synthetic: scripts/train_gan.py writes a generator checkpoint that carries its own config; the
replacement puts round(ratio * B) generated rows (reproducible from (seed, step)) where its mask says and
leaves real rows alone; in a real distillation run the teacher labels the generated rows at the
augmentation's temperature; a generator of another image size stops with one message naming the fix."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from datamodules.synthetic_mixing import SyntheticReplacement
from errors import ConfigError, UserError
from losses import DistillationObjective
from models.gan import DCGANDiscriminator, DCGANGenerator, load_generator, save_generator
from scripts.train_gan import train_gan
from runs.training import run_distill
from tests.fake_cifar import fake_cifar_folder
from tests.helpers import compose_config

CIFAR_SHAPE = (3, 32, 32)
FEW_STEPS = ["data=cifar10", "data.val_size=0", "data.batch_size=8", "data.num_workers=0",
             "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.accelerator=cpu",
             "trainer.enable_progress_bar=false", "~logger"]


@pytest.fixture(scope="module")
def fake_cifar10(tmp_path_factory):
    yield from fake_cifar_folder(tmp_path_factory, "cifar10", n_train=40, n_test=16)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


def gan_config(data_dir, outputs, *extra):
    return compose_config("gan", ["data.val_size=0", "data.num_workers=0", "device=cpu", "gan.batch_size=8",
                                  "gan.width=8", "gan.max_steps=3", "gan.sample_count=4",
                                  f"paths.data_dir={data_dir}", f"paths.output_dir={outputs}", *extra])


@pytest.fixture(scope="module")
def gan_record(fake_cifar10, outputs) -> dict:
    return train_gan(gan_config(fake_cifar10, outputs))


@pytest.fixture(scope="module")
def generator_path(gan_record) -> str:
    return gan_record["checkpoint"]


def write_generator(folder: Path, image_shape) -> str:
    """A generator checkpoint for other data (as scripts/train_gan.py would write one, untrained)."""
    channels = image_shape[0]
    return str(save_generator(folder / "generator.pt", DCGANGenerator(image_shape, width=4),
                              [0.5] * channels, [0.25] * channels, "other"))


# ------------------------------------------------------------------------------------------ the trainer
def test_gan_trainer_writes_one_checkpoint_that_loads(gan_record, fake_cifar10, outputs):
    folder = Path(gan_record["run_dir"])
    assert folder == outputs / "gan" / "cifar10-s0"
    assert {p.name for p in folder.iterdir()} >= {"generator.pt", "samples.png", "record.json"}
    assert gan_record["steps"] == 3 and gan_record["image_shape"] == list(CIFAR_SHAPE)
    assert all(math.isfinite(epoch[key]) for epoch in gan_record["losses"] for key in ("discriminator", "generator"))
    generator = load_generator(gan_record["checkpoint"], CIFAR_SHAPE)
    assert not generator.training and not any(p.requires_grad for p in generator.parameters())
    samples = generator(torch.randn(4, generator.latent_dim))
    assert samples.shape == (4, *CIFAR_SHAPE)
    # normalised with CIFAR-10's own statistics: back in pixel space they lie in [0, 1]
    assert generator.mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.4465])
    pixels = samples * generator.std + generator.mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # a second run into the same folder keeps the first one's generator
    with pytest.raises(ConfigError, match="already holds a generator; pass rerun=true"):
        train_gan(gan_config(fake_cifar10, outputs))


def test_gan_trainer_refuses_data_it_cannot_model(data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"data=digits gives inputs of shape \[1, 8, 8\].*power of two"):
        train_gan(gan_config(data_dir, tmp_path, "data=digits"))


def test_gan_trainer_spreads_samples_over_the_range_of_data_without_stated_normalisation(data_dir, tmp_path):
    # single-channel 32x32 Gaussian-mixture data: no mean/std of its own, so [-1, 1] maps onto its range
    record = train_gan(gan_config(data_dir, tmp_path, "data=synthetic", "data.input_shape=[1,32,32]",
                                  "data.n_train=48", "data.n_test=8"))
    from runs.training import build_datamodule
    datamodule = build_datamodule(gan_config(data_dir, tmp_path, "data=synthetic", "data.input_shape=[1,32,32]",
                                             "data.n_train=48", "data.n_test=8"))
    datamodule.setup("fit")
    train = torch.stack([datamodule.train_set[i][0] for i in range(len(datamodule.train_set))])
    generator = load_generator(record["checkpoint"], (1, 32, 32))
    lowest, highest = -generator.mean / generator.std, (1 - generator.mean) / generator.std
    assert float(lowest) == pytest.approx(float(train.min()), rel=1e-4)
    assert float(highest) == pytest.approx(float(train.max()), rel=1e-4)


def test_discriminator_defaults_to_spectral_norm():
    spectral = DCGANDiscriminator(CIFAR_SHAPE, width=4)
    plain = DCGANDiscriminator(CIFAR_SHAPE, width=4, spectral_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in spectral.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert spectral(torch.zeros(2, *CIFAR_SHAPE)).shape == (2,)


# ------------------------------------------------------------------------------------- the replacement
@pytest.mark.parametrize("batch,ratio,count", [(8, 0.2, 2), (8, 0.01, 1), (10, 0.3, 3), (5, 1.0, 5)])
def test_replacement_puts_generated_rows_at_the_mask(generator_path, batch, ratio, count):
    synthetic = SyntheticReplacement(generator_path, ratio=ratio)
    inputs, targets = torch.randn(batch, *CIFAR_SHAPE), torch.arange(batch) % 10
    original = inputs.clone()
    replaced, soft, generated = synthetic(inputs, targets, 10, seed=3, step=7)
    assert generated.dtype == torch.bool and generated.tolist() == [False] * (batch - count) + [True] * count
    assert torch.equal(inputs, original)  # the loader's batch is not written to
    assert torch.equal(replaced[~generated], original[~generated])
    assert torch.equal(replaced[generated], synthetic.generate(count, seed=3, step=7))
    assert torch.equal(soft[~generated], F.one_hot(targets[~generated], 10).float())
    assert soft.shape == (batch, 10) and not soft[generated].any()  # the task fills these from the teacher


def test_replacement_is_reproducible_from_seed_and_step(generator_path):
    inputs, targets = torch.randn(8, *CIFAR_SHAPE), torch.zeros(8, dtype=torch.long)
    first, _, _ = SyntheticReplacement(generator_path, ratio=0.5)(inputs, targets, 10, seed=0, step=4)
    again, _, _ = SyntheticReplacement(generator_path, ratio=0.5)(inputs, targets, 10, seed=0, step=4)
    next_step, _, _ = SyntheticReplacement(generator_path, ratio=0.5)(inputs, targets, 10, seed=0, step=5)
    other_seed, _, _ = SyntheticReplacement(generator_path, ratio=0.5)(inputs, targets, 10, seed=1, step=4)
    assert torch.equal(first, again)
    assert not torch.equal(first[4:], next_step[4:]) and not torch.equal(first[4:], other_seed[4:])


def test_bad_synthetic_settings(generator_path, tmp_path):
    with pytest.raises(ConfigError, match=r"augment.generator=PATH.*scripts/train_gan.py"):
        SyntheticReplacement(None)
    for ratio in (0, -0.1, 1.5, True):
        with pytest.raises(ConfigError, match=r"augment.ratio .* \(0, 1\]"):
            SyntheticReplacement(generator_path, ratio=ratio)
    with pytest.raises(ConfigError, match="augment.temperature"):
        SyntheticReplacement(generator_path, temperature=0)
    with pytest.raises(ConfigError, match="does not exist"):
        SyntheticReplacement(str(tmp_path / "missing.pt"))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "model.pt")
    for foreign in ("notes.txt", "model.pt"):
        with pytest.raises(ConfigError, match=r"is not a generator checkpoint.*scripts/train_gan.py"):
            SyntheticReplacement(str(tmp_path / foreign))
    with pytest.raises(ConfigError, match="token"):
        SyntheticReplacement(generator_path)(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                                             2, 0, 0)


@pytest.mark.parametrize("image_shape", [(3, 64, 64), (1, 32, 32)])
def test_generator_of_another_image_size_stops_with_its_fix(image_shape, tmp_path):
    path = write_generator(tmp_path, image_shape)
    message = re.escape(f"makes images of shape {list(image_shape)} but this data's inputs have shape [3, 32, 32]; "
                        f"train a generator on this data with python scripts/train_gan.py")
    synthetic = SyntheticReplacement(path)
    with pytest.raises(ConfigError, match=message):
        synthetic.check_input_shape(CIFAR_SHAPE)
    with pytest.raises(ConfigError, match=message):
        synthetic(torch.randn(4, *CIFAR_SHAPE), torch.zeros(4, dtype=torch.long), 10, 0, 0)
    with pytest.raises(ConfigError, match=message):
        load_generator(path, CIFAR_SHAPE)
    synthetic.check_input_shape(image_shape)  # its own data's shape passes


def test_no_generator_for_sizes_the_dcgan_cannot_make():
    with pytest.raises(ConfigError, match="power of two"):
        DCGANGenerator((1, 28, 28))


# ------------------------------------------------------------------------------- in a distillation run
def distill_config(data_dir, outputs, generator, *extra):
    return compose_config("distill", [*FEW_STEPS, "~experiment", "kd=kd", "student=resnet8", "teacher/model=resnet8",
                                      "augment=synthetic", f"augment.generator={generator}",
                                      f"paths.data_dir={data_dir}", f"paths.output_dir={outputs}", *extra])


def test_teacher_labels_the_generated_rows_at_their_temperature(fake_cifar10, outputs, generator_path, monkeypatch):
    seen = []
    objective_forward = DistillationObjective.forward

    def recording_forward(self, batch, weights=None):
        seen.append(batch)
        return objective_forward(self, batch, weights)
    monkeypatch.setattr(DistillationObjective, "forward", recording_forward)
    # ratio 0.25 of a batch of 8: two generated rows; T 2 differs from the KD term's 4
    cfg = distill_config(fake_cifar10, outputs, generator_path, "augment.ratio=0.25", "augment.temperature=2.0")
    record = run_distill(cfg, quiet=True)
    assert record["config"]["augment"]["name"] == "synthetic" and record["epochs"] == 1
    assert 0.0 <= record["last"]["test/top1"] <= 1.0
    assert [batch.global_step for batch in seen] == [0, 1]
    replay = SyntheticReplacement(generator_path, ratio=0.25)
    for batch in seen:
        soft = batch.soft_targets
        assert torch.equal(batch.inputs[-2:], replay.generate(2, seed=cfg.seed, step=batch.global_step))
        expected = (batch.teacher_logits[-2:].float() / 2.0).softmax(dim=1)
        assert torch.allclose(soft[-2:], expected, atol=1e-6)  # the CE term's targets: the teacher's, at T 2
        assert torch.equal(soft[:-2], F.one_hot(batch.targets[:-2], 10).float())  # real rows: their labels


def test_run_with_a_generator_of_another_size_stops(fake_cifar10, outputs, tmp_path):
    cfg = distill_config(fake_cifar10, outputs, write_generator(tmp_path, (3, 64, 64)))
    with pytest.raises(UserError, match=r"makes images of shape \[3, 64, 64\] but this data's inputs have shape"):
        run_distill(cfg, quiet=True)

"""Models from timm and Hugging Face (optional packages: each test skips when its package is missing), DeiT's
distillation token, and data=imagenet read from small JPEG folders through each decoder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.image_files import write_random_jpegs
from datamodules.imagenet import ImageNetDataModule
from errors import ConfigError, UserError, find_user_error
from losses import DistillBatch
from models import build_model
from models.features import FeatureTaps
from runs.training import run_distill, run_train
from tests.helpers import CFG_DIR, compose_config
from tests.test_text_and_custom_data import write_fake_imdb

IMAGE_SIZE = 32
# data=imagenet on a few tiny JPEGs (3 classes), one short epoch on the CPU.
IMAGENET_TINY = ["data=imagenet", "data.num_classes=null", f"data.image_size={IMAGE_SIZE}", "data.resize_size=36",
                 "data.batch_size=6", "data.num_workers=0", "data.pin_memory=false", "trainer.max_epochs=1",
                 "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger"]
DISTILL_TINY = [*IMAGENET_TINY, "fidelity.cka_max_examples=6"]
TINY_DEIT = "{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}"


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> Path:
    return write_random_jpegs(tmp_path_factory.mktemp("imagenet"), classes=3, train_per_class=6, val_per_class=2)


@pytest.fixture(scope="module")
def timm_cnn_teacher(jpegs, tmp_path_factory) -> str:
    """A timm CNN trained one epoch by train.py on the JPEG folders, decoded batch by batch (the decode_device
    path, through Lightning's on_before_batch_transfer hook)."""
    pytest.importorskip("timm")
    cfg = compose_config("train", [*IMAGENET_TINY, f"data.root={jpegs}", "data.decode=torchvision",
                                   "data.decode_device=cpu", "model=timm", "model.name=timm.test_resnet",
                                   f"paths.output_dir={tmp_path_factory.mktemp('teacher')}"])
    record = run_train(cfg, quiet=True)
    assert record["config"]["model"]["name"] == "timm.test_resnet" and record["epochs"] == 1
    return record["checkpoints"]["last"]


# ----------------------------------------------------------------------------------------------- timm
@pytest.mark.parametrize("kd", ["kd", "rkd", "fitnet"])
def test_timm_cnn_teacher_distills_into_a_timm_vit(kd, jpegs, timm_cnn_teacher, tmp_path):
    """The ViT's stages are its blocks' tokens on the patch grid (timm's forward_intermediates), so a stage method
    (FitNet on the last stage), an embedding method (RKD) and logit KD all run on a CNN -> ViT pair."""
    stage = ["kd.terms.fitnet.stage=-1"] if kd == "fitnet" else []
    cfg = compose_config("distill", [*DISTILL_TINY, f"data.root={jpegs}", "data.decode=torchvision", f"kd={kd}",
                                     *stage, "teacher/model=timm", "teacher.model.name=timm.test_resnet",
                                     f"teacher.checkpoint={timm_cnn_teacher}", "student=timm",
                                     "student.name=timm.test_vit", f"paths.output_dir={tmp_path}"])
    record = run_distill(cfg, quiet=True)
    assert record["teacher_model"] == "timm.test_resnet" and record["config"]["student"]["name"] == "timm.test_vit"
    assert 0.0 <= record["last"]["test/top1"] <= 1.0 and record["last"]["test/kl"] >= 0


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_convnext", "test_efficientnet"])
def test_timm_taps_follow_feature_info_and_keep_the_logits(name):
    pytest.importorskip("timm")
    model = build_model(f"timm.{name}", 5, (3, IMAGE_SIZE, IMAGE_SIZE)).eval()
    stages = len(model.net.feature_info)
    taps = FeatureTaps(model, [f"stage:{i}" for i in range(stages)] + ["embedding", "class_head"])
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    logits = model(x)
    features = taps.pop()
    torch.testing.assert_close(logits, model.net(x))  # the taps do not change what the model computes
    torch.testing.assert_close(features["class_head"], logits)
    for i, info in enumerate(model.net.feature_info):  # timm's declared channels and stride, as NCHW maps
        assert features[f"stage:{i}"].shape == (2, info["num_chs"], *(2 * [IMAGE_SIZE // info["reduction"]]))
    assert features["embedding"].shape == (2, model.net.num_features)


def test_timm_is_optional_and_its_absence_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(UserError, match=r"model=timm needs the optional package 'timm'.*pip install timm"):
        build_model("timm.resnet18", 10)


def test_timm_pretrained_weights_need_their_normalisation_and_names_are_checked():
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match=r"data.mean=\[0.5,0.5,0.5\] data.std=\[0.5,0.5,0.5\]"):
        build_model("timm.vit_tiny_patch16_224.augreg_in21k", 10, (3, 224, 224), pretrained=True,
                    data_mean=[0.485, 0.456, 0.406], data_std=[0.229, 0.224, 0.225])
    with pytest.raises(ConfigError, match="unknown timm model 'resnet_nonexistent'"):
        build_model("timm.resnet_nonexistent", 10)
    vit = build_model("timm.test_vit", 10, (3, 48, 48))  # a fixed-size ViT is built for the data's images
    assert vit(torch.randn(1, 3, 48, 48)).shape == (1, 10)


# ----------------------------------------------------------------------------------------------- DeiT
def _deit_batch(batch: int = 5, classes: int = 7, seed: int = 0) -> tuple[DistillBatch, dict]:
    g = torch.Generator().manual_seed(seed)
    parts = {name: torch.randn(batch, classes, generator=g) * 3 for name in ("class", "dist", "teacher")}
    labels = torch.randint(classes, (batch,), generator=g)
    return DistillBatch(inputs=torch.zeros(batch, 1), targets=labels, indices=torch.arange(batch),
                        student_logits=(parts["class"] + parts["dist"]) / 2, teacher_logits=parts["teacher"],
                        student_features={"class_head": parts["class"], "distillation_head": parts["dist"]}), parts


def _objective(method: str, *overrides: str):
    kd = OmegaConf.merge(OmegaConf.load(Path(CFG_DIR) / "kd" / f"{method}.yaml"), OmegaConf.from_dotlist(list(overrides)))
    from losses import DistillationObjective
    return DistillationObjective({name: instantiate(node) for name, node in kd.terms.items()})


def _log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    total = sum(pow(2.718281828459045, v - top) for v in row)
    import math
    return [v - top - math.log(total) for v in row]


def test_deit_hard_is_half_label_ce_on_the_class_head_and_half_teacher_argmax_ce_on_the_distillation_head():
    batch, parts = _deit_batch()
    total, values = _objective("deit_hard")(batch)
    expected = 0.0
    for i in range(len(batch.targets)):  # DeiT losses.py, hard: (1 - a) CE(cls, y) + a CE(dist, argmax teacher)
        cls, dist, teacher = (parts[k][i].tolist() for k in ("class", "dist", "teacher"))
        y, t = int(batch.targets[i]), max(range(len(teacher)), key=teacher.__getitem__)
        expected += 0.5 * -_log_softmax(cls)[y] + 0.5 * -_log_softmax(dist)[t]
    assert total.item() == pytest.approx(expected / len(batch.targets), rel=1e-5)
    # limiting case: a teacher that agrees with the labels makes it plain CE on both heads, averaged
    batch.teacher_logits = F.one_hot(batch.targets, 7).float() * 10
    total, _ = _objective("deit_hard")(batch)
    both = (F.cross_entropy(parts["class"], batch.targets) + F.cross_entropy(parts["dist"], batch.targets)) / 2
    assert total.item() == pytest.approx(both.item(), rel=1e-5)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_deit_soft_is_tau_squared_kl_summed_over_batch_times_classes(tau):
    batch, parts = _deit_batch()
    total, values = _objective("deit_soft", f"terms.deit.temperature={tau}", "terms.deit.weight=0.1",
                               "terms.ce.weight=0.9")(batch)
    rows, classes = parts["dist"].shape
    kl = ce = 0.0
    for i in range(rows):
        s = _log_softmax([v / tau for v in parts["dist"][i].tolist()])
        t = _log_softmax([v / tau for v in parts["teacher"][i].tolist()])
        kl += sum(pow(2.718281828459045, tj) * (tj - sj) for sj, tj in zip(s, t))
        ce += -_log_softmax(parts["class"][i].tolist())[int(batch.targets[i])]
    # DeiT divides the summed KL by outputs_kd.numel() (batch x classes), not by the batch
    assert values["deit"].item() == pytest.approx(kl * tau * tau / (rows * classes), rel=1e-5)
    assert total.item() == pytest.approx(0.9 * ce / rows + 0.1 * kl * tau * tau / (rows * classes), rel=1e-5)
    # limiting case: the teacher's own logits on the distillation head cost nothing
    batch.student_features = {**batch.student_features, "distillation_head": parts["teacher"]}
    assert _objective("deit_soft")(batch)[1]["deit"].item() == pytest.approx(0.0, abs=1e-6)


def test_a_distilled_deit_predicts_with_the_mean_of_its_heads_and_others_have_no_distillation_head():
    pytest.importorskip("timm")
    student = build_model("timm.deit_tiny_distilled_patch16_224", 4, (3, IMAGE_SIZE, IMAGE_SIZE),
                          model_kwargs=OmegaConf.to_container(OmegaConf.create(TINY_DEIT)))
    taps = FeatureTaps(student, ["class_head", "distillation_head"])
    for mode in (True, False):  # in training too: the heads reach the objective as taps
        logits = student.train(mode)(torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE))
        heads = taps.pop()
        torch.testing.assert_close(logits, (heads["class_head"] + heads["distillation_head"]) / 2)
    with pytest.raises(ConfigError, match="needs a model with a distillation token"):
        FeatureTaps(build_model("timm.test_vit", 4, (3, IMAGE_SIZE, IMAGE_SIZE)), ["distillation_head"])


@pytest.mark.parametrize("method", ["deit_hard", "deit_soft"])
def test_deit_distills_a_tiny_distilled_vit_from_a_cnn(method, jpegs, timm_cnn_teacher, tmp_path):
    cfg = compose_config("distill", [*DISTILL_TINY, f"data.root={jpegs}", f"kd={method}", "teacher/model=timm",
                                     "teacher.model.name=timm.test_resnet", f"teacher.checkpoint={timm_cnn_teacher}",
                                     "student=timm", "student.name=timm.deit_tiny_distilled_patch16_224",
                                     f"student.model_kwargs={TINY_DEIT}", f"paths.output_dir={tmp_path}"])
    record = run_distill(cfg, quiet=True)
    assert record["config"]["kd"]["name"] == method and record["epochs"] == 1
    assert 0.0 <= record["last"]["test/top1"] <= 1.0


# ----------------------------------------------------------------------------------------------- Hugging Face
def _vit_config(transformers, hidden: int, layers: int):
    return transformers.ViTConfig(image_size=IMAGE_SIZE, patch_size=8, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=2, intermediate_size=2 * hidden, num_labels=3)


def test_hugging_face_image_pair_distills_from_local_folders(jpegs, tmp_path):
    """A teacher whose weights load from a local folder (the hub's code path) and a student built from a config
    folder, both random: the teacher is fine-tuned one epoch by the run, then distilled."""
    transformers = pytest.importorskip("transformers")
    teacher_folder, student_folder = tmp_path / "hf_teacher", tmp_path / "hf_student"
    transformers.ViTForImageClassification(_vit_config(transformers, 32, 2)).save_pretrained(teacher_folder)
    _vit_config(transformers, 16, 1).save_pretrained(student_folder)
    cfg = compose_config("distill", [*DISTILL_TINY, f"data.root={jpegs}", "kd=kd", "teacher/model=hf",
                                     f"teacher.model.source={teacher_folder}", "teacher.model.pretrained=true",
                                     "student=hf", f"student.source={student_folder}",
                                     f"paths.output_dir={tmp_path / 'out'}"])
    record = run_distill(cfg, quiet=True)
    assert record["teacher_model"] == "hf" and 0.0 <= record["last"]["test/top1"] <= 1.0


def test_hugging_face_taps_are_hidden_states_and_the_classifier_input(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "vit"
    saved = transformers.ViTForImageClassification(_vit_config(transformers, 32, 2))
    saved.save_pretrained(folder)
    model = build_model("hf", 3, (3, IMAGE_SIZE, IMAGE_SIZE), source=str(folder), pretrained=True).eval()
    torch.testing.assert_close(model.net.classifier.weight, saved.classifier.weight)  # the weights loaded
    taps = FeatureTaps(model, ["stage:0", "stage:-1", "embedding"])
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    logits = model(x)
    features = taps.pop()
    reference = saved.eval()(pixel_values=x, output_hidden_states=True)
    torch.testing.assert_close(logits, reference.logits)
    torch.testing.assert_close(features["stage:-1"], reference.hidden_states[-1])
    assert features["stage:0"].shape == (2, (IMAGE_SIZE // 8) ** 2 + 1, 32) and features["embedding"].shape == (2, 32)
    with pytest.raises(UserError, match="could not read the Hugging Face model config"):
        build_model("hf", 3, (3, IMAGE_SIZE, IMAGE_SIZE), source=str(tmp_path / "missing"))


def test_hugging_face_text_teacher_distills_into_the_lstm_on_imdb(tmp_path):
    """A small BERT on the project's IMDB word ids (vocabulary from the data, pad id 0), trained by the run from
    random weights, then distilled into the LSTM: what an offline machine can do."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "bert"
    transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            max_position_embeddings=32).save_pretrained(folder)
    write_fake_imdb(tmp_path / "data")
    cfg = compose_config("distill", ["data=imdb", "data.val_size=0", "data.max_length=12", "data.vocab_size=40",
                                     "data.min_freq=1", "data.batch_size=8", "trainer.max_epochs=1",
                                     "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger",
                                     "~experiment", "kd=kd", "teacher/model=hf", f"teacher.model.source={folder}",
                                     "student=lstm", "student.hidden_size=8", "fidelity.cka_max_examples=8",
                                     f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}"])
    record = run_distill(cfg, quiet=True)
    assert record["teacher_model"] == "hf" and record["config"]["student"]["name"] == "lstm"
    assert 0.0 <= record["last"]["test/top1"] <= 1.0
    with pytest.raises(ConfigError, match="a pretrained text model reads its own tokenizer's ids"):
        build_model("hf", 2, (12,), source=str(folder), pretrained=True, vocab_size=40)


def test_hugging_face_is_optional_and_its_absence_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match=r"model=hf needs the optional package 'transformers'.*pip install -e \.\[hf\]"):
        build_model("hf", 10, source="google/vit-base-patch16-224")


# ----------------------------------------------------------------------------------------------- data=imagenet
def _imagenet(root: Path, **settings) -> ImageNetDataModule:
    datamodule = ImageNetDataModule(name="imagenet", root=str(root), num_classes=None, image_size=IMAGE_SIZE,
                                    resize_size=36, batch_size=6, val_size=0, **settings)
    datamodule.setup("fit")
    return datamodule


def test_imagenet_decoders_read_the_same_images(jpegs):
    pil, workers, batched = (_imagenet(jpegs), _imagenet(jpegs, decode="torchvision"),
                             _imagenet(jpegs, decode="torchvision", decode_device="cpu", num_workers=1))
    reference, labels, indices = next(iter(pil.test_dataloader()))
    decoded = next(iter(workers.test_dataloader()))[0]
    encoded, batched_labels, batched_indices = next(iter(batched.test_dataloader()))
    assert isinstance(encoded, list) and len(encoded) == len(reference)
    on_device = batched.decode_batch(encoded, batched.eval_transform)
    assert reference.shape == decoded.shape == on_device.shape == (6, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(on_device, decoded)  # the same decoder and resizer, batched or not
    step = 1.0 / 255 / min(pil.std)  # PIL and torchvision differ by rounding only: a grey level or two
    assert (decoded - reference).abs().max() <= 2 * step and (decoded - reference).abs().mean() <= step / 4
    assert torch.equal(labels, batched_labels) and torch.equal(indices, batched_indices)
    # training crops: drawn from (seed, epoch, example) in both torchvision paths, so identical
    workers_batch = next(iter(workers.train_dataloader()))
    batched_batch = next(iter(batched.train_dataloader()))
    torch.testing.assert_close(batched.decode_batch(batched_batch[0], batched.train_transform), workers_batch[0])
    assert torch.equal(workers_batch[2], batched_batch[2])


def test_imagenet_config_errors_name_the_fix(jpegs):
    with pytest.raises(ConfigError, match="data.decode='nvidia' is not a decoder"):
        _imagenet(jpegs, decode="nvidia")
    with pytest.raises(ConfigError, match="set data.decode=torchvision"):
        _imagenet(jpegs, decode_device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            _imagenet(jpegs, decode="torchvision", decode_device="cuda")
    cfg = compose_config("train", ["data=imagenet", f"data.root={jpegs}"])
    with pytest.raises(Exception, match="data.num_classes=1000 but .* has 3 class folders") as error:
        instantiate(cfg.data)
    assert isinstance(find_user_error(error.value), ConfigError)


def test_the_decode_benchmark_times_every_decoder_on_the_same_files(jpegs):
    from scripts.benchmark_imagenet_decode import decode_table, paths
    table = decode_table(jpegs, images=12, batch_size=4, workers=0, image_size=IMAGE_SIZE)
    rows = table.splitlines()[2:]
    assert [row[:40].strip() for row in rows] == [name for name, _ in paths(torch.cuda.is_available())]
    assert all(float(row.split()[-2]) > 0 for row in rows) and rows[0].endswith("1.00x")

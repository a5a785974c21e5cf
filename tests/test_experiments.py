"""Every named experiment in cfg/experiment/ composes and runs one training step on CPU, on fake data, and the
generated cells are exactly what scripts/make_experiments.py writes. One cell of each kind of run goes through
the whole entry point (fit, evaluation, run record: FULL_RUNS); the others run one optimizer step of their real
task outside the Lightning loop, which those runs would only repeat.

Cheap by construction: batches of 2, one training batch, validation and test cut to one batch, no sanity
check, no logger; pre-training phases shrink to one epoch and teacher budgets to a few examples. Teachers are
trained once per (data, architecture) for one step and shared by every cell of the module (ensemble members
and fold teachers reuse that one checkpoint), and all cells share one output folder, so a cached teacher's
outputs are computed once. ImageNet cells run on a tiny image folder at image_size 64 (their recipe's 224
only costs time here), IMDB cells on a few made-up reviews with a 40-word vocabulary.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from errors import UserError
from models.gan import DCGANGenerator, save_generator
from runs import training as runs
from runs.configs import model_node
from runs.training import derived_train_config, run_distill, run_train
from tests.fake_cifar import patch_cifar_md5, write_fake_cifar
from tests.helpers import CFG_DIR, compose_config
from tests.test_text_and_custom_data import write_fake_imdb, write_image_folder

from scripts import experiments, make_experiments
from scripts.experiments import mdistiller, mlkd, repdistiller, semiparametric

EXPERIMENT_DIR = Path(CFG_DIR) / "experiment"
EXPERIMENTS = sorted(str(p.relative_to(EXPERIMENT_DIR).with_suffix("")) for p in EXPERIMENT_DIR.rglob("*.yaml"))
# One step, evaluated once: no validation inside the fit (the run's own validate/test after it remain), so the
# last checkpoint is written at the end of the training epoch and no best one exists: the record's "best" is
# the last checkpoint, evaluated once (see `evaluate_once`).
ONE_STEP = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "+trainer.num_sanity_val_steps=0", "+trainer.check_val_every_n_epoch=10",
            "+callbacks.last_checkpoint.save_on_train_epoch_end=true",
            "trainer.accelerator=cpu", "trainer.devices=1", "++trainer.strategy=auto", "++trainer.sync_batchnorm=false",
            "trainer.enable_progress_bar=false",
            "data.batch_size=2", "data.eval_batch_size=null", "data.num_workers=0", "~logger"]
# Per data set: the settings that fit its fake data (the fixture adds where the data is).
DATA = {"cifar10": {"data.val_size": 0}, "cifar100": {"data.val_size": 0},
        "image_folder": {"data.val_size": 0, "data.image_size": 64},
        "imagenet": {"data.val_size": 0, "data.image_size": 64, "data.resize_size": 72, "data.num_classes": None},
        "imdb": {"data.val_size": 0, "data.max_length": 12, "data.vocab_size": 40, "data.min_freq": 1},
        # generated, not fake: cut to a few examples (fidelity's CKA subset would otherwise run 1000 test examples)
        "mnist1d": {"data.val_size": 0, "data.train_subset": 16, "data.test_subset": 8}}
FEW_EXAMPLES = 3  # a teacher-call budget in the test: the training pool the teacher may see (CKD's tuples of 3)


def entry_point(name: str) -> str:
    """Experiments are for distill_train.py unless the file says `task: train`."""
    return "train" if OmegaConf.load(EXPERIMENT_DIR / f"{name}.yaml").get("task") == "train" else "distill"


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory, data_dir):
    """data name -> settings pointing at fake data of that kind (md5 checks of fake CIFAR files off)."""
    root = tmp_path_factory.mktemp("fake_data")
    for variant in ("cifar10", "cifar100"):
        write_fake_cifar(root / variant, variant, n_train=16, n_test=8)
    write_image_folder(root / "images", {"train": {"n01": 3, "n02": 3, "n03": 2}, "val": {"n01": 1, "n02": 1, "n03": 1}},
                       size=72)
    write_fake_imdb(root / "imdb")
    folders = {"cifar10": root / "cifar10", "cifar100": root / "cifar100", "imdb": root / "imdb", "image_folder": root}
    settings = {name: {"paths.data_dir": str(folders.get(name, data_dir)), **values} for name, values in DATA.items()}
    settings["image_folder"]["data.root"] = settings["imagenet"]["data.root"] = str(root / "images")
    with pytest.MonkeyPatch.context() as monkeypatch:
        patch_cifar_md5(monkeypatch)
        yield settings


@pytest.fixture(scope="module", autouse=True)
def evaluate_once():
    """Here a run's best checkpoint holds its last weights: evaluate them once, not once as "last" and again as
    "best" (the record still gets both sections)."""
    evaluate, seen = runs._evaluate, {}

    def once(trainer, task, datamodule, checkpoint):
        key = (id(trainer), id(task))
        if key not in seen:
            seen.clear()  # only the run in progress can ask again
            seen[key] = evaluate(trainer, task, datamodule, checkpoint)
        return dict(seen[key])
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(runs, "_evaluate", once)
        yield


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """One output folder for every cell: teachers' caches and runs are found again by their config hash."""
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def teachers(outputs):
    """(data, model name) -> a one-step checkpoint of that architecture, trained on first use."""
    made: dict[tuple[str, str], str] = {}

    def checkpoint(cfg, node) -> str:
        key = (str(cfg.data.name), str(node.name))
        if key not in made:
            made[key] = run_train(derived_train_config(cfg, node), quiet=True)["checkpoints"]["last"]
        return made[key]
    return checkpoint


def teacher_settings(cfg, checkpoint) -> dict:
    """Point the cell's teacher (any kind) at shared one-step checkpoints instead of training it."""
    teacher = cfg.teacher
    kind = str(teacher.source) if teacher.kind == "cached" else str(teacher.kind)
    settings = {}
    if teacher.get("budget") is not None:
        settings["teacher.budget"] = FEW_EXAMPLES
    if teacher.kind == "cached" and teacher.get("student_views", "fixed") == "fixed":
        settings["teacher.views"] = 2
    if kind == "single":
        settings["teacher.checkpoint"] = checkpoint(cfg, teacher.model)
    elif kind == "ensemble" and teacher.get("models"):
        settings["teacher.checkpoints"] = [checkpoint(cfg, model_node(name)) for name in teacher.models]
    else:
        settings["teacher.checkpoints"] = [checkpoint(cfg, teacher.model)] * int(
            teacher.folds if kind == "crossfit" else teacher.size)
    return settings


def apply(cfg, settings: dict) -> None:
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value, merge=False)


def cell_config(name: str, fake_data, outputs, teachers):
    """(entry point, config): the experiment composed once, then cut to one step on fake data."""
    config_name = entry_point(name)
    cfg = compose_config(config_name, [f"experiment={name}", f"paths.output_dir={outputs}", *ONE_STEP])
    if cfg.data.name not in fake_data:
        raise AssertionError(f"{name} uses data={cfg.data.name}, which this test has no fake data for; add it to DATA")
    apply(cfg, fake_data[cfg.data.name])
    if "baseline" in cfg:
        apply(cfg, {"baseline": False})
    if config_name == "distill":
        if cfg.augment.name == "synthetic" and not cfg.augment.generator:  # an untrained one, as train_gan.py writes
            channels = cfg.data.input_shape[0]
            path = save_generator(outputs / "generator.pt", DCGANGenerator(cfg.data.input_shape, width=4),
                                  cfg.data.get("mean") or [0.5] * channels, cfg.data.get("std") or [0.25] * channels,
                                  str(cfg.data.name))
            apply(cfg, {"augment.generator": str(path)})
        apply(cfg, {f"kd.phases.{i}.epochs": 1 for i in range(len(cfg.kd.get("phases") or []))})
        apply(cfg, teacher_settings(cfg, teachers))
        if cfg.get("student_init_checkpoint"):  # PAD-L2's L2 student: a one-step run of its architecture stands in
            apply(cfg, {"student_init_checkpoint": teachers(cfg, cfg.student)})
    return config_name, cfg


# Cells run through the whole entry point (fit, validate and test of the last and best checkpoints, run record):
# one of each kind of run the experiments contain, the cheapest of its kind. Every other cell runs one training
# step of its real task - its data, teacher (of its kind, from a shared checkpoint), student, objective, phase,
# augmentation and optimizer - without the Lightning loop those cells would only repeat.
FULL_RUNS = {
    "quickstart": "mnist1d, a scratch baseline in the recipe",
    "repdistiller/kd_resnet56_resnet20": "CIFAR-100, single teacher, RepDistiller's recipe",
    "repdistiller/fsp_resnet56_resnet20": "a pre-training phase before the main one",
    "mdistiller/dkd_resnet56_resnet20": "a warm-up term",
    "torchdistill/kd_resnet34_resnet18": "ImageNet layout (image folder), torchvision models",
    "semiparametric/crossfit_kd_resnet8_cnn5": "CIFAR-10, cross-fitted fold teachers",
    "semiparametric/enhanced_kd_resnet8_cnn5": "the gamma-corrected loss",
    "fidelity/kd_mixup_ens3_preresnet20_preresnet20": "an ensemble teacher on mixup inputs",
    "fidelity/kd_ens3_lstm_lstm_imdb": "text: an LSTM ensemble",
    "ckd/mixup_resnet32_budget1600": "a cached teacher under a budget with fresh student views, early stopping",
    "ckd/crd_resnet32_budget1600": "a budget on a cached teacher, CRD on the logits plus an added KD term",
}


def one_training_step(cfg) -> dict:
    """One optimizer step of the cell's distillation task, outside the Lightning loop."""
    datamodule, task, info = runs.build_distillation(cfg)
    batch = next(iter(datamodule.train_dataloader()))
    optimizers = task.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    task.start_optimizer_afresh([optimizer], task.phase)  # the first phase's lr (pre-training phases start the run)
    task.set_phase_trainability()
    phases = cfg.kd.get("phases") or []
    if phases and phases[0].get("lr") is not None:
        assert all(group["lr"] == phases[0].lr for group in optimizer.param_groups)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer to log to
        loss = task.training_step(batch, 0)
    loss.backward()
    learning = [p for p in task.trainable_parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in learning)
    optimizer.step()
    return info


def stepped_elsewhere(name: str) -> bool:
    """Whether both models of a pair's KD cell take training steps in another test (tests/test_models.py steps
    every zoo model): its step would add nothing that KD's step on resnet56 -> resnet20 does not check."""
    from models import model_names
    cfg = compose_config(entry_point(name), [f"experiment={name}"])
    return {str(cfg.teacher.model.name), str(cfg.student.name)} <= set(model_names())


def step_sample(names: list[str]) -> list[str]:
    """The cells that run a step in CI: the full runs, every method once (RepDistiller's on resnet56 ->
    resnet20), a teacher-student pair's KD cell where one of its models is stepped by no other test, and one cell
    of each other kind. Every cell still composes and builds its objective (test_every_experiment_composes);
    KD_ALL_EXPERIMENTS=1 steps them all (about 20 minutes on 2 CPU cores, too long for CI)."""
    import importlib.util
    import os
    if os.environ.get("KD_ALL_EXPERIMENTS"):
        return names
    chosen = set(FULL_RUNS) | {"quickstart"}
    for name in names:
        paper, _, cell = name.partition("/")
        if paper == "repdistiller" and (cell.endswith("_resnet56_resnet20")
                                        or cell.startswith("kd_") and not stepped_elsewhere(name)):
            chosen.add(name)
        elif paper in ("mnist1d", "fidelity"):
            chosen.add(name)
        elif paper == "ckd" and cell.endswith("resnet32_budget1600"):
            chosen.add(name)
        elif paper == "semiparametric" and ("resnet8_" in cell or cell.endswith("resnet8")):
            chosen.add(name)
        elif paper in ("mdistiller", "ttm", "kdpp", "lskd", "ctkd", "mlkd") and cell.endswith("resnet56_resnet20"):
            chosen.add(name)
        elif paper == "mdistiller" and cell == "kd_dot_vgg13_vgg8":  # optimizer=dot
            chosen.add(name)
        elif paper == "torchdistill" and cell.startswith("pad_l2_"):  # a student started from a checkpoint
            chosen.add(name)
        elif paper == "torchdistill" and cell.startswith("srd_"):  # a teacher on batch statistics
            chosen.add(name)
        elif paper == "deit" and cell.endswith("_tiny") and importlib.util.find_spec("timm"):  # timm: optional
            chosen.add(name)
    return sorted(n for n in names if n in chosen)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    """Cheap for all 200+ cells: the config composes and its objective and phases build."""
    from tasks.phases import parse_phases
    cfg = compose_config(entry_point(name), [f"experiment={name}"])
    if entry_point(name) == "distill":
        objective = runs.build_objective(cfg)
        parse_phases(cfg.kd, objective.terms)


@pytest.mark.parametrize("name", step_sample(EXPERIMENTS))
def test_experiment_composes_and_runs_one_step(name, fake_data, outputs, teachers):
    config_name, cfg = cell_config(name, fake_data, outputs, teachers)
    if config_name == "train":
        record = run_train(cfg, quiet=True)
    elif name not in FULL_RUNS:
        info = one_training_step(cfg)
        assert info["teacher_kind"] == cfg.teacher.kind
        return
    else:
        record = run_distill(cfg, quiet=True)
        assert record["config"]["kd"]["name"] == cfg.kd.name and record["teacher_kind"] == cfg.teacher.kind
        assert record["last"]["test/kl"] >= 0
    assert Path(record["run_dir"], "record.json").is_file()
    assert 0.0 <= record["last"]["test/top1"] <= 1.0


def test_full_runs_are_experiments():
    assert set(FULL_RUNS) <= set(EXPERIMENTS)


# -- the generated cells ---------------------------------------------------------------------------------
def test_generated_cells_are_what_the_generator_writes():
    files = experiments.render_all()
    for path, text in files.items():
        assert path.is_file(), f"{path} is missing: run python scripts/make_experiments.py"
        assert path.read_text() == text, f"{path} differs from its generator: run python scripts/make_experiments.py"
    stale = [p for p in experiments.generated_on_disk() if p not in files]
    assert not stale, f"generated files no generator row makes: {stale}; run python scripts/make_experiments.py"


def test_check_byte_checks_every_cell(monkeypatch, capsys):
    """--check passes on the committed cells and names a cell whose text differs by one byte."""
    assert make_experiments.main(["--check"]) == 0
    files = experiments.render_all()
    path = sorted(files)[len(files) // 2]
    monkeypatch.setattr(make_experiments, "render_all", lambda: {**files, path: files[path] + " "})
    assert make_experiments.main(["--check"]) == 1
    assert capsys.readouterr().out.strip() == f"differs: {path.relative_to(experiments.cells.ROOT)}"


def test_every_published_cell_has_an_experiment():
    """Each number of RepDistiller's two tables (and the CRD paper's CRD+KD row) and of mdistiller's DKD tables is
    one experiment, no more."""
    rd = [n for n in EXPERIMENTS if n.startswith("repdistiller/")]
    published = sum(v is not None for row in repdistiller.RD_RESULTS.values() for v in row)
    assert len(rd) == published == 14 * 13 - 1 - 6  # FSP: N/A on wrn-40-2 -> wrn-40-1, no cross-architecture row
    assert "repdistiller/kd_resnet32x4_resnet8x4" in rd and "repdistiller/fsp_wrn_40_2_wrn_40_1" not in rd
    assert not [n for n in rd if n.startswith("repdistiller/fsp_") and "mobilenetv2" in n]
    assert sum(n.startswith("mdistiller/dkd_") for n in EXPERIMENTS) == len(mdistiller.MD_DKD) + len(mdistiller.MD_IMAGENET)
    assert {"mdistiller/kd_resnet34_resnet18", "mdistiller/kd_resnet50_mobilenetv1"} <= set(EXPERIMENTS)
    for method in ("kd", "crossfit_kd", "enhanced_kd"):
        for depth in semiparametric.SP_DEPTHS:
            assert f"semiparametric/{method}_resnet{depth}_cnn5" in EXPERIMENTS


def test_mlkd_cells_run_their_anchors_recipes():
    """Every MLKD and MLKD+LS number of the LSKD README is one cell; MLKD on the MLKD anchor's config where it has
    the pair, MLKD+LS on the LSKD config with the logged --kd-weight."""
    assert sorted(n for n in EXPERIMENTS if n.startswith("mlkd/")) == sorted(
        f"mlkd/{kind}_{t}_{s}" for kind in ("mlkd", "mlkd_ls") for t, s in mlkd.LSKD_TABLE)
    plain = compose_config("distill", ["experiment=mlkd/mlkd_resnet32x4_resnet8x4"])
    assert (plain.trainer.max_epochs, plain.data.batch_size, plain.optimizer.lr) == (240, 64, 0.025)
    assert plain.kd.terms.instance_level.weight == 0.9 and not plain.kd.terms.instance_level.standardize
    ls = compose_config("distill", ["experiment=mlkd/mlkd_ls_vgg13_vgg8"])
    assert (ls.trainer.max_epochs, ls.optimizer.lr, ls.kd.terms.batch_level.weight) == (480, 0.01, 6.0)
    assert list(ls.kd.terms.class_level.temperatures) == [2.0, 3.0, 5.0, 2.0, 6.0]
    assert ls.kd.terms.instance_level.standardize and (ls.published.value, ls.published.epoch) == (75.22, "best")


def test_repdistiller_recipe_and_weights():
    kd = compose_config("distill", ["experiment=repdistiller/kd_resnet32x4_resnet8x4"])
    assert (kd.trainer.max_epochs, kd.data.batch_size, kd.optimizer.lr, kd.optimizer.weight_decay) == (240, 64, 0.05, 5e-4)
    assert list(kd.scheduler.milestones) == [150, 180, 210] and kd.scheduler.gamma == 0.1
    assert (kd.kd.terms.ce.weight, kd.kd.terms.kd.weight, kd.kd.terms.kd.temperature) == (0.1, 0.9, 4.0)
    crd = compose_config("distill", ["experiment=repdistiller/crd_vgg13_mobilenetv2"])
    assert crd.optimizer.lr == 0.01 and crd.teacher.recipe.optimizer.lr == 0.05  # small-lr student, lr-0.05 teacher
    assert (crd.kd.terms.ce.weight, crd.kd.terms.crd.weight) == (1.0, 0.8)
    crd_kd = compose_config("distill", ["experiment=repdistiller/crd_kd_resnet32x4_resnet8x4"])  # -a 1 -b 0.8
    assert crd_kd.kd.name == "crd_kd" and crd_kd.published.value == 75.46
    assert (crd_kd.kd.terms.ce.weight, crd_kd.kd.terms.crd.weight, crd_kd.kd.terms.kd.weight) == (1.0, 0.8, 1.0)
    for cell in ("kd_resnet32x4_resnet8x4", "crd_vgg13_mobilenetv2"):  # fp32 even when launched with trainer=gpu
        cfg = compose_config("distill", [f"experiment=repdistiller/{cell}", "trainer=gpu"])
        assert cfg.trainer.precision == "32-true"
    dkd = compose_config("distill", ["experiment=mdistiller/dkd_resnet56_resnet20"])
    assert (dkd.kd.terms.dkd.weight_nckd, dkd.kd.terms.dkd.warmup_epochs, dkd.kd.terms.dkd.temperature) == (2.0, 20, 4.0)


@pytest.mark.parametrize("cell, lr", [("ft_resnet32x4_resnet8x4", 0.01), ("ft_wrn_40_2_wrn_16_2", 0.01),
                                      ("ft_vgg13_vgg8", None), ("ft_resnet32x4_shufflenetv1", None)])
def test_repdistiller_ft_pretrains_at_its_own_lr(cell, lr):
    """helper/pretrain.py: FT's paraphraser pre-training runs a fresh SGD at lr 0.01 for ResNet/WRN students, at
    the main lr (null: the optimizer's) for the others; AB and FSP keep the main lr."""
    cfg = compose_config("distill", [f"experiment=repdistiller/{cell}"])
    assert [phase.get("lr") for phase in cfg.kd.phases] == [lr] and cfg.kd.phases[0].epochs == 30
    ab = compose_config("distill", ["experiment=repdistiller/ab_resnet32x4_resnet8x4"])
    assert all(phase.get("lr") is None for phase in ab.kd.phases)


def test_the_published_block_does_not_change_the_run_hash():
    """A cell's published result says what to expect, not what to compute: with or without it (or with another
    value) the run has the same folder, so runs from before the block existed are found again."""
    from runs.folders import config_digest
    cfg = compose_config("distill", ["experiment=repdistiller/kd_resnet32x4_resnet8x4"])
    assert cfg.published.value == 73.33 and cfg.published.teacher == 79.42 and cfg.published.epoch == "last"
    digest = config_digest(cfg)
    cfg.published.value = 99.0
    assert config_digest(cfg) == digest
    with open_dict(cfg):
        del cfg["published"]
    assert config_digest(cfg) == digest


def test_ft_cells_take_their_anchors_form_and_batchnorm():
    """RepDistiller's FT cells keep cfg/kd/ft.yaml's defaults (its FT.py: channel means, paraphraser without BN,
    translator with BN); torchdistill's cell sets its FTLoss form and `uses_bn: False` for both modules."""
    rd = compose_config("distill", ["experiment=repdistiller/ft_resnet32x4_resnet8x4"]).kd.terms.ft
    assert (rd.form, rd.paraphraser_batchnorm, rd.translator_batchnorm) == ("channel_mean", False, True)
    td = compose_config("distill", ["experiment=torchdistill/ft_resnet34_resnet18"]).kd.terms.ft
    assert (td.form, td.paraphraser_batchnorm, td.translator_batchnorm, td.weight) == ("full", False, False, 1000.0)


@pytest.mark.parametrize("cell, devices, batch, lr, sync", [
    ("kd_resnet34_resnet18", 3, 256, 0.3, False),  # log: world_size=3, -adjust_lr: 0.1 x 3
    ("crd_resnet34_resnet18", 3, 85, 0.1, True),  # log: world_size=3, sync_bn=True, no -adjust_lr
    ("reviewkd_resnet34_resnet18", 3, 64, 0.075, False),  # log: 6673 iterations per epoch = 3 x 64, lr 0.025 x 3
    ("ft_resnet34_resnet18", 1, 256, 0.1, None)])  # log: world_size=1
def test_torchdistill_cells_run_the_published_process_layout(cell, devices, batch, lr, sync):
    cfg = compose_config("distill", [f"experiment=torchdistill/{cell}"])
    assert (cfg.trainer.devices, cfg.data.batch_size, cfg.optimizer.lr) == (devices, batch, lr)
    assert cfg.trainer.get("sync_batchnorm") == sync and cfg.trainer.precision == "32-true"
    assert cfg.trainer.get("strategy") == ("ddp" if devices > 1 else None)


# -- bad input -------------------------------------------------------------------------------------------
def test_imagenet_cell_without_data_root_names_the_fix(outputs, tmp_path):
    teacher = tmp_path / "resnet34.pth"  # teacher checkpoints are read first; this one is there
    torch.save({"fc.weight": torch.zeros(1)}, teacher)
    cfg = compose_config("distill", ["experiment=torchdistill/kd_resnet34_resnet18", f"paths.output_dir={outputs}",
                                     f"teacher.checkpoint={teacher}"])
    with pytest.raises(UserError, match=r"data\.root=PATH"):
        run_distill(cfg, quiet=True)


def test_pad_l2_cell_without_its_l2_student_names_the_key(outputs):
    cfg = compose_config("distill", ["experiment=torchdistill/pad_l2_resnet34_resnet18", f"paths.output_dir={outputs}"])
    with pytest.raises(UserError, match=r"student_init_checkpoint=\"<the L2 cell's run folder>/checkpoints/best.ckpt\": "
                                        r"must be the path of an existing file, or null \(the checkpoint whose"):
        run_distill(cfg, quiet=True)


def test_imagenet_cell_without_pretrained_weights_names_the_file(fake_data, outputs, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = compose_config("distill", ["experiment=torchdistill/kd_resnet34_resnet18", f"paths.output_dir={outputs}",
                                     *ONE_STEP])
    apply(cfg, fake_data["image_folder"])
    with pytest.raises(UserError, match=r"resnet34-b627a593\.pth does not exist"):
        run_distill(cfg, quiet=True)


@pytest.mark.parametrize("script", sorted(p.name for p in (Path(CFG_DIR).parent / "scripts").glob("reproduce_*.sh")))
def test_reproduce_scripts_filter_on_data_their_cells_use(script):
    """A table's `--filter data.name=X` must name a data set some cell of the script's paper trains on (a renamed
    data config otherwise leaves the table empty without a word)."""
    import re
    text = (Path(CFG_DIR).parent / "scripts" / script).read_text()
    paper = re.search(r"^PAPER=(\S+)", text, re.M)
    filtered = set(re.findall(r"--filter data\.name=(\w+)", text))
    if paper is None or not filtered:
        return
    used = {OmegaConf.load(p).get("data", {}).get("name") or _data_choice(p)
            for p in (EXPERIMENT_DIR / paper.group(1)).rglob("*.yaml")}
    assert filtered <= used, f"{script} filters on {sorted(filtered - used)}; its cells use {sorted(used)}"


def _data_choice(path: Path) -> str | None:
    """The data config a cell picks in its defaults (`override /data: NAME`)."""
    import re
    found = re.search(r"override /data: (\w+)", path.read_text())
    return found.group(1) if found else None

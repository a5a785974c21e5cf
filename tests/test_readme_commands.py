"""Every `train.py` / `distill_train.py` / `ray_runner.py` command in the README's bash blocks composes, and
composes to what its comment says: CLAIMS holds each command's claim as checks on the composed config (and,
for distill_train.py, on the experiment Hydra chose). A README command without a claim here fails, and so does
a claim whose command left the README: change them together. Placeholders (PATH, T.ckpt, FILE.csv, COLUMN...)
are filled with test values. The commands that can run offline on small data run for real through the
entry point, cut to tiny data (RUN_FOR_REAL); the quickstart itself runs in tests/test_console.py."""
from __future__ import annotations

import csv
import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose as hydra_compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from runs.configs import CFG_DIR, ROOT, compose, experiment_in_use
from runs.folders import config_digest, run_folder
from runs.records import read_record
from runs.summary import composed_run_line
from runs.sweep import first_value, override_value, split_arguments
from tests.helpers import QUICKSTART_TINY

README = ROOT / "README.md"
SCRIPTS = ("train.py", "distill_train.py", "ray_runner.py")
PLACEHOLDERS = ("PATH", "T.ckpt", "A.ckpt", "B.ckpt", "FILE.csv", "COLUMN")


def readme_commands() -> list[str]:
    """Each command as `script arg ...` (quotes removed, continuation lines joined), in README order, once."""
    found: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            segments: list[list[str]] = [[]]
            for word in shlex.split(line, comments=True):
                if word in ("&&", "||", ";"):
                    segments.append([])
                else:
                    segments[-1].append(word)
            for words in segments:
                starts = [i for i, word in enumerate(words) if word.rsplit("/", 1)[-1] in SCRIPTS]
                if starts:
                    command = " ".join([words[starts[0]].rsplit("/", 1)[-1], *words[starts[0] + 1:]])
                    if command not in found:
                        found.append(command)
    return found


COMMANDS = readme_commands()


@dataclass
class Job:
    """One run a command launches: its composed config and the experiment the composition chose ("none"
    when none; None for Ray trials, which compose through runs.configs.compose)."""
    task: str
    overrides: list[str]
    cfg: DictConfig
    experiment: str | None
    settings: DictConfig | None = None  # the Ray runner's own config (tune.*)


def compose_as_cli(task: str, overrides: list[str]) -> Job:
    """What hydra.main composes for the entry point, with the experiment it chose."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CFG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=task, overrides=overrides, return_hydra_config=True)
    experiment = experiment_in_use(cfg.hydra.runtime.choices.get("experiment"))
    with_hydra = OmegaConf.to_container(cfg)
    del with_hydra["hydra"]
    return Job(task, overrides, OmegaConf.create(with_hydra), experiment)


def jobs_of(command: str, filled: dict[str, str]) -> list[Job]:
    """The runs a single-run command launches, composed as its entry point composes them (multiruns: see
    launched_jobs)."""
    script, *arguments = command.split(" ")
    arguments = [fill(argument, filled) for argument in arguments]
    if script == "ray_runner.py":  # as runs.sweep.run_sweep composes: the runner, then a trial (first values)
        runner, trials = split_arguments(arguments)
        tune_cfg = compose("tune", runner)
        search = tune_cfg.search
        space = [f"{key}={override_value(first_value(spec))}" for key, spec in
                 OmegaConf.to_container(search.space).items()]
        overrides = [*map(str, search.overrides), *trials, *space]
        return [Job(str(search.task), overrides, compose(str(search.task), overrides), None, tune_cfg)]
    return [compose_as_cli("train" if script == "train.py" else "distill", arguments)]


def launched_jobs(command: str, filled: dict[str, str], cli, monkeypatch, outputs: Path) -> list[Job]:
    """A multirun's jobs as the entry point launches them (Hydra's sweeper, each job composing its own recipe
    through the defaults-list interpolation), recorded instead of trained."""
    from runs import training
    from runs.configs import chosen_experiment
    jobs: list[Job] = []
    monkeypatch.setattr(training, "run_distill", lambda cfg: jobs.append(Job("distill", [], cfg, chosen_experiment())))
    script, *arguments = command.split(" ")
    cli(script, [*(fill(a, filled) for a in arguments), f"paths.output_dir={outputs}"])
    return jobs


def fill(argument: str, filled: dict[str, str]) -> str:
    pattern = r"(?<![\w./-])(" + "|".join(map(re.escape, PLACEHOLDERS)) + r")(?![\w./-])"
    return re.sub(pattern, lambda match: filled[match.group(1)], argument)


# -- the claims ------------------------------------------------------------------------------------------
def quickstart(job: Job, kd: str = "kd") -> None:
    """The quickstart's pair and mnist1d's recipe (README: students 100 epochs, teacher 40, SGD lr 0.05,
    cosine, baseline=true)."""
    cfg = job.cfg
    assert job.experiment == "recipe/mnist1d"
    assert (cfg.data.name, cfg.teacher.kind, cfg.teacher.model.name, cfg.student.name, cfg.kd.name) == \
        ("mnist1d", "single", "cnn1d", "mlp1d", kd)
    assert (cfg.trainer.max_epochs, cfg.teacher.recipe.trainer.max_epochs, cfg.optimizer.lr, cfg.baseline) == \
        (100, 40, 0.05, True)
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    method_terms = OmegaConf.load(CFG_DIR / "kd" / f"{kd}.yaml").terms
    assert set(cfg.kd.terms) == set(method_terms) and all("_target_" in term for term in cfg.kd.terms.values())


def no_recipe(job: Job, data: str) -> None:
    """No experiment on top (Hydra chose none, or the command drops it): the group defaults (240 epochs, SGD lr
    0.05, cosine) plus the command's own choices."""
    cfg = job.cfg
    assert job.experiment == "none" or (job.experiment is None and "~experiment" in job.overrides)
    assert cfg.data.name == data
    assert (cfg.trainer.max_epochs, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == \
        (240, 0.05, 0.9, 5e-4)
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    if job.task == "distill":
        assert cfg.baseline is False and cfg.teacher.recipe.trainer.max_epochs is None


def published_cell(job: Job, name: str) -> None:
    """The named cell, with its own recipe (RepDistiller: 240 epochs, steps at 150/180/210, batch 64)."""
    cfg = job.cfg
    assert job.experiment == name
    assert cfg.scheduler.milestones == [150, 180, 210] and cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 240
    cell = OmegaConf.load(CFG_DIR / "experiment" / f"{name}.yaml")
    assert cfg.kd.name == name.split("/")[1].split("_")[0] and cfg.baseline is cell.baseline


def pair(job: Job, data: str, teacher: str, student: str) -> None:
    no_recipe(job, data)
    assert (job.cfg.teacher.model.name, job.cfg.student.name) == (teacher, student)


Claim = Callable[[list[Job], dict], None]


def each(check: Callable[[Job], None], count: int = 1) -> Claim:
    def claim(jobs, filled):
        assert len(jobs) == count
        for job in jobs:
            check(job)
    return claim


def cifar100_own_pair(jobs, filled):
    (job,) = jobs
    pair(job, "cifar100", "resnet32x4", "resnet8x4")
    terms = job.cfg.kd.terms
    assert job.cfg.teacher.checkpoint == filled["PATH"]
    assert (terms.kd.temperature, terms.ce.weight, terms.kd.weight) == (2, 0.5, 0.9)


def over_seeds(jobs, filled):
    assert [job.cfg.seed for job in jobs] == [0, 1, 2]
    for job in jobs:
        quickstart(job)


def seeds_by_method(jobs, filled):
    assert [(job.cfg.seed, job.cfg.kd.name) for job in jobs] == list(itertools.product([0, 1, 2], ["kd", "dkd"]))
    for job in jobs:
        quickstart(job, job.cfg.kd.name)


def ray_trial(search: str, **expected) -> Claim:
    """A trial of cfg/search/<search>.yaml on the quickstart pair without its recipe, plus the runner's and
    the trials' extra settings."""
    def claim(jobs, filled):
        (job,) = jobs
        cfg, settings = job.cfg, job.settings
        assert settings.search.name == search
        assert (cfg.data.name, cfg.teacher.model.name, cfg.student.name, cfg.baseline) == ("mnist1d", "cnn1d", "mlp1d", False)
        assert (cfg.trainer.max_epochs, cfg.teacher.recipe.trainer.max_epochs) == (20, 30)
        for key, value in expected.items():
            assert OmegaConf.select(job.settings if key.startswith("tune.") else cfg, key) == value, key
    return claim


def speed_switches(jobs, filled):
    (job,) = jobs
    published_cell(job, "repdistiller/kd_resnet32x4_resnet8x4")
    assert job.cfg.compile is True and job.cfg.channels_last is True and job.cfg.data.device_resident is True
    # "none of these switches changes a run's hash" except the device-resident data, hashed because its draws differ
    plain = compose("distill", ["experiment=repdistiller/kd_resnet32x4_resnet8x4", "trainer=gpu",
                                "data.device_resident=true"])
    assert config_digest(job.cfg) == config_digest(plain)


def settings(check: Callable[[Job], None], **values) -> Claim:
    def claim(jobs, filled):
        (job,) = jobs
        check(job)
        for key, value in values.items():
            value = filled.get(value, value) if isinstance(value, str) else value
            assert OmegaConf.select(job.cfg, key) == value, key
    return claim


CLAIMS: dict[str, Claim] = {
    "distill_train.py": each(quickstart),
    "distill_train.py kd=dkd": each(lambda job: quickstart(job, "dkd")),
    "train.py data=cifar100 model=resnet32x4 trainer=gpu":
        settings(lambda job: no_recipe(job, "cifar100"), **{"model.name": "resnet32x4", "trainer.precision": "bf16-mixed"}),
    "distill_train.py experiment=repdistiller/kd_resnet32x4_resnet8x4 trainer=gpu":
        settings(lambda job: published_cell(job, "repdistiller/kd_resnet32x4_resnet8x4"), **{"trainer.accelerator": "gpu"}),
    "distill_train.py data=cifar100 student=resnet8x4 teacher/model=resnet32x4 teacher.checkpoint=PATH "
    "kd.terms.kd.temperature=2 kd.terms.ce.weight=0.5": cifar100_own_pair,
    "distill_train.py -m seed=0,1,2": over_seeds,
    "distill_train.py resume=true": settings(quickstart, resume=True),
    "train.py test_only=true ckpt=PATH data=cifar100": settings(lambda job: no_recipe(job, "cifar100"),
                                                                test_only=True, ckpt="PATH"),
    "distill_train.py verbose=true": settings(quickstart, verbose=True),
    "distill_train.py data=cifar100 teacher=ensemble teacher.size=3 teacher/model=resnet32x4 student=resnet8x4":
        settings(lambda job: pair(job, "cifar100", "resnet32x4", "resnet8x4"), **{"teacher.kind": "ensemble",
                                                                                  "teacher.size": 3}),
    "distill_train.py data=cifar100 teacher=ensemble teacher.checkpoints=[A.ckpt,B.ckpt] student=resnet8x4":
        settings(lambda job: no_recipe(job, "cifar100"), **{"teacher.kind": "ensemble", "student.name": "resnet8x4"}),
    "distill_train.py data=cifar100 teacher=ensemble teacher.models=[resnet32x4,wrn_40_2] student=resnet8x4":
        settings(lambda job: no_recipe(job, "cifar100"), **{"teacher.models": ["resnet32x4", "wrn_40_2"]}),
    "train.py data=cifar10 model=resnet56 data.crossfit.folds=5 data.crossfit.fold=0":
        settings(lambda job: no_recipe(job, "cifar10"), **{"model.name": "resnet56", "data.crossfit.folds": 5,
                                                            "data.crossfit.fold": 0}),
    "distill_train.py data=cifar10 teacher=crossfit teacher.folds=5 teacher/model=resnet56 student=cnn5":
        settings(lambda job: pair(job, "cifar10", "resnet56", "cnn5"), **{"teacher.kind": "crossfit", "teacher.folds": 5}),
    "distill_train.py data=cifar100 teacher=cached teacher.checkpoint=T.ckpt student=resnet8x4":
        settings(lambda job: no_recipe(job, "cifar100"), **{"teacher.kind": "cached", "teacher.checkpoint": "T.ckpt",
                                                             "student.name": "resnet8x4"}),
    "distill_train.py data=cifar100 teacher=cached teacher.budget=5000 teacher.checkpoint=T.ckpt "
    "augment=mixup_interpolated student=resnet8x4":
        settings(lambda job: no_recipe(job, "cifar100"), **{"teacher.kind": "cached", "teacher.budget": 5000,
                                                             "augment.name": "mixup_interpolated",
                                                             "student.name": "resnet8x4"}),
    "distill_train.py augment=mixup augment.alpha=1.0": settings(quickstart, **{"augment.name": "mixup",
                                                                                "augment.alpha": 1.0}),
    "distill_train.py data=cifar100 augment=synthetic augment.generator=outputs/gan/cifar100-s0/generator.pt "
    "augment.ratio=0.2 student=resnet8x4 teacher/model=resnet32x4":
        settings(lambda job: pair(job, "cifar100", "resnet32x4", "resnet8x4"),
                 **{"augment.name": "synthetic", "augment.ratio": 0.2}),
    "distill_train.py -m seed=0,1,2 kd=kd,dkd": seeds_by_method,
    "ray_runner.py search=kd_temperature": ray_trial("kd_temperature", **{"kd.terms.kd.temperature": 1}),
    "ray_runner.py search=kd_temperature tune.scheduler=asha tune.num_samples=4 tune.resources.gpu=0.25":
        ray_trial("kd_temperature", **{"tune.scheduler": "asha", "tune.num_samples": 4, "tune.resources.gpu": 0.25}),
    "ray_runner.py search=methods_seeds data.train_subset=1000":
        ray_trial("methods_seeds", **{"data.train_subset": 1000, "kd.name": "ce", "seed": 0}),
    "ray_runner.py search=methods_seeds tune.resume=true": ray_trial("methods_seeds", **{"tune.resume": True}),
    "ray_runner.py search=kd_temperature tune.address=auto": ray_trial("kd_temperature", **{"tune.address": "auto"}),
    "distill_train.py experiment=repdistiller/crd_resnet32x4_resnet8x4 trainer=gpu":
        each(lambda job: published_cell(job, "repdistiller/crd_resnet32x4_resnet8x4")),
    "distill_train.py experiment=repdistiller/crd_resnet32x4_resnet8x4 trainer=ddp":
        settings(lambda job: published_cell(job, "repdistiller/crd_resnet32x4_resnet8x4"),
                 **{"trainer.strategy": "ddp", "trainer.devices": -1, "trainer.sync_batchnorm": True}),
    "distill_train.py experiment=repdistiller/crd_resnet32x4_resnet8x4 trainer=ddp trainer.num_nodes=2":
        settings(lambda job: published_cell(job, "repdistiller/crd_resnet32x4_resnet8x4"),
                 **{"trainer.strategy": "ddp", "trainer.num_nodes": 2}),
    "distill_train.py experiment=repdistiller/crd_resnet32x4_resnet8x4 trainer=slurm resume=auto":
        settings(lambda job: published_cell(job, "repdistiller/crd_resnet32x4_resnet8x4"),
                 **{"trainer.strategy": "ddp", "resume": "auto", "trainer.devices": 1, "trainer.num_nodes": 1}),
    "train.py data=imdb model=lstm": settings(lambda job: no_recipe(job, "imdb"), **{"model.name": "lstm"}),
    "distill_train.py ~experiment data=imdb kd=kd teacher/model=lstm student=lstm student.hidden_size=32":
        settings(lambda job: pair(job, "imdb", "lstm", "lstm"), **{"student.hidden_size": 32}),
    "train.py data=image_folder data.root=PATH model=torchvision model.name=torchvision.resnet18 trainer=gpu":
        settings(lambda job: no_recipe(job, "image_folder"), **{"data.root": "PATH",
                                                                 "model.name": "torchvision.resnet18"}),
    "distill_train.py data=imagenet data.root=PATH kd=rkd teacher/model=timm teacher.model.name=timm.resnet50 "
    "student=timm student.name=timm.vit_tiny_patch16_224 trainer=gpu":
        settings(lambda job: pair(job, "imagenet", "timm.resnet50", "timm.vit_tiny_patch16_224"),
                 **{"data.root": "PATH", "kd.name": "rkd", "teacher.model.pretrained": False}),
    "distill_train.py data=imagenet data.root=PATH teacher/model=hf teacher.model.source=google/vit-base-patch16-224 "
    "teacher.model.pretrained=true student=timm student.name=timm.resnet18 trainer=gpu":
        settings(lambda job: pair(job, "imagenet", "hf", "timm.resnet18"),
                 **{"teacher.model.source": "google/vit-base-patch16-224", "teacher.model.pretrained": True}),
    "distill_train.py ~experiment data=imdb kd=kd teacher/model=hf teacher.model.source=PATH student=lstm":
        settings(lambda job: pair(job, "imdb", "hf", "lstm"), **{"teacher.model.source": "PATH",
                                                                 "teacher.model.vocab_size": 20000}),
    "train.py data=csv data.path=FILE.csv data.label=COLUMN model=mlp":
        settings(lambda job: no_recipe(job, "csv"), **{"data.path": "FILE.csv", "data.label": "COLUMN",
                                                        "model.name": "mlp"}),
    "distill_train.py experiment=repdistiller/kd_resnet32x4_resnet8x4 trainer=gpu compile=true channels_last=true "
    "data.device_resident=true": speed_switches,
}

# Offline on small data: run through the entry point for real, cut to tiny data and one epoch, beside the
# quickstart of tests/test_console.py (so the teacher and the scratch student are trained once). The
# quickstart itself and verbose=true run there; multiruns go through the entry point, training replaced.
RUN_FOR_REAL = ["distill_train.py kd=dkd", "distill_train.py augment=mixup augment.alpha=1.0",
                "train.py data=csv data.path=FILE.csv data.label=COLUMN model=mlp"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> dict[str, str]:
    """Placeholder -> test value; FILE.csv is a small real CSV (3 classes), COLUMN its label column."""
    root = tmp_path_factory.mktemp("placeholders")
    table = root / "table.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x1", "x2", "kind"])
        writer.writerows([[i % 7, (i * 3) % 5, ["a", "b", "c"][i % 3]] for i in range(60)])
    return {"PATH": str(root / "model.ckpt"), "T.ckpt": str(root / "teacher.ckpt"), "A.ckpt": str(root / "a.ckpt"),
            "B.ckpt": str(root / "b.ckpt"), "FILE.csv": str(table), "COLUMN": "kind"}


def test_every_readme_command_has_a_claim_here():
    assert COMMANDS, "no commands found in the README's bash blocks"
    unclaimed = [command for command in COMMANDS if command not in CLAIMS]
    gone = [command for command in CLAIMS if command not in COMMANDS]
    assert not unclaimed, f"README commands without a claim in tests/test_readme_commands.py: {unclaimed}"
    assert not gone, f"claims whose command is no longer in the README: {gone}"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes_what_it_says(command, filled, cli, monkeypatch, tmp_path):
    claim = CLAIMS.get(command)
    if claim is None:
        pytest.fail(f"no claim for the README command {command!r}: add what it must compose to CLAIMS")
    multirun = {"-m", "--multirun"} & set(command.split(" "))
    claim(launched_jobs(command, filled, cli, monkeypatch, tmp_path) if multirun else jobs_of(command, filled), filled)


def test_quickstart_line_in_the_readme_is_what_the_quickstart_prints():
    job = compose_as_cli("distill", [])
    line = composed_run_line(job.cfg, job.experiment, run_folder(job.cfg), finished=False)
    assert f"```text\n{line}\n```" in README.read_text()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quickstart_table_records_are_what_the_quickstart_composes(seed):
    """The README's quickstart table (results/quickstart) came from `distill_train.py seed=N`: the same config
    still lands in the same run folder, so those records stand for today's quickstart."""
    record = json.loads((ROOT / "results" / "quickstart" / f"seed{seed}.json").read_text())
    assert run_folder(compose_as_cli("distill", [f"seed={seed}"]).cfg).name == Path(record["run_dir"]).name


@pytest.mark.parametrize("command", RUN_FOR_REAL)
def test_offline_readme_command_runs(command, filled, cli, data_dir, quickstart_outputs, capfd):
    assert command in COMMANDS
    script, *arguments = command.split(" ")
    task = "train" if script == "train.py" else "distill"
    tiny = [*(QUICKSTART_TINY if task == "distill" else ["trainer.max_epochs=1", "trainer.accelerator=cpu"]),
            f"paths.output_dir={quickstart_outputs}", f"paths.data_dir={data_dir}"]
    cli(script, [*(fill(a, filled) for a in arguments), *tiny, "trainer.enable_progress_bar=false"])
    (job,) = jobs_of(command, filled)
    cfg = compose(task, [*job.overrides, *tiny])
    first_line = capfd.readouterr().out.splitlines()[0]
    assert first_line == composed_run_line(cfg, job.experiment, run_folder(cfg), finished=False)
    record = read_record(run_folder(cfg))
    assert record is not None and 0.0 <= record["last"]["test/top1"] <= 1.0
    if task == "distill":
        assert 0.0 <= record["baseline"]["last"]["test/top1"] <= 1.0  # the quickstart's scratch student

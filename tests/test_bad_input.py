"""Bad input through the real entry points (train.py, distill_train.py, ray_runner.py) and the scripts
(make_table.py, plots.py): each command line below
stops with exit status 2 and one line on stderr that names the key, and leaves every file it found as it was
(a finished run, an unfinished one, their records and checkpoints) and writes no result.

All but a few run in one Python process (tests/cli_cases.py: one Lightning import for all); the few marked
`own_process` run as real `python script ...` processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from runs.training import run_train
from tests.cli_cases import NOT_RESULTS, snapshot
from tests.helpers import SimulatedKill, compose_config, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    script: str
    arguments: tuple[str, ...]
    named: tuple[str, ...]     # each must appear in the one line (the key; for a file: the file)
    own_process: bool = False

    @property
    def id(self) -> str:
        return f"{self.script.split('.')[0]}:{' '.join(self.arguments)}"[:80]


NO_TEACHER = "teacher.checkpoint=null"  # the teacher would be trained first: the check must come before that
CASES = [
    # optimizer and schedule
    Case("train.py", ("optimizer.lr=-1",), ("optimizer.lr",)),
    Case("train.py", ("optimizer.lr=",), ("optimizer.lr",)),
    Case("train.py", ("optimizer.momentum=1.5",), ("optimizer.momentum",), own_process=True),
    Case("train.py", ("optimizer.weight_decay=-1e-4",), ("optimizer.weight_decay",)),
    Case("train.py", ("optimizer=adam", "+optimizer.betas=[0.9,1.5]"), ("optimizer.betas",)),
    Case("train.py", ("+optimizer.lr_decay=0.1",), ("optimizer", "lr_decay")),
    Case("train.py", ("scheduler=multistep", "scheduler.gamma=-0.1"), ("scheduler.gamma",)),
    Case("train.py", ("scheduler=multistep", "scheduler.milestones=[30,20]"), ("scheduler.milestones",)),
    Case("train.py", ("scheduler.eta_min=-1",), ("scheduler.eta_min",)),
    # the run, the trainer, the data
    Case("train.py", ("seed=abc",), ("seed",)),
    Case("train.py", ("trainer.max_epochs=0",), ("trainer.max_epochs",)),
    Case("train.py", ("trainer.precision=17",), ("trainer.precision",)),
    Case("train.py", ("trainer.limit_train_batches=0",), ("trainer.limit_train_batches",)),
    Case("train.py", ("data.batch_size=0",), ("data.batch_size",)),
    Case("train.py", ("data.val_size=-3",), ("data.val_size",)),
    Case("train.py", ("data.train_subset=0",), ("data.train_subset",)),
    Case("train.py", ("resume=maybe",), ("resume",)),
    Case("train.py", ("test_only=true", "ckpt={missing}"), ("ckpt",)),
    # not hashed: this is the finished run's own config, which rerun=true would move aside if checked too late
    Case("train.py", ("rerun=true", "trainer.log_every_n_steps=0"), ("trainer.log_every_n_steps",)),
    # a model that does not fit the data: one probe forward before training
    Case("train.py", ("model=resnet8x4",), ("data.input_shape", "model=resnet8x4")),
    Case("train.py", ("data=digits", "model=cnn1d"), ("data.input_shape", "model=cnn1d")),
    Case("train.py", ("model.hidden=[abc]",), ("model", "hidden=['abc']")),  # a model refusing its settings
    # an unfinished run whose last checkpoint was cut short: named, with the fix
    Case("train.py", ("run_name=unfinished", "trainer.max_epochs=2", "resume=true"),
         ("{unfinished}/checkpoints/last.ckpt", "rerun=true", "best.ckpt")),
    # distillation: terms, teacher, augmentation, fidelity
    Case("distill_train.py", ("kd.terms.kd.temperature=0",), ("kd.terms.kd.temperature",)),
    Case("distill_train.py", ("kd.terms.ce.weight=-1",), ("kd.terms.ce.weight",)),
    Case("distill_train.py", ("kd=crd", "kd.terms.crd.memory=disk"), ("kd.terms.crd.memory",)),
    Case("distill_train.py", ("teacher.checkpoint={missing}",), ("teacher.checkpoint", "{missing}")),
    Case("distill_train.py", ("teacher.checkpoint={truncated}",), ("teacher.checkpoint", "{truncated}")),
    Case("distill_train.py", ("teacher=ensemble", "teacher.size=0"), ("teacher.size",)),
    Case("distill_train.py", ("teacher=crossfit", "teacher.folds=1"), ("teacher.folds",)),
    Case("distill_train.py", ("teacher.budget=0",), ("teacher.budget",)),
    Case("distill_train.py", (NO_TEACHER, "teacher.recipe.optimizer.lr=0"), ("teacher.recipe.optimizer.lr",)),
    Case("distill_train.py", ("augment=mixup", "augment.alpha=0"), ("augment.alpha",)),
    Case("distill_train.py", ("augment=synthetic",), ("augment.generator",)),
    Case("distill_train.py", ("fidelity.cka_max_examples=1",), ("fidelity.cka_max_examples",)),
    Case("distill_train.py", (NO_TEACHER, "student=resnet8x4"), ("data.input_shape", "student=resnet8x4"),
         own_process=True),
    Case("distill_train.py", (NO_TEACHER, "teacher/model=resnet8x4"), ("data.input_shape", "teacher/model=resnet8x4")),
    # sweeps: checked before Ray starts
    Case("ray_runner.py", ("optimizer.lr=-1",), ("optimizer.lr",)),
    Case("ray_runner.py", ("tune.num_samples=0",), ("tune.num_samples",), own_process=True),
    Case("ray_runner.py", ("tune.scheduler=hyperband",), ("tune.scheduler",)),
    # every value of the space checked before Ray starts, not only the first trial's ({{ }}: braces, formatted)
    Case("ray_runner.py", ("search.space={{kd.terms.kd.temperature: {{grid: [4, -1]}}}}",),
         ("kd.terms.kd.temperature=-1", "search=kd_temperature")),
    Case("ray_runner.py", ("+search.space.seed={{randint: [0, 5000000000]}}",), ("seed=4999999999",)),
    # Hydra's own refusals: what was asked, the nearest valid names, how to list them
    Case("train.py", ("optimzer.lr=0.1",), ("optimzer.lr=0.1", "did you mean optimizer.lr=0.1", "--cfg job")),
    Case("train.py", ("trainer.max_epoch=3",), ("trainer.max_epochs=3", "--package trainer")),
    Case("distill_train.py", ("kd.terms.kd.tempreature=3",), ("kd.terms.kd.temperature=3",), own_process=True),
    Case("distill_train.py", ("kd=dkdd",), ("kd=dkdd", "did you mean kd=dkd", "ls cfg/kd/")),
    Case("distill_train.py", ("teacher/model=resnet33",), ("teacher/model=resnet32", "--help")),
    Case("train.py", ("data=cifar1000",), ("data=cifar1000", "data=cifar100")),
    Case("distill_train.py", ("experiment=repdistiller/kd_resnet32x4_resnet8x",),
         ("experiment=repdistiller/kd_resnet32x4_resnet8x4",)),
    Case("train.py", ("optimizer.lr",), ("optimizer.lr", "KEY=VALUE")),
    Case("train.py", ("trainer.max_epochs=[1",), ("trainer.max_epochs=[1", "KEY=VALUE")),
    Case("train.py", ("+optimizer.lr=0.1",), ("optimizer.lr already exists", "optimizer.lr=0.1")),
    Case("train.py", ("~optimzer",), ("~optimzer", "~optimizer")),
    Case("ray_runner.py", ("search=kd_temprature",), ("search=kd_temprature", "search=kd_temperature")),
    Case("ray_runner.py", ("kd.terms.kd.tempreature=2",), ("kd.terms.kd.temperature=2",)),
    # where the run writes: checked before Hydra or the run writes anything
    Case("train.py", ("paths.output_dir={a_file}",), ("paths.output_dir={a_file}", "is a file")),
    Case("distill_train.py", ("paths.output_dir={a_file}/below",), ("paths.output_dir", "which is a file")),
    Case("ray_runner.py", ("paths.output_dir={a_file}",), ("paths.output_dir",)),
    # refused before expensive work: a cross-fit teacher's folds before any fold teacher is trained
    Case("distill_train.py", ("teacher=crossfit", "teacher.folds=300"), ("teacher.folds=300", "256 training examples")),
    # values that reached tracebacks
    Case("distill_train.py", ("kd.terms.ce.label_smoothing=1.5",), ("kd.terms.ce.label_smoothing",)),
    Case("train.py", ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"),
         ("trainer.sync_batchnorm=false",)),
    Case("train.py", ("data=image_folder", "data.root={one_class}", "data.image_size=8", "data.resize_size=8",
                      "model=mlp"), ("one class folder",)),
    Case("train.py", ("data=image_folder", "data.root={not_images}", "data.image_size=8", "data.resize_size=8",
                      "model=mlp"), ("broken.png", "not an image")),
    Case("train.py", ("data=csv", "data.path={latin1_csv}", "data.label=label", "model=mlp"),
         ("{latin1_csv}", "not UTF-8")),
    # the scripts: records that are not numbers, an --out below a file, a key no record has
    Case("scripts/make_table.py", ("{bad_records}", "--rows", "model.name", "--cols", ""),
         ("test/top1", "'high'", "not a number")),
    Case("scripts/make_table.py", ("{outputs}", "--out", "{a_file}/table"), ("--out", "is a file")),
    Case("scripts/plots.py", ("capacity", "{bad_records}", "--x", "model.name", "--group", "model.name", "--out",
                              "{root}/figure"), ("'high'", "not a number")),
    Case("scripts/make_table.py", ("{bad_records}", "--metric", "test/top5", "--digits", "-1"), ("--digits",)),
    Case("scripts/plots.py", ("methods", "{outputs}", "--out", "{root}/figure", "--filter", "seed"), ("--filter",)),
    Case("scripts/plots.py", ("methods", "{outputs}", "--out", "{a_file}/figure"), ("--out",)),
    # starting from another run: init_from
    Case("train.py", ("init_from={missing}",), ("init_from", "{missing}")),
    Case("train.py", ("init_from={truncated}",), ("init_from", "{truncated}")),
    Case("train.py", ("model=cnn1d", "init_from={teacher}"), ("init_from", "mlp1d", "model=mlp1d")),
    # more typed values
    Case("train.py", ("data.num_workers=-1",), ("data.num_workers",)),
    Case("train.py", ("trainer.devices=0",), ("trainer.devices",)),
    Case("train.py", ("run_name=a/b",), ("run_name",)),
    Case("distill_train.py", ("teacher.kind=bogus",), ("teacher.kind",)),
    Case("train.py", ("resume=true", "run_name=fresh", "seed=7"), ("resume=true", "drop resume=true")),
]


def command_line(case: Case, paths: dict[str, str]) -> list[str]:
    """The case's full argument list: tiny data and the workspace's folders, then the case's own arguments."""
    own = [argument.format(**paths) for argument in case.arguments]
    if case.script.startswith("scripts/"):
        return own
    if case.script == "ray_runner.py":
        base = ["search=kd_temperature", f"paths.output_dir={paths['outputs']}", f"paths.data_dir={paths['data']}",
                f"teacher.checkpoint={paths['teacher']}", "teacher/model=mlp1d", "trainer.accelerator=cpu",
                "data.train_subset=256"]
    else:
        base = tiny_overrides(Path(paths["data"]), Path(paths["outputs"]), "model=mlp1d") if case.script == "train.py" \
            else tiny_overrides(Path(paths["data"]), Path(paths["outputs"]), "~experiment", "student=mlp1d",
                                "teacher/model=cnn1d", f"teacher.checkpoint={paths['teacher']}")
    replaced = {argument.split("=", 1)[0] for argument in own}
    if "teacher" in replaced:  # another teacher group: its own keys (no teacher.checkpoint), no teacher given
        replaced.add("teacher.checkpoint")
    return [argument for argument in base if argument.split("=", 1)[0] not in replaced] + own


@pytest.fixture(scope="module")
def workspace(data_dir, tmp_path_factory) -> dict[str, str]:
    """A finished run (also the teacher of the distillation cases), an unfinished one whose last checkpoint is
    cut short, a cut-short copy of a checkpoint, and a path where nothing is."""
    root = tmp_path_factory.mktemp("bad_input")
    outputs = root / "outputs"
    finished = run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=mlp1d")), quiet=True)
    kill = ["+callbacks.kill._target_=tests.helpers.KillAtEpoch", "+callbacks.kill.epoch=1"]
    with pytest.raises(SimulatedKill):
        run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=mlp1d", "run_name=unfinished",
                                                          "trainer.max_epochs=2", *kill)), quiet=True)
    unfinished = next((outputs / "train").glob("unfinished-*"))
    last = unfinished / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    teacher = Path(finished["checkpoints"]["last"])
    (root / "truncated.ckpt").write_bytes(teacher.read_bytes()[:1000])
    return {"outputs": str(outputs), "data": str(data_dir), "teacher": str(teacher), "unfinished": str(unfinished),
            "truncated": str(root / "truncated.ckpt"), "missing": str(root / "no_such.ckpt"), "root": str(root),
            **user_files(root, finished)}


def user_files(root: Path, finished: dict) -> dict[str, str]:
    """Files a user might point at: a plain file, image folders with one class or with a file that is no image, a
    Latin-1 CSV file, a folder with a record whose metric is not a number."""
    from PIL import Image
    (root / "a_file").write_text("not a folder")
    for name, classes in (("one_class", ["cat"]), ("not_images", ["cat", "dog"])):
        for split in ("train", "val"):
            for label in classes:
                (root / name / split / label).mkdir(parents=True)
                Image.new("RGB", (8, 8), (40, 80, 120)).save(root / name / split / label / "image.png")
    (root / "not_images" / "train" / "dog" / "broken.png").write_bytes(b"these bytes are no PNG")
    (root / "latin1.csv").write_bytes("x,label\n1.0,caf\xe9\n2.0,th\xe9\n".encode("latin-1"))
    bad = dict(finished, last={**finished["last"], "test/top1": "high"})
    (root / "bad_records" / "run").mkdir(parents=True)
    (root / "bad_records" / "run" / "record.json").write_text(json.dumps(bad, default=str))
    return {"a_file": str(root / "a_file"), "one_class": str(root / "one_class"),
            "not_images": str(root / "not_images"), "latin1_csv": str(root / "latin1.csv"),
            "bad_records": str(root / "bad_records")}


def start(arguments: list[str]) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *arguments], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def outcomes(workspace) -> list[dict]:
    """Each case's exit status, stderr lines and file changes, in CASES order. The grouped cases and each
    own-process case (on its own copy of the workspace's outputs, so their file checks stay apart) run side by
    side."""
    root = Path(workspace["root"])
    grouped = [i for i, case in enumerate(CASES) if not case.own_process]
    cases, results_file = root / "cases.json", root / "results.json"
    cases.write_text(json.dumps([[CASES[i].script, command_line(CASES[i], workspace)] for i in grouped]))
    driver = start(["-m", "tests.cli_cases", str(cases), str(results_file), workspace["outputs"]])
    own = {}
    for i in (i for i, case in enumerate(CASES) if case.own_process):
        copy = root / f"outputs_{i}"
        shutil.copytree(workspace["outputs"], copy)
        arguments = command_line(CASES[i], {**workspace, "outputs": str(copy)})
        own[i] = (copy, snapshot(copy), start([CASES[i].script, *arguments]))
    results = {}
    for i, (copy, before, process) in own.items():
        stderr = process.communicate(timeout=600)[1]
        after = snapshot(copy)
        results[i] = {"status": process.returncode, "stderr": [line for line in stderr.splitlines() if line.strip()],
                      "changed": sorted(k for k in before if after.get(k) != before[k]),
                      "added": sorted(set(after) - set(before))}
    _, driver_errors = driver.communicate(timeout=900)
    assert driver.returncode == 0, driver_errors[-3000:]
    results.update(zip(grouped, json.loads(results_file.read_text())))
    return [results[i] for i in range(len(CASES))]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.id for case in CASES])
def test_bad_input_stops_with_one_line_naming_the_key(outcomes, workspace, index):
    case, outcome = CASES[index], outcomes[index]
    assert outcome["status"] == 2, outcome
    assert len(outcome["stderr"]) == 1 and outcome["stderr"][0].startswith("error: "), outcome["stderr"]
    for named in case.named:
        assert named.format(**workspace) in outcome["stderr"][0], (named, outcome["stderr"][0])
    assert outcome["changed"] == [] and outcome["added"] == [], "files already written changed, or results appeared"


def test_the_table_covers_every_entry_point_and_enough_cases(workspace):
    assert len(CASES) >= 70 and {case.script for case in CASES if case.own_process} == {
        "train.py", "distill_train.py", "ray_runner.py"}
    assert {"scripts/make_table.py", "scripts/plots.py"} <= {case.script for case in CASES}
    # What the cases must leave alone was there: a finished run with its record, an unfinished one.
    files = snapshot(Path(workspace["outputs"]))
    assert any(name.endswith("record.json") for name in files) and any("unfinished-" in name for name in files)
    assert not any(name.split("/")[0] in NOT_RESULTS for name in files)

"""Config composition for tests: the real cfg/ tree, tiny data, CPU, no progress bars."""
from __future__ import annotations

import functools

from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CFG_DIR = str(Path(__file__).resolve().parent.parent / "cfg")
# Every method, from cfg/kd/: the suite's method lists derive from it and from the taps the terms declare.
METHODS = sorted(path.stem for path in (Path(CFG_DIR) / "kd").glob("*.yaml"))

# mnist1d cut down to a few batches; one epoch of a 1-D CNN takes well under a second here.
TINY = ["data=mnist1d", "data.train_subset=256", "data.test_subset=128", "data.val_size=128",
        "data.batch_size=64", "trainer.max_epochs=1", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]

# The quickstart cut to two batches and one epoch (its teacher too), for runs through the entry points.
QUICKSTART_TINY = ["data.train_subset=64", "data.val_size=32", "data.test_subset=32", "data.batch_size=32",
                   "trainer.max_epochs=1", "teacher.recipe.trainer.max_epochs=1", "trainer.accelerator=cpu",
                   "fidelity.cka_max_examples=32"]


def tiny_overrides(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*TINY, f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}", *extra]


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CFG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


class KillAtEpoch(pl.Callback):
    """Simulates a killed run: raises when `epoch` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise SimulatedKill(f"killed at the start of epoch {self.epoch}")


class SimulatedKill(RuntimeError):
    pass


class DivergeAtEpoch(pl.Callback):
    """A deliberately diverging learning rate: from the start of `epoch` every learning rate is `lr`. Records
    the bytes of the last checkpoint as they were then (the last good one), in `last_good`."""

    def __init__(self, epoch: int, lr: float = 1e12) -> None:
        self.epoch, self.lr, self.last_good = epoch, lr, None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            self.last_good = (Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt").read_bytes()
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.lr


@functools.lru_cache(maxsize=None)
def reads_features(method: str) -> bool:
    """Whether kd=<method> reads feature taps (not only logits): its terms' declared `student_taps` /
    `teacher_taps` once bound to a teacher -> student pair (the digits pair: terms with `stages: null` pick
    their stages from the models)."""
    from omegaconf import OmegaConf

    from losses import DistillationObjective
    from models import build_model
    from runs.configs import instantiate
    kd = OmegaConf.load(Path(CFG_DIR) / "kd" / f"{method}.yaml")
    objective = DistillationObjective({name: instantiate(node) for name, node in kd.terms.items() if node})
    student, teacher = build_model("resnet8", 10, (1, 8, 8)), build_model("resnet32", 10, (1, 8, 8))
    for term in objective.terms.values():
        term.bind_models(student, teacher)
    return bool(objective.student_taps or objective.teacher_taps)


@functools.lru_cache(maxsize=None)
def reads_views(method: str) -> bool:
    """Whether kd=<method>'s terms declare extra augmented views of each example (`train_views`: MLKD's strong one)."""
    from omegaconf import OmegaConf

    from runs.configs import instantiate
    kd = OmegaConf.load(Path(CFG_DIR) / "kd" / f"{method}.yaml")
    return any(instantiate(node).train_views for node in kd.terms.values() if node)


@functools.lru_cache(maxsize=None)
def needs_another_model_kind(method: str) -> bool:
    """Whether kd=<method> reads a tap that no ordinary classifier declares (e.g. DeiT's 'distillation_head', which
    needs a ViT student with a distillation token): its declared taps, resolved on the digits pair's ResNets."""
    from omegaconf import OmegaConf

    from errors import ConfigError
    from losses import DistillationObjective
    from models import build_model
    from models.features import resolve_tap
    from runs.configs import instantiate
    kd = OmegaConf.load(Path(CFG_DIR) / "kd" / f"{method}.yaml")
    objective = DistillationObjective({name: instantiate(node) for name, node in kd.terms.items() if node})
    student, teacher = build_model("resnet8", 10, (1, 8, 8)), build_model("resnet32", 10, (1, 8, 8))
    for term in objective.terms.values():
        term.bind_models(student, teacher)
    try:
        for model, taps in ((student, objective.student_taps), (teacher, objective.teacher_taps)):
            for tap in taps:
                resolve_tap(model, tap)
    except ConfigError:
        return True
    return False


class PauseAtEpoch(pl.Callback):
    """Stands still after the first training batch of `epoch` (after the previous epoch's checkpoint), once (while
    `marker` does not exist yet), with `marker` written, until a signal stops the run (SIGINT raises where it lands; SIGTERM sets Lightning's flag,
    read here) or `seconds` pass: where a test sends its signal."""

    def __init__(self, epoch: int, marker: str, seconds: float = 120.0) -> None:
        self.epoch, self.marker, self.seconds = epoch, marker, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time
        if trainer.current_epoch != self.epoch or batch_idx != 0 or Path(self.marker).exists():
            return  # (the marker left by a first pause: the resumed run goes through)
        Path(self.marker).write_text("paused")
        deadline = time.monotonic() + self.seconds
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)


class FailAtTemperature(pl.Callback):
    """A trial that fails when training starts, on every attempt, where its KD term's temperature is
    `temperature`: a failure that no config check can foresee (a sweep refuses bad values before Ray starts)."""

    def __init__(self, temperature: float) -> None:
        self.temperature = float(temperature)

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.objective.terms["kd"].temperature == self.temperature:
            raise RuntimeError(f"this trial fails on purpose at temperature {self.temperature:g}")

"""Values that are valid but probably not what the user meant: the run goes on, with one line on stderr
(`warning: ...`) that says what was asked and what is used instead. Each line is printed once per process
(a teacher trained inside a run shares the run's data settings, and would repeat it).

`config_notices` runs with the value checks (runs/validation.py `check_config`), before anything is built;
`data_notices` once the data is set up, before any training.
"""
from __future__ import annotations

from omegaconf import DictConfig

from runs.records import warn

_shown: set[str] = set()


def notice(message: str) -> None:
    if message not in _shown:
        _shown.add(message)
        warn(message)


def config_notices(cfg: DictConfig) -> None:
    epochs = (cfg.get("trainer") or {}).get("max_epochs")
    milestones = list((cfg.get("scheduler") or {}).get("milestones") or [])
    late = [m for m in milestones if isinstance(m, int) and isinstance(epochs, int) and m >= epochs]
    if late:
        notice(f"scheduler.milestones {late} lie at or past the last epoch (trainer.max_epochs={epochs}): the learning "
               f"rate never decays there; scale them to the run (e.g. for 240-epoch milestones [150,180,210] on "
               f"{epochs} epochs: {[round(m * epochs / 240) for m in (150, 180, 210)]})")
    teacher = cfg.get("teacher") if cfg.get("task") == "distill" else None
    if teacher is not None and "ensemble" in (teacher.get("kind"), teacher.get("source")):
        members = len(teacher.get("checkpoints") or teacher.get("models") or []) or teacher.get("size")
        if members == 1:
            notice("teacher=ensemble has one member: it is that teacher alone (as teacher=single), recorded as an "
                   "ensemble of one; set teacher.size (or list more teacher.checkpoints / teacher.models) for more")


def data_notices(cfg: DictConfig, datamodule) -> None:
    """After `datamodule.setup`: sizes asked for that the data does not have."""
    data = cfg.data
    available = getattr(datamodule, "_train_base_size", None)
    if available is not None:
        available -= len(datamodule.val_indices)
    examples = len(datamodule.train_indices)
    subset = data.get("train_subset")
    if subset is not None and available is not None and subset > available:
        notice(f"data.train_subset={subset} is more than the {available} training examples of {data.name} (after "
               f"data.val_size): all {available} are used")
    batch = data.get("batch_size")
    if isinstance(batch, int) and batch > examples:
        notice(f"data.batch_size={batch} is more than the {examples} training examples: each epoch is one batch of "
               f"{examples}")

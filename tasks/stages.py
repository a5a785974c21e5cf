"""Training stages: pre-training stages (connector or paraphraser pre-training, hint training, ...) that
run before the main stage, each with its own epochs, terms, and learning parts.

In config, under the method (`kd.stages`), in order:
    stages:
      - name: init
        epochs: 30
        terms: {ab: 1.0}              # term name (from kd.terms) -> weight in this stage
        train: [student, objective]   # what learns: the student and/or the terms' trainable parts
The main stage follows with every term at its own weight for trainer.max_epochs epochs, so the
learning-rate schedule keeps its published milestones: it does not step during pre-training stages.
Stage lengths are published against full recipes (e.g. 30 of RepDistiller's 240 epochs); `pre_training_scale`
multiplies them so a short recipe keeps them in proportion (each stage keeps at least one epoch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from errors import ConfigError

LEARNING_PARTS = ("student", "objective")


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    weights: Mapping[str, float]
    train: tuple[str, ...]


def parse_stages(stages: Iterable[Mapping] | None, term_names: Iterable[str],
                 pre_training_scale: float = 1.0) -> list[Stage]:
    if not pre_training_scale > 0:
        raise ConfigError(f"pre_training_scale must be > 0 (it multiplies kd.stages[*].epochs); "
                          f"got {pre_training_scale}")
    term_names = list(term_names)
    parsed = []
    for index, stage in enumerate(stages or []):
        name = str(stage.get("name", f"stage{index}"))
        epochs = int(stage.get("epochs", 0))
        weights = {str(k): float(v) for k, v in dict(stage.get("terms") or {}).items()}
        train = tuple(stage.get("train", LEARNING_PARTS))
        unknown_terms = sorted(set(weights) - set(term_names))
        if unknown_terms:
            raise ConfigError(f"kd.stages[{index}] ({name}) names terms {unknown_terms} that kd.terms does not "
                              f"define; use some of {term_names}")
        if epochs < 0 or not weights or not train or set(train) - set(LEARNING_PARTS):
            raise ConfigError(f"kd.stages[{index}] ({name}) needs epochs >= 0, at least one term, and train "
                              f"naming some of {list(LEARNING_PARTS)}; got epochs={epochs}, terms={weights}, "
                              f"train={list(train)}")
        if epochs:
            parsed.append(Stage(name, max(1, round(epochs * pre_training_scale)), weights, train))
    return parsed


def stage_at(stages: list[Stage], epoch: int) -> Stage | None:
    """The pre-training stage that `epoch` falls in, or None in the main stage."""
    start = 0
    for stage in stages:
        if epoch < start + stage.epochs:
            return stage
        start += stage.epochs
    return None


def pre_training_epochs(stages: list[Stage]) -> int:
    return sum(stage.epochs for stage in stages)

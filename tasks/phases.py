"""Training phases: pre-training phases (connector or paraphraser pre-training, hint training, ...) that run
before the main phase, each with its own epochs, terms, and learning parts. ("Stage" means something else in
this project: a feature stage of an architecture, `stage:<i>`.)

In config, under the method (`kd.phases`), in order:
    phases:
      - name: init
        epochs: 30
        terms: {ab: 1.0}              # term name (from kd.terms) -> weight in this phase
        train: [student, objective]   # what learns: the student (or only its feature modules, student_features)
                                      # and/or the terms' trainable parts
        lr: 0.01                      # optional; null (default) = the optimizer's configured lr
Each phase, and the main phase after them, starts from a fresh optimizer state (no momentum carried over) at
its own learning rate, as RepDistiller's pre-training builds its own SGD (helper/pretrain.py).
The main phase follows with every term at its own weight for trainer.max_epochs epochs, so the
learning-rate schedule keeps its published milestones: it does not step during pre-training phases.
Phase lengths are published against full recipes (e.g. 30 of RepDistiller's 240 epochs); `pre_training_scale`
multiplies them so a short recipe keeps them in proportion (each phase keeps at least one epoch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from errors import ConfigError

# student_features: only the student's feature modules (models.features.feature_modules, RepDistiller's
# get_feat_modules) learn, in train mode; the rest of the student is frozen in eval mode (RepDistiller's
# helper/pretrain.py init: model_s.eval(), then init_modules.train()).
LEARNING_PARTS = ("student", "student_features", "objective")
DEFAULT_LEARNING = ("student", "objective")


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    weights: Mapping[str, float]
    train: tuple[str, ...]
    lr: float | None = None  # None: the optimizer's configured lr


def parse_phases(kd: Mapping, term_names: Iterable[str], pre_training_scale: float = 1.0) -> list[Phase]:
    """The pre-training phases of method config `kd` (its `phases` list)."""
    if kd.get("stages") is not None:
        raise ConfigError("kd.stages was renamed kd.phases (training phases; 'stage' now means a feature stage "
                          "only): write kd.phases=[...] (or `phases:` in the method's YAML)")
    if not pre_training_scale > 0:
        raise ConfigError(f"pre_training_scale must be > 0 (it multiplies kd.phases[*].epochs); "
                          f"got {pre_training_scale}")
    term_names = list(term_names)
    parsed = []
    for index, phase in enumerate(kd.get("phases") or []):
        name = str(phase.get("name", f"phase{index}"))
        epochs = int(phase.get("epochs", 0))
        weights = {str(k): float(v) for k, v in dict(phase.get("terms") or {}).items()}
        train = tuple(phase.get("train", DEFAULT_LEARNING))
        lr = phase.get("lr")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
            raise ConfigError(f"kd.phases[{index}].lr ({name}) must be a learning rate > 0 or null (the optimizer's "
                              f"lr), got {lr!r}; use e.g. kd.phases.{index}.lr=0.01")
        unknown_terms = sorted(set(weights) - set(term_names))
        if unknown_terms:
            raise ConfigError(f"kd.phases[{index}] ({name}) names terms {unknown_terms} that kd.terms does not "
                              f"define; use some of {term_names}")
        if epochs < 0 or not weights or not train or set(train) - set(LEARNING_PARTS):
            raise ConfigError(f"kd.phases[{index}] ({name}) needs epochs >= 0, at least one term, and train "
                              f"naming some of {list(LEARNING_PARTS)}; got epochs={epochs}, terms={weights}, "
                              f"train={list(train)}")
        if epochs:
            parsed.append(Phase(name, max(1, round(epochs * pre_training_scale)), weights, train,
                                None if lr is None else float(lr)))
    return parsed


def phase_at(phases: list[Phase], epoch: int) -> Phase | None:
    """The pre-training phase that `epoch` falls in, or None in the main phase."""
    start = 0
    for phase in phases:
        if epoch < start + phase.epochs:
            return phase
        start += phase.epochs
    return None


def pre_training_epochs(phases: list[Phase]) -> int:
    return sum(phase.epochs for phase in phases)


def starts_a_phase(phases: list[Phase], epoch: int) -> bool:
    """Whether `epoch` is the first of a pre-training phase or of the main phase that follows them."""
    start = 0
    for phase in phases:
        if epoch == start:
            return True
        start += phase.epochs
    return bool(phases) and epoch == start

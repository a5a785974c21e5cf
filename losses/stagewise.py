"""Feature-stage selection for terms: one stage (`one_stage_tap`: FitNet, SP) or a list of them
(`StagewiseTerm`, the base of the terms over several stages: AT, VID, NST, KD-SVD, ReviewKD, AB, FSP)."""
from __future__ import annotations

from torch import nn

from errors import ConfigError
from losses.base import DistillTerm
from models.registry import feature_spec


def one_stage_tap(stage, key: str, example: str) -> str:
    """The `stage:<i>` tap of one stage index typed as `key`; `example` is a value that works, with its reason."""
    if isinstance(stage, bool) or not isinstance(stage, int):
        raise ConfigError(f"{key} must be one stage index, got {stage!r}; use e.g. {example}")
    return f"stage:{stage}"


EVERY_STAGE = "all"  # `stages: all`: every stage, the stem included (RepDistiller's feat[:-1], as FSP pairs them)
STAGE_CHOICES = "a list of stage indices, null (every stage but the stem) or 'all' (every stage)"


def parse_stage_indices(stages, key: str) -> list[int] | str | None:
    if stages is None or stages == EVERY_STAGE:
        return stages
    try:
        if isinstance(stages, str):
            raise TypeError
        parsed = [int(stage) for stage in stages]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {STAGE_CHOICES}, got {stages!r}; "
                          f"use e.g. {key}=[1,2,3], or null for every stage but the stem") from None
    if not parsed or len(set(parsed)) != len(parsed):
        raise ConfigError(f"{key} must name at least one stage, each once, got {stages!r}; "
                          f"use e.g. {key}=[1,2,3], or null for every stage but the stem")
    return parsed


class StagewiseTerm(DistillTerm):
    """A term over pairs of equally indexed student and teacher stages. `stages: null` means every stage but
    the stem, as RepDistiller's feat[1:-1]; `stages: all` every stage, as its feat[:-1]. Either is settled by
    `bind_models` once both architectures are known, counted from the deep end so that models with different
    stage counts still pair their deepest stages."""

    tap_kind = "stage"  # or "preact": the stages' pre-activation taps

    def __init__(self, weight: float, stages, key: str) -> None:
        super().__init__(weight)
        self.key = key
        self.stages = parse_stage_indices(stages, key)
        self._set_stages(self.stages if isinstance(self.stages, list) else None)

    def _set_stages(self, stages) -> None:
        taps = () if stages is None else tuple(f"{self.tap_kind}:{i}" for i in stages)
        self.student_taps = self.teacher_taps = taps

    @property
    def reads_teacher_features(self) -> bool:
        return True  # its stages may be settled only later, by bind_models

    def bind_models(self, student: nn.Module, teacher: nn.Module) -> None:
        """Called by the distillation task before it hooks the taps."""
        if isinstance(self.stages, list):
            return
        count = min(len(feature_spec(student).stages), len(feature_spec(teacher).stages))
        stem = 0 if self.stages == EVERY_STAGE else 1
        if count - stem < 1:
            raise ConfigError(f"{self.key}={self.stages or 'null'} needs models with at least {stem + 1} stage(s); "
                              f"the shallower declares {count}: name the stages, e.g. {self.key}=[0]")
        self._set_stages(range(stem - count, 0))

    def check_bound(self) -> None:
        if not self.student_taps:
            raise ConfigError(f"{self.key}={self.stages or 'null'} is settled from the models' stage counts by "
                              f"bind_models(student, teacher) before setup; call it, or name the stages, "
                              f"e.g. {self.key}=[1,2,3]")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.check_bound()

    def require_feature_maps(self, student_shapes, teacher_shapes, method: str) -> None:
        """For terms over positions (AT's attention maps, NST's channel maps): every tapped feature must keep
        its positions, (B, C, L) or (B, C, H, W); a flat vector (an MLP's stage) has none."""
        for tap in self.student_taps:
            for who, shapes in (("student", student_shapes), ("teacher", teacher_shapes)):
                if len(shapes[tap]) < 3:
                    raise ConfigError(f"{method} compares feature maps over positions, but the {who}'s feature '{tap}' "
                                      f"has shape {tuple(shapes[tap])} (no positions); use {method} on convolutional "
                                      f"models or pick another method (e.g. kd=rkd)")

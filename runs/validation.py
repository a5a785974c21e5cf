"""Every value a user may type, checked before anything is built or trained.

`check_config` is what run_train / run_distill call first (and so every Ray trial, through them); the sweep
runner calls it too, on the config of its first trial, before Ray starts. A bad value stops with one
ConfigError line: the key, the value, why, and a value that works.

Each check lives in one place:
- here, in RULES (one small spec per key: its kind, range and a value that works), for typed values whose
  readers cannot check them (torch's optimizers and schedulers, Lightning's Trainer, the run's own keys:
  seed, epochs, loader sizes and splits, teacher options, paths, sweep settings) and for the two options
  every distillation term shares (its weight and temperatures);
- in the constructor of the part that owns the rest (a term's own options, an augmentation's, the fidelity
  block, training phases), which `check_config` calls here, early; a constructor that fails other than with
  a ConfigError is reported the same way, naming its section.
A data set's own options are checked where it is built, before any training; so is the fit of each model to
the data (runs/model_fit.py).
"""
from __future__ import annotations

import functools
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from errors import ConfigError, UserError, one_line
from runs.checkpoint_checks import adopt_teacher_checkpoints, check_init_from
from runs.configs import CFG_DIR, build_objective, instantiate
from runs.notices import config_notices
from runs.processes import is_multi_process
from runs.writing import output_folder_problem
from tasks.dot import DistillationOrientedTrainer, refuse_unsupported_trainer
from tasks.metrics import fidelity_settings
from tasks.phases import parse_phases

TEACHER_KINDS = ("single", "ensemble", "crossfit", "cached")


# ----------------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind:
    text: str                       # what a good value is, e.g. "a number > 0"
    accepts: Callable[[Any], bool]


def _shown(value: Any, quote: bool = True) -> str:
    """A value as typed in an override (texts quoted, so an empty or numeric-looking text shows as one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if quote else value
    if isinstance(value, list):
        return "[" + ",".join(_shown(v, quote) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds_text(at_least, above, at_most, below) -> str:
    low, high = (at_least, "[") if above is None else (above, "("), (at_most, "]") if below is None else (below, ")")
    if low[0] is not None and high[0] is not None:
        return f" in {low[1]}{_shown(low[0])}, {_shown(high[0])}{high[1]}"
    if low[0] is not None:
        return f" {'>=' if above is None else '>'} {_shown(low[0])}"
    if high[0] is not None:
        return f" {'<=' if below is None else '<'} {_shown(high[0])}"
    return ""


def _within(value, at_least, above, at_most, below) -> bool:
    return ((at_least is None or value >= at_least) and (above is None or value > above)
            and (at_most is None or value <= at_most) and (below is None or value < below))


def number(at_least=None, above=None, at_most=None, below=None) -> Kind:
    return Kind(f"a number{_bounds_text(at_least, above, at_most, below)}",
                lambda v: _is_number(v) and _within(v, at_least, above, at_most, below))


def integer(at_least=None, at_most=None) -> Kind:
    return Kind(f"an integer{_bounds_text(at_least, None, at_most, None)}",
                lambda v: _is_int(v) and _within(v, at_least, None, at_most, None))


def choice(*options: Any) -> Kind:
    shown = ", ".join(_shown(option, quote=False) for option in options)
    return Kind(f"one of {shown}", lambda v: any(v == o and type(v) is type(o) for o in options))


def optional(kind: Kind) -> Kind:
    return Kind(f"{kind.text}, or null", lambda v: v is None or kind.accepts(v))


def either(first: Kind, second: Kind, text: str | None = None) -> Kind:
    return Kind(text or f"{first.text}, or {second.text}", lambda v: first.accepts(v) or second.accepts(v))


def list_of(item: Kind, text: str, check: Callable[[list], bool] = lambda items: True) -> Kind:
    return Kind(text, lambda v: isinstance(v, list) and len(v) > 0 and all(map(item.accepts, v)) and check(v))


BOOLEAN = choice(True, False)
TEXT = Kind("a non-empty text", lambda v: isinstance(v, str) and bool(v.strip()))
EXISTING_FILE = Kind("the path of an existing file", lambda v: isinstance(v, str) and Path(v).is_file())


def _writable_folder(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and output_folder_problem(value) is None


def _is_model_config(name: Any) -> bool:
    return isinstance(name, str) and (CFG_DIR / "model" / f"{name}.yaml").is_file()


def _devices(value: Any) -> bool:
    if isinstance(value, str):
        return value == "auto" or re.fullmatch(r"-1|\d+(,\d+)*,?", value.strip()) is not None
    if isinstance(value, list):
        return bool(value) and all(_is_int(v) and v >= 0 for v in value)
    return _is_int(value) and (value >= 1 or value == -1)


def _precisions() -> tuple:
    from lightning_fabric.connector import _PRECISION_INPUT  # Lightning's own list (a Literal union)
    return tuple(option for literal in typing.get_args(_PRECISION_INPUT) for option in typing.get_args(literal))


# ----------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Rule:
    key: str          # a dotted config key; `*` stands for one key part (kd.terms.*.weight)
    kind: Kind
    example: str      # a value that works, as typed on the command line
    note: str = ""    # what the value means, where the key does not say

    def matches(self, key: str) -> bool:
        return _pattern(self.key).fullmatch(key) is not None


@functools.lru_cache(maxsize=None)
def _pattern(key: str) -> re.Pattern:
    return re.compile(r"[^.]*".join(map(re.escape, key.split("*"))))


COUNT = integer(at_least=1)
FRACTION_OR_COUNT = either(number(above=0, at_most=1), integer(at_least=1),
                           "a fraction in (0, 1] (float) or a number of batches >= 1 (int)")
RULES: tuple[Rule, ...] = (
    # the run
    Rule("seed", integer(0, 2 ** 32 - 1), "0"),
    Rule("run_name", Kind("a non-empty name without '/'", lambda v: TEXT.accepts(v) and "/" not in v), "my-run"),
    Rule("resume", choice(True, False, "auto"), "true"),
    Rule("rerun", BOOLEAN, "true"),
    Rule("test_only", BOOLEAN, "false"),
    Rule("baseline", BOOLEAN, "true"),
    Rule("channels_last", BOOLEAN, "false"),
    Rule("compile", either(BOOLEAN, TEXT, "true, false or a torch.compile backend name"), "true"),
    Rule("ckpt", optional(EXISTING_FILE), "outputs/train/<run>/checkpoints/last.ckpt"),
    Rule("student_init_checkpoint", optional(EXISTING_FILE), "outputs/distill/<run>/checkpoints/best.ckpt",
         " (the checkpoint whose weights the student starts from, e.g. PAD-L2's L2 student)"),
    Rule("init_from", optional(EXISTING_FILE), "outputs/train/<run>/checkpoints/last.ckpt",
         " (a checkpoint of a run of the same model and method whose weights a new run starts from)"),
    Rule("paths.output_dir", Kind("a folder you can write to (not a file, on a disk with room)", _writable_folder),
         "outputs"),
    Rule("paths.data_dir", Kind("a folder (not a file)", lambda v: TEXT.accepts(v) and not Path(v).is_file()), "data"),
    # the trainer
    Rule("trainer.max_epochs", COUNT, "30", " (the number of epochs)"),
    # (whether this machine has it: Lightning's Trainer, where the run builds it; a sweep's driver may have none)
    Rule("trainer.accelerator", choice("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"), "auto"),
    Rule("trainer.devices", Kind("a device count >= 1 (-1: all), a list of device ids, or auto", _devices), "1"),
    Rule("trainer.num_nodes", COUNT, "2", " (machines, each running the same command)"),
    Rule("trainer.precision", Kind("one of Lightning's precisions (32-true, bf16-mixed, 16-mixed, ...)",
                                   lambda v: v in _precisions()), "32-true"),
    Rule("trainer.gradient_clip_val", optional(number(at_least=0)), "1.0"),
    Rule("trainer.limit_*_batches", FRACTION_OR_COUNT, "1.0"),
    Rule("trainer.log_every_n_steps", COUNT, "20"),
    Rule("trainer.accumulate_grad_batches", COUNT, "1"),
    Rule("trainer.num_nodes", COUNT, "1"),
    Rule("trainer.check_val_every_n_epoch", COUNT, "1"),
    Rule("trainer.enable_*", BOOLEAN, "false"),
    Rule("trainer.sync_batchnorm", BOOLEAN, "true"),
    Rule("trainer.deterministic", either(BOOLEAN, choice("warn")), "false"),
    # the optimizer and its schedule
    Rule("optimizer.lr", number(above=0), "0.05", " (the learning rate)"),
    Rule("optimizer.momentum", number(at_least=0, below=1), "0.9"),
    Rule("optimizer.dampening", number(at_least=0, at_most=1), "0"),
    Rule("optimizer.weight_decay", number(at_least=0), "5e-4"),
    Rule("optimizer.eps", number(above=0), "1e-8"),
    Rule("optimizer.betas", list_of(number(at_least=0, below=1), "two numbers in [0, 1)", lambda v: len(v) == 2),
         "[0.9,0.999]"),
    Rule("optimizer.nesterov", BOOLEAN, "false"),
    Rule("optimizer.delta", number(at_least=0, below=1), "0.075",
         " (optimizer=dot: task momentum momentum - delta, distillation momentum momentum + delta)"),
    Rule("optimizer.task_terms", list_of(TEXT, "a list of kd.terms names"), "[ce]",
         " (optimizer=dot: the terms whose gradient is the task's)"),
    Rule("optimizer.amsgrad", BOOLEAN, "false"),
    Rule("scheduler.gamma", number(above=0, at_most=1), "0.1", " (the factor each decay multiplies the rate by)"),
    Rule("scheduler.milestones", list_of(integer(at_least=0), "a list of increasing epochs >= 0",
                                         lambda v: all(a < b for a, b in zip(v, v[1:]))), "[150,180,210]"),
    Rule("scheduler.eta_min", number(at_least=0), "0.0"),
    Rule("scheduler.T_max", COUNT, "240"),
    Rule("scheduler.T_0", COUNT, "10"),
    Rule("scheduler.T_mult", COUNT, "2"),
    Rule("scheduler.step_size", COUNT, "30"),
    # the data every data set shares: loader sizes and splits (a data set's own options: its constructor)
    Rule("data.batch_size", COUNT, "128"),
    Rule("data.eval_batch_size", optional(COUNT), "256"),
    Rule("data.num_workers", integer(at_least=0), "2"),
    Rule("data.val_size", either(integer(at_least=0), number(at_least=0, below=1),
                                 "a count >= 0 (int) or a fraction in [0, 1) (float); 0 validates on the test set"),
         "0.1"),
    Rule("data.train_subset", optional(COUNT), "1000"),
    Rule("data.test_subset", optional(COUNT), "1000"),
    Rule("data.*seed", integer(0, 2 ** 32 - 1), "0"),
    Rule("data.num_classes", optional(integer(at_least=2)), "10"),
    Rule("data.input_shape", optional(list_of(COUNT, "a list of sizes >= 1")), "[3,32,32]"),
    Rule("data.pin_memory", BOOLEAN, "false"),
    Rule("data.download", BOOLEAN, "true"),
    Rule("data.device_resident", BOOLEAN, "false"),
    # the teacher
    Rule("teacher.kind", choice(*TEACHER_KINDS), "single", " (or pick teacher=single, ensemble, crossfit, cached)"),
    Rule("teacher.source", choice(*TEACHER_KINDS[:3]), "single", " (the teacher that teacher=cached caches)"),
    # (whether they exist and read: runs/checkpoint_checks.py, which names the fix from where they live)
    Rule("teacher.checkpoint", optional(TEXT), "outputs/train/<run>/checkpoints/last.ckpt"),
    Rule("teacher.checkpoints", optional(list_of(TEXT, "a list of checkpoint paths")),
         "[a/checkpoints/last.ckpt,b/checkpoints/last.ckpt]"),
    Rule("teacher.models", optional(list_of(Kind("", _is_model_config), "a list of model configs of cfg/model/")),
         "[resnet32x4,wrn_40_2]"),
    Rule("teacher.size", COUNT, "3", " (ensemble members)"),
    Rule("teacher.folds", integer(at_least=2), "5", " (a cross-fit teacher needs 2 folds or more)"),
    Rule("teacher.feature_member", integer(at_least=0), "0"),
    Rule("teacher.budget", optional(COUNT), "1000", " (training examples the teacher may see)"),
    Rule("teacher.views", optional(COUNT), "10"),
    Rule("teacher.view_seed", integer(0, 2 ** 32 - 1), "0"),
    Rule("teacher.cache", choice("auto", False), "auto"),
    Rule("teacher.batchnorm", choice("running", "batch"), "running"),
    # augmentation and the options every distillation term shares
    Rule("augment.alpha", number(above=0), "1.0", " (Beta(alpha, alpha) draws the mixing weights)"),
    Rule("kd.terms.*.weight", number(at_least=0), "1.0", " (0 switches the term off)"),
    Rule("kd.terms.*.label_smoothing", number(at_least=0, at_most=1), "0.1"),
    Rule("kd.terms.*.temperature", number(above=0), "4"),
    Rule("kd.terms.*.temperature_*", number(above=0), "4"),
    Rule("kd.terms.*.*_temperature", optional(number(above=0)), "1.0", " (null: the term's temperature)"),
    Rule("kd.terms.*.temperatures", list_of(number(above=0), "a non-empty list of numbers > 0", lambda v: len(v) > 0),
         "[4.0,3.0,5.0,2.0,6.0]"),
    Rule("kd.terms.*.exponent", number(above=0), "0.1", " (TTM's gamma = 1/T)"),
    Rule("kd.terms.*.sample_weighted", BOOLEAN, "true", " (WTTM)"),
    Rule("kd.terms.*.weight_target", number(at_least=0), "0.1"),
    Rule("kd.terms.*.weight_non_target", number(at_least=0), "0.1"),
    Rule("kd.terms.*.weight_weak", number(at_least=0), "0.1"),
    Rule("kd.terms.*.rank_with_probabilities", BOOLEAN, "false"),
    Rule("kd.terms.*.centres", choice("class_mean", "classifier"), "class_mean", " (KD++'s class centres)"),
    Rule("kd.terms.*.standardize", BOOLEAN, "true", " (logit standardization: z-score each row of logits)"),
    Rule("kd.terms.*.lambda_epochs", COUNT, "10", " (CTKD: epochs of the reversal curriculum)"),
    Rule("kd.terms.*.lambda_m*", number(at_least=-1, at_most=1), "-1.0", " (CTKD: the reversal strength lambda)"),
    # sweeps (ray_runner.py)
    Rule("tune.num_samples", COUNT, "1"),
    Rule("tune.max_concurrent", optional(COUNT), "2"),
    Rule("tune.num_cpus", optional(COUNT), "4"),
    Rule("tune.resources.cpu", number(above=0), "1"),
    Rule("tune.resources.gpu", number(at_least=0), "0.25"),
    Rule("tune.mode", choice("max", "min"), "max"),
    Rule("tune.scheduler", choice("none", "asha", "median"), "asha"),
    Rule("tune.grace_period", COUNT, "1"),
    Rule("tune.max_t", COUNT, "100"),
    Rule("tune.reduction_factor", integer(at_least=2), "2"),
    Rule("tune.max_failures", integer(at_least=-1), "1", " (-1: retry without end)"),
    Rule("tune.resume", BOOLEAN, "true"),
    Rule("tune.top", COUNT, "10"),
    Rule("tune.metric", TEXT, "val/top1"),
)
# teacher.recipe.<key> (null: as the student's) is checked as <key>.
RECIPE = "teacher.recipe."


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resolved(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # noqa: BLE001 - OmegaConf raises several types for a bad interpolation
        raise ConfigError(f"the config does not resolve: {one_line(error)}") from None


def check_values(cfg: DictConfig) -> None:
    """The table's check of every key `cfg` has, in the table's order (so `seed` is named before the
    `data.seed` that copies it); stops at the first bad value."""
    flat = {key: value for key, value in _flat(_resolved(cfg)).items() if not key.startswith("hydra.")}
    for rule in RULES:
        for key, value in flat.items():
            in_recipe = key.startswith(RECIPE) and value is not None and rule.matches(key[len(RECIPE):])
            if (rule.matches(key) or in_recipe) and not rule.kind.accepts(value):
                raise ConfigError(f"{key}={_shown(value)}: must be {rule.kind.text}{rule.note}; "
                                  f"e.g. {key}={rule.example}")


# ----------------------------------------------------------------------------------------------- constructors
def checked(section: str, build: Callable[[], Any], node: DictConfig | None = None) -> Any:
    """`build()`, a failure other than a UserError (a constructor refusing its arguments) made one line naming
    `section` (and the settings `node` gave it). check_config builds the parts it can now, as the run will
    later, so their constructors' own checks run before anything is built."""
    try:
        return build()
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - a constructor refusing its arguments is the user's input
        cause = error.__cause__ or error
        given = "" if node is None else f" {node.get('_target_')}({_arguments(node)})"
        raise ConfigError(f"{section}:{given} was refused ({type(cause).__name__}: {one_line(cause)}); fix the "
                          f"{section}.* value it names") from None


def _arguments(node: DictConfig) -> str:
    settings = OmegaConf.to_container(node, resolve=True)
    return ", ".join(f"{key}={_shown(value)}" for key, value in settings.items() if not key.startswith("_"))


def check_config(cfg: DictConfig) -> None:
    """Every value of a train or distill config checked, before anything is built or trained; for a
    distillation run also its teacher checkpoints, whose model config becomes teacher.model
    (runs/checkpoint_checks.py), so call it before the run folder is claimed."""
    check_values(cfg)
    check_trainer(cfg.trainer)
    check_init_from(cfg)
    optimizer = checked("optimizer", lambda: instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))]),
                         cfg.optimizer)
    if isinstance(optimizer, DistillationOrientedTrainer):
        refuse_unsupported_trainer(cfg.trainer)
    if cfg.get("scheduler"):
        checked("scheduler", lambda: instantiate(cfg.scheduler)(optimizer), cfg.scheduler)
    if cfg.get("task") != "distill":
        config_notices(cfg)
        return
    objective = checked("kd.terms", lambda: build_objective(cfg))
    checked("kd.phases", lambda: parse_phases(cfg.kd, objective.terms, float(cfg.get("pre_training_scale", 1.0))))
    if cfg.get("augment"):
        checked("augment", lambda: instantiate(cfg.augment), cfg.augment)
    checked("fidelity", lambda: fidelity_settings(cfg.get("fidelity")))
    adopt_teacher_checkpoints(cfg)
    config_notices(cfg)


def check_trainer(trainer: DictConfig) -> None:
    """Trainer settings that only fail once training starts: synchronised BatchNorm on CPU processes (torch's
    SyncBatchNorm runs on GPUs only), e.g. trainer=ddp trainer.accelerator=cpu."""
    accelerator = trainer.get("accelerator")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if trainer.get("sync_batchnorm") and on_cpu and is_multi_process(trainer):
        raise ConfigError(f"trainer.sync_batchnorm=true synchronises BatchNorm between GPU processes only, and "
                          f"these processes run on the CPU (trainer.accelerator={accelerator}); add "
                          f"trainer.sync_batchnorm=false")

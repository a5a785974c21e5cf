"""Does each model take the data? One probe forward of two training examples (eval mode, no grad, the
global random state untouched), before any training and before a teacher is trained: a model whose input
does not fit the data stops the run with one line naming data.input_shape, the model and the fix (models of
cfg/model/ that do fit). A teacher read from a checkpoint must also answer with finite outputs.
"""
from __future__ import annotations

import re

import torch
from omegaconf import DictConfig, OmegaConf

from errors import ConfigError, UserError, one_line
from runs.checkpoint_checks import adopt_teacher_checkpoints, teacher_checkpoints
from runs.configs import build_objective, instantiate, model_node
from runs.validation import checked
from tasks.finite import NonFiniteError

# Models tried when one does not fit the data, to name some that do (cheap ones, one per input kind).
FIT_CANDIDATES = ("mlp", "cnn1d", "lenet", "resnet8", "lstm")


def example_batch(datamodule) -> torch.Tensor:
    """Two training examples (the first, twice), drawn without moving torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        x = datamodule.train_set[0][0]
    return x.unsqueeze(0).repeat(2, *[1] * x.dim())


def _forward(model: torch.nn.Module, example: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(example.to(next((p.device for p in model.parameters()), example.device)))
    finally:
        model.train(was_training)


def _build_model(cfg: DictConfig, node: DictConfig, section: str = "model") -> torch.nn.Module:
    """A model from its config node (a cfg/model file's, reading ${data.*}), leaving torch's generator as it was."""
    node = OmegaConf.create({"data": OmegaConf.to_container(cfg.data), "model": node}).model
    with torch.random.fork_rng(devices=[]):
        return checked(section, lambda: instantiate(node), node)


def models_that_fit(cfg: DictConfig, example: torch.Tensor, num_classes: int) -> list[str]:
    """Names of FIT_CANDIDATES that answer `example` with one row of class scores per example."""
    fits = []
    for name in FIT_CANDIDATES:
        try:
            out = _forward(_build_model(cfg, model_node(name)), example)
        except Exception:  # noqa: BLE001 - a candidate that does not fit is skipped
            continue
        if tuple(out.shape) == (len(example), num_classes):
            fits.append(name)
    return fits


def check_fits(cfg: DictConfig, model: torch.nn.Module, example: torch.Tensor, num_classes: int, who: str,
               option: str | None) -> torch.Tensor:
    """One forward of two training examples (eval mode, no grad, before any training): the model's outputs,
    or a ConfigError naming data.input_shape, the model (`who`, e.g. "student=resnet8x4") and the fix: other
    values of `option` (e.g. "student") that fit, or, without an option (a model read from a checkpoint), one
    trained on this data."""
    try:
        out = _forward(model, example)
        problem = None if tuple(out.shape) == (len(example), num_classes) else \
            f"it answers {len(example)} examples with shape {list(out.shape)}, not [{len(example)}, {num_classes}]"
    except Exception as error:  # noqa: BLE001 - any failure of the forward is the misfit we look for
        problem, out = f"a forward of {len(example)} examples fails ({type(error).__name__}: {one_line(error)})", None
    if problem is None:
        return out
    fits = models_that_fit(cfg, example, num_classes) if option else []
    shown = f"[{','.join(fits[:2])}]" if option == "teacher.models" else fits[0] if fits else ""
    fix = (f"pick a model for inputs of this shape, e.g. {option}={shown} (these fit: {', '.join(fits)})" if fits
           else "pick a model for inputs of this shape" if option else "use one trained on this data")
    raise ConfigError(f"data.input_shape={list(example.shape[1:])} ({cfg.data.get('name')}) does not fit {who}: "
                      f"{problem}; {fix}")


def check_model_fits(cfg: DictConfig, model: torch.nn.Module, datamodule) -> None:
    """train.py's model, probed on the data before any training."""
    datamodule.setup("fit")
    check_fits(cfg, model, example_batch(datamodule), datamodule.num_classes, f"model={cfg.model.name}", "model")


def check_models_fit(cfg: DictConfig, datamodule, student: torch.nn.Module | None = None) -> None:
    """A distillation run's student (cfg.student, or `student` when given), and each teacher model it will
    train, probed on the data (set up) before any of them is trained."""
    example = example_batch(datamodule)
    if student is not None:
        check_fits(cfg, student, example, datamodule.num_classes, "the student", None)
    models = [] if student is not None else [("student", cfg.student)]
    if not teacher_checkpoints(cfg)[1]:
        ensemble = "ensemble" in (cfg.teacher.get("kind"), cfg.teacher.get("source"))
        named = list(cfg.teacher.get("models") or []) if ensemble else []
        models += [("teacher.models", model_node(name)) for name in named] or [("teacher/model", cfg.teacher.model)]
    for option, node in models:
        model = _build_model(cfg, node, option.replace("/", "."))
        check_fits(cfg, model, example, datamodule.num_classes, f"{option}={node.name}", option)


def check_teacher_members(cfg: DictConfig, members: list[torch.nn.Module], checkpoints: list[str], datamodule) -> None:
    """Each teacher member read from a checkpoint fits the data and answers it with finite outputs, before it is
    used or cached."""
    example = example_batch(datamodule)
    for member, path in zip(members, checkpoints):
        who = f"the teacher in {path} ({getattr(member, 'model_name', type(member).__name__)})"
        outputs = check_fits(cfg, member, example, datamodule.num_classes, who, None)
        if not bool(torch.isfinite(outputs).all()):
            raise NonFiniteError(f"{who} answers training examples with non-finite outputs (NaN or infinite): it "
                                 f"diverged in training or its file is damaged; train it again or use another "
                                 f"checkpoint")


# The data set on which every method of cfg/kd/ runs (tests/test_digits_methods.py holds it), offered to a
# method its pair cannot serve.
EVERY_METHOD_DATA = "digits"


def method_misfit(cfg: DictConfig, datamodule) -> str | None:
    """Why kd=NAME cannot run on this teacher -> student pair, or None if it can: the terms' own checks of what
    they need (feature maps over positions, enough stages, equal widths, square images, ...), run at setup on
    freshly built (untrained) models of the pair and two training examples, before any model is trained. The
    reason is the first clause of the term's message (its advice is about the term's options, which cannot
    help a pair that lacks what the method reads)."""
    from models.teachers import FrozenTeacher
    from runs.class_means import bind_class_means
    from tasks.distillation import DistillationTask
    example = example_batch(datamodule)
    with torch.random.fork_rng(devices=[]):
        try:
            student = _build_model(cfg, cfg.student, "student")
            teacher = FrozenTeacher(_build_model(cfg, cfg.teacher.model, "teacher.model"))
            objective = build_objective(cfg)
            labels = torch.arange(len(example)) % datamodule.num_classes
            bind_class_means(objective, teacher.model, [(example, labels)], datamodule.num_classes)  # KD++'s centres
            DistillationTask(student, teacher, objective, datamodule.num_classes, torch.optim.SGD,
                             example_input=example, num_train=len(datamodule.train_set.base),
                             train_labels=datamodule.train_labels())
        except UserError as error:
            return re.split(r"; |\. (?=[A-Z])", one_line(error), maxsplit=1)[0]
    return None


def runs_on_every_method_data(method: str) -> bool:
    """Whether kd=<method> fits the digits pair (every method but those made for other kinds of model, e.g. DeiT's
    distillation token): checked as on any pair, when a refusal is about to name digits."""
    from runs.configs import compose
    cfg = compose("distill", [f"data={EVERY_METHOD_DATA}", f"kd={method}"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return method_misfit(cfg, datamodule) is None


def check_method_fits(cfg: DictConfig, datamodule) -> None:
    """A method the pair cannot serve stops here, before any training, with the reason and a command that runs it."""
    reason = method_misfit(cfg, datamodule)
    if reason is None:
        return
    method, data = cfg.kd.get("name"), cfg.data.get("name")
    fix = (f"every method runs on the {EVERY_METHOD_DATA} image pair: python distill_train.py data={EVERY_METHOD_DATA} "
           f"kd={method}" if data != EVERY_METHOD_DATA and runs_on_every_method_data(method) else
           "pick a pair it fits (README: support matrix) or another method")
    raise ConfigError(f"kd={method} cannot run on {cfg.teacher.model.name} -> {cfg.student.name} ({data}): {reason}. "
                      f"{fix[0].upper()}{fix[1:]}")


def require_pair(cfg: DictConfig) -> None:
    """A distillation config names its student and teacher: the data set's default pair (cfg/model/pair/<data>/),
    the user's choices, or (teacher) a checkpoint that carries its model config. One line otherwise, before
    anything reads the run's name."""
    if cfg.get("task") != "distill":
        return
    data = cfg.data.get("name")
    fix = (f"data={data} has no default teacher-student pair (cfg/model/pair/{data}/); name one, e.g. "
           f"student=resnet8x4 teacher/model=resnet32x4")
    if cfg.get("student") is None:
        raise ConfigError(f"no student: {fix}")
    if cfg.teacher.get("model") is None:
        adopt_teacher_checkpoints(cfg)  # a checkpoint of ours carries its model config
        if cfg.teacher.get("model") is None:
            raise ConfigError(f"no teacher model: {fix} (a checkpoint without its model config needs teacher/model)")


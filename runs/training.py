"""What train.py and distill_train.py do: build everything from the config, fit, evaluate, record.

Both entry points (and later the Ray runner) call `run_train` / `run_distill` with a composed config and
get the run record back.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict

from errors import ConfigError
from losses import DistillationObjective, DistillTerm
from losses.base import ClassGroupedBatches, TupleBatches
from models.checkpoints import extract_state_dict, load_weights, model_from_checkpoint, read_checkpoint
from models.teachers import CrossFitTeacher, FrozenTeacher
from tasks.callbacks import TrainThroughput
from tasks.classification import ClassificationTask
from tasks.distillation import DistillationTask
from tasks.finite import NonFiniteError
from tasks.metrics import fidelity_settings
from runs.class_means import bind_training_class_means
from runs.checkpoint_checks import (adopt_evaluated_model, check_resumable, initialise_from, load_teacher_member,
                                    teacher_checkpoints)
from runs.configs import build_objective, chosen_experiment, instantiate, model_node
from runs.console import fit_label, hide_evaluation_bars, label_progress
from runs.processes import follows_first_process, single_process_trainer
from runs.model_fit import (check_method_fits, check_model_fits, check_models_fit, check_teacher_members,
                            require_pair)
from runs.validation import check_config, checked
from runs.folders import claim_run_folder, config_digest, git_state, run_folder, run_folder_lock
from runs.notices import data_notices
from runs.plugins import trainer_plugins
from runs.stops import trainer_stops
from runs.records import read_record, write_record
from tasks.phases import parse_phases, pre_training_epochs
from runs.teacher_cache import cached_teacher
from runs.summary import composed_run_line, print_comparison, print_record

log = logging.getLogger(__name__)

# Keys of the training recipe that teachers and baselines derive from a distillation config.
RECIPE_KEYS = ("data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "seed", "compile",
               "channels_last", "verbose")


# ----------------------------------------------------------------------------------------------- building
def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # fails here, before any training, if data is missing offline
    # Data read from the user's files (image_folder, csv) may leave these null and infer them; fill them in
    # so ${data.num_classes} / ${data.input_shape} reach the model configs.
    inferred = {"num_classes": datamodule.num_classes, "input_shape": list(datamodule.input_shape)}
    with open_dict(cfg):
        for key, value in inferred.items():
            if key in cfg.data and cfg.data[key] is None:
                cfg.data[key] = value
    return datamodule


def model_config(cfg_node: DictConfig) -> dict:
    return OmegaConf.to_container(cfg_node, resolve=True)


def compile_in_place(model: torch.nn.Module, setting) -> None:
    """compile=true (inductor), graphs (inductor replaying CUDA graphs: torch.compile's reduce-overhead mode) or a
    backend name: torch.compile the module in place (nn.Module.compile), so its state dict, hooks and checkpoint
    keys stay those of the plain module."""
    if setting in (None, False, "false"):
        return
    # Compiled code is shared by every instance of a class: guard on hooks (an instance with feature taps never runs
    # code traced without them), and room for teacher + student, train/eval, short batches (torch's 8 falls short).
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if setting == "graphs":  # each model's forward (and the student's backward) one graph, replayed per step
        model.compile(mode="reduce-overhead")
    else:
        model.compile(**({} if setting is True or setting == "true" else {"backend": str(setting)}))


def compile_setting(cfg: DictConfig):
    """cfg.compile, except compile=graphs where no CUDA device trains: CUDA graphs need one, so the models run
    uncompiled there, said in one line."""
    setting = cfg.get("compile")
    if setting == "graphs" and (str(cfg.trainer.get("accelerator")) == "cpu" or not torch.cuda.is_available()):
        log.warning("compile=graphs replays CUDA graphs, which need a CUDA device; on this machine the models run "
                    "uncompiled")
        return False
    return setting


def check_classes(model: torch.nn.Module, num_classes: int, who: str, fix: str) -> None:
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise ConfigError(f"the {who} predicts {model.num_classes} classes but the data has {num_classes}; {fix}")


def build_trainer(cfg: DictConfig, extra_callbacks: list[pl.Callback], extra_epochs: int = 0) -> pl.Trainer:
    """The configured Trainer. Under DDP the datamodules give each process its share themselves (no padded
    DistributedSampler: evaluation counts each example once), and a run with training phases, which freeze
    parts or leave terms out, lets DDP find the parameters a step does not reach."""
    extra = {"use_distributed_sampler": False}
    if extra_epochs and cfg.trainer.get("strategy") == "ddp":
        extra["strategy"] = "ddp_find_unused_parameters_true"
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, pl.callbacks.ProgressBar) and not cfg.trainer.get("enable_progress_bar", True):
            continue
        if isinstance(callback, pl.callbacks.LearningRateMonitor) and not logger:
            continue
        callbacks.append(callback)
    try:
        return instantiate(cfg.trainer, logger=logger, callbacks=callbacks + extra_callbacks, **extra,
                           plugins=trainer_plugins(cfg), default_root_dir=cfg.run_dir,
                           max_epochs=cfg.trainer.max_epochs + extra_epochs)
    except InstantiationException as error:  # e.g. trainer.accelerator=gpu where no GPU is visible
        if not isinstance(error.__cause__, MisconfigurationException):
            raise
        raise ConfigError(f"trainer.accelerator={cfg.trainer.get('accelerator')} trainer.devices="
                          f"{cfg.trainer.get('devices')} cannot run here ({error.__cause__}); pick what this machine "
                          f"has, e.g. trainer=cpu") from None


def checkpoint_callbacks(trainer: pl.Trainer) -> tuple[pl.callbacks.ModelCheckpoint, pl.callbacks.ModelCheckpoint]:
    """(best by the monitored metric, last epoch) checkpoint callbacks."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)]
    best = next((c for c in callbacks if c.monitor), None)
    last = next((c for c in callbacks if not c.monitor), None)
    if best is None or last is None:
        raise ConfigError("callbacks.checkpoint (best by val/top1) and callbacks.last_checkpoint (every epoch) "
                          "must both be configured: the run record is made from them")
    return best, last


# ----------------------------------------------------------------------------------------------- running
def announce(cfg: DictConfig) -> None:
    """The composed-run line, before anything else the run prints."""
    folder = run_folder(cfg)
    finished = not cfg.get("rerun") and read_record(folder) is not None
    print(composed_run_line(cfg, chosen_experiment(), folder, finished), flush=True)


def _start(cfg: DictConfig) -> tuple[Path, dict | None, str | None]:
    folder, record, resume_from = claim_run_folder(cfg)
    with open_dict(cfg):
        cfg.run_dir = str(folder)
    return folder, record, resume_from


def _evaluate(trainer: pl.Trainer, task: pl.LightningModule, datamodule, checkpoint: str) -> dict:
    metrics = {}
    for results in (trainer.validate(task, datamodule, ckpt_path=checkpoint, verbose=False),
                    trainer.test(task, datamodule, ckpt_path=checkpoint, verbose=False)):
        metrics.update({k: float(v) for k, v in results[0].items()})
    return metrics


def _fit_and_record(cfg: DictConfig, task: pl.LightningModule, datamodule, folder: Path,
                    resume_from: str | None, extra: dict[str, Any], callbacks: list[pl.Callback] | None = None,
                    label: str | None = None) -> dict:
    throughput = TrainThroughput()
    trainer = build_trainer(cfg, [throughput, *(callbacks or [])], pre_training_epochs(getattr(task, "phases", [])))
    label_progress(trainer, label or fit_label(cfg))
    if resume_from is not None:
        check_resumable(resume_from, task)
    elif cfg.get("init_from"):  # a new run starting from another run's weights (its origin recorded)
        extra = {**extra, "init_from": initialise_from(str(cfg.init_from), task)}
    what = f"{cfg.task}/{folder.name}"
    started = time.time()
    with trainer_stops(trainer, what):
        trainer.fit(task, datamodule, ckpt_path=resume_from)
    wall = time.time() - started
    usage = task.teacher_usage() if hasattr(task, "teacher_usage") else {}  # before evaluation reloads checkpoints
    best_callback, last_callback = checkpoint_callbacks(trainer)
    last_path = last_callback.best_model_path or str(folder / "checkpoints" / "last.ckpt")
    best_path = best_callback.best_model_path or last_path
    hide_evaluation_bars(trainer, bool(cfg.get("verbose")))
    with trainer_stops(trainer, what):
        last = _evaluate(trainer, task, datamodule, last_path)
        best = _evaluate(trainer, task, datamodule, best_path)
    record = {
        "task": cfg.task, "run_dir": str(folder), "seed": cfg.seed, **git_state(),
        "config": OmegaConf.to_container(cfg, resolve=True), "config_digest": config_digest(cfg),
        "epochs": trainer.current_epoch, "wall_time_s": wall, "resumed_from": resume_from,
        "train_samples_per_s": throughput.samples_per_second,
        "checkpoints": {"last": last_path, "best": best_path},
        **usage,
        "last": last,
        "best": {"epoch": int(read_checkpoint(best_path)["epoch"]), **best},
        **extra,
    }
    if trainer.is_global_zero:
        write_record(folder, record)
    return record


def run_train(cfg: DictConfig, quiet: bool = False, callbacks: list[pl.Callback] | None = None,
              label: str | None = None) -> dict:
    """Train cfg.model on cfg.data; returns the run record (reused if this config already finished). `label`: what
    the progress display calls the model (e.g. "teacher resnet32"; default its name)."""
    adopt_evaluated_model(cfg)  # test_only: the checkpoint's own model names the run
    if not quiet and not follows_first_process(cfg.trainer):
        announce(cfg)
    check_config(cfg)
    if cfg.get("test_only"):
        return run_test_only(cfg, quiet)
    with run_folder_lock(cfg):
        folder, record, resume_from = _start(cfg)
        if record is not None:
            log.info("this config already finished in %s: showing its record (rerun=true trains again)", folder)
        else:
            pl.seed_everything(cfg.seed, workers=True)
            datamodule = build_datamodule(cfg)
            model = checked("model", lambda: instantiate(cfg.model), cfg.model)
            check_classes(model, datamodule.num_classes, "model", "set model.num_classes to match or pick other data")
            check_model_fits(cfg, model, datamodule)
            data_notices(cfg, datamodule)
            setting = compile_setting(cfg)
            compile_in_place(model, setting)
            task = ClassificationTask(model, datamodule.num_classes, instantiate(cfg.optimizer),
                                      instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                                      model_config(cfg.model), bool(cfg.get("channels_last")), cfg.seed)
            task.marks_graph_steps = setting == "graphs"
            record = _fit_and_record(cfg, task, datamodule, folder, resume_from, {}, callbacks, label)
    if not quiet and not follows_first_process(cfg.trainer):
        print_record(record)
    return record


def derived_train_config(cfg: DictConfig, model_node: DictConfig, recipe: DictConfig | None = None) -> DictConfig:
    """A train.py config for a model trained inside a distillation run (teacher or scratch baseline):
    the distillation run's own data and recipe, with the non-null leaves of `recipe` on top, on a single
    device (under DDP it is trained once, before the fit: runs/processes.py)."""
    train_cfg = OmegaConf.create({key: cfg[key] for key in RECIPE_KEYS if key in cfg})
    with open_dict(train_cfg):
        train_cfg.model = model_node
        train_cfg.task = "train"
        train_cfg.run_dir = None
        # A model trained inside a run continues its own unfinished run by itself (as a sweep's trials do),
        # to the result an unkilled run reaches: no hint to pass resume=true that the outer run would refuse.
        train_cfg.resume = "auto"
        train_cfg.rerun = False
        train_cfg.test_only = False
        train_cfg.ckpt = None
    changes = _non_null(OmegaConf.to_container(recipe, resolve=True)) if recipe else {}
    unknown = sorted(set(changes) - set(train_cfg))
    if unknown:
        raise ConfigError(f"teacher.recipe has unknown sections {unknown}; use sections of the training "
                          f"recipe: {', '.join(RECIPE_KEYS)}")
    train_cfg = OmegaConf.merge(train_cfg, changes)
    train_cfg.trainer = single_process_trainer(train_cfg.trainer)
    train_cfg.run_name = f"{train_cfg.data.name}-{train_cfg.model.name}-s{train_cfg.seed}"
    return train_cfg


def _non_null(tree: dict) -> dict:
    """Drops null leaves (null = same as the student) and the branches they leave empty."""
    kept = {}
    for key, value in tree.items():
        value = _non_null(value) if isinstance(value, dict) else value
        if value is not None and value != {}:
            kept[key] = value
    return kept


def _trained_teacher(cfg: DictConfig, seed_offset: int = 0, crossfit: dict | None = None,
                     model: DictConfig | None = None) -> dict:
    """The record of teacher/model (or `model`) trained (or reused) on this run's data and recipe; an
    ensemble member gets seed + `seed_offset`, a fold teacher its `crossfit` split."""
    train_cfg = derived_train_config(cfg, model if model is not None else cfg.teacher.model, cfg.teacher.get("recipe"))
    with open_dict(train_cfg):
        train_cfg.seed = int(train_cfg.seed) + seed_offset
        if crossfit is not None:
            train_cfg.data.crossfit = crossfit
            train_cfg.run_name = f"{train_cfg.run_name}-fold{crossfit['fold']}of{crossfit['folds']}"
        elif seed_offset:
            train_cfg.run_name = f"{train_cfg.data.name}-{train_cfg.model.name}-s{train_cfg.seed}"
    log.info("training (or reusing) teacher %s (%s)", train_cfg.model.name, train_cfg.run_name)
    try:
        return run_train(train_cfg, quiet=True, label=f"teacher {train_cfg.model.name}")
    except NonFiniteError as error:
        raise NonFiniteError(f"training the teacher {train_cfg.model.name} ({train_cfg.run_name}) went wrong: "
                             f"{error}") from None


def _member_checkpoints(cfg: DictConfig, kind: str) -> tuple[list[str], list[str]]:
    """(checkpoints, training run folders) of the teacher's members, training the missing ones."""
    teacher_cfg = cfg.teacher
    named: list[str] = []
    if kind == "single":
        given = [teacher_cfg.checkpoint] if teacher_cfg.get("checkpoint") else None
        count = 1
    else:
        given = list(teacher_cfg.checkpoints) if teacher_cfg.get("checkpoints") else None
        named = list(teacher_cfg.get("models") or []) if kind == "ensemble" else []
        count = int(teacher_cfg.folds if kind == "crossfit" else len(named) or teacher_cfg.size)
        if kind == "crossfit" and given is not None and len(given) != count:
            raise ConfigError(f"teacher.checkpoints lists {len(given)} fold teachers but teacher.folds={count}; give "
                              f"one per fold (fold i's at position i), or set teacher.folds={len(given)}")
    if given is not None:
        return [str(path) for path in given], []
    if kind == "crossfit":
        records = [_trained_teacher(cfg, crossfit={"folds": count, "fold": i}) for i in range(count)]
    elif named:
        records = [_trained_teacher(cfg, seed_offset=i, model=model_node(name)) for i, name in enumerate(named)]
    else:
        records = [_trained_teacher(cfg, seed_offset=i) for i in range(count)]
    # the last-epoch teacher, as RepDistiller uses (and no early stopping, as the semiparametric study needs)
    return [r["checkpoints"]["last"] for r in records], [r["run_dir"] for r in records]


def teacher_outputs_are_fixed(datamodule, objective: DistillationObjective | None, augment,
                              batchnorm: str = "running") -> bool:
    """True when the teacher would answer every epoch with the same logits for the same example: no random
    training transform, no batch augmentation, no term that makes its own batch or reads teacher features, and
    no BatchNorm on batch statistics (teacher.batchnorm=batch: the answer depends on the batch)."""
    if objective is None or datamodule.augments or (augment is not None and augment.active) or batchnorm != "running":
        return False
    makes_batches = any(type(t).expand_batch is not DistillTerm.expand_batch for t in objective.terms.values())
    return not makes_batches and not objective.train_views and not any(t.reads_teacher_features for t in objective.terms.values())


def build_teacher(cfg: DictConfig, datamodule, objective: DistillationObjective | None = None, augment=None
                  ) -> tuple[FrozenTeacher, dict]:
    """The frozen teacher of a distillation run; `datamodule` is set up (cross-fitting routes by its folds).
    Where its outputs cannot change (teacher_outputs_are_fixed) and teacher.cache is auto, it is cached."""
    teacher_cfg = cfg.teacher
    kind = str(teacher_cfg.source) if teacher_cfg.kind == "cached" else str(teacher_cfg.kind)
    checkpoints, runs = _member_checkpoints(cfg, kind)
    members, names = [], []
    for checkpoint in checkpoints:
        model, config = load_teacher_member(checkpoint, model_config(teacher_cfg.model),
                                            None if runs else teacher_checkpoints(cfg)[0])
        members.append(model)
        names.append(config.get("name"))
    batchnorm = str(teacher_cfg.get("batchnorm", "running"))
    if kind == "crossfit":
        fold_of = torch.from_numpy(datamodule.fold_assignment(len(members)))
        teacher = CrossFitTeacher(members, fold_of, batchnorm)
    else:
        teacher = FrozenTeacher(members, int(teacher_cfg.get("feature_member") or 0), batchnorm)
    check_classes(teacher.model, datamodule.num_classes, "teacher",
                  "use a teacher trained on this data, or the data it was trained on")
    check_teacher_members(cfg, members, checkpoints, datamodule)  # before the teacher is used or cached
    cache_info = {}
    if teacher_cfg.kind == "cached":
        teacher, cache_info = cached_teacher(teacher, datamodule, cfg, checkpoints, kind)
    elif teacher_cfg.get("cache", "auto") == "auto" and teacher_outputs_are_fixed(datamodule, objective, augment,
                                                                                  batchnorm):
        teacher, cache_info = cached_teacher(teacher, datamodule, cfg, checkpoints, kind)
        cache_info["teacher_cache"]["automatic"] = True  # the outputs could not change: computed once
    info: dict[str, Any] = {"teacher_kind": str(teacher_cfg.kind),
                            "teacher_checkpoint": checkpoints[0] if len(checkpoints) == 1 else checkpoints,
                            "teacher_model": names[0] if len(set(names)) == 1 else names}
    if runs:
        info["teacher_run"] = runs[0] if len(runs) == 1 else runs
    return teacher, {**info, **cache_info}


def check_folds(cfg: DictConfig, datamodule) -> None:
    """A cross-fit teacher's folds each hold training examples (before any fold teacher is trained)."""
    teacher = cfg.teacher
    kind = teacher.get("source") if teacher.get("kind") == "cached" else teacher.get("kind")
    examples = len(datamodule.train_indices)
    if kind == "crossfit" and int(teacher.folds) > examples:
        raise ConfigError(f"teacher.folds={teacher.folds} is more than the {examples} training examples of "
                          f"{cfg.data.name}: a fold would be empty; use at most {examples} folds (e.g. "
                          f"teacher.folds=5) or more data (data.train_subset)")


def use_term_batches(datamodule, objective: DistillationObjective) -> None:
    """Trains on the batches a term makes its own (CKD's tuples, class-grouped batches), if one asks; after the
    teacher is built (a cached teacher fixes the training views first)."""
    plan = objective.train_batches
    if isinstance(plan, TupleBatches):
        datamodule.use_tuple_batches(plan.positives, plan.negatives, plan.pool_size)
    elif isinstance(plan, ClassGroupedBatches):
        datamodule.use_class_grouped_batches(plan.per_class)


def initial_student(cfg: DictConfig) -> tuple[torch.nn.Module, dict]:
    """(cfg.student freshly built, its config); with student_init_checkpoint=PATH its weights come from that
    checkpoint (a distillation or train run's, or a bare state dict), e.g. PAD-L2 from the L2 student."""
    student = instantiate(cfg.student)
    path = cfg.get("student_init_checkpoint")
    if path:
        load_weights(student, extract_state_dict(read_checkpoint(path), path), path)
    return student, model_config(cfg.student)


def build_distillation(cfg: DictConfig, student: torch.nn.Module | None = None, student_config: dict | None = None):
    """(datamodule, task, teacher info): everything a distillation run fits, built and checked.
    `student` (with its `student_config`) replaces cfg.student, e.g. a student loaded from a checkpoint."""
    pl.seed_everything(cfg.seed, workers=True)
    objective = build_objective(cfg)  # first: a bad temperature or weight fails before any training
    augment = instantiate(cfg.augment) if cfg.get("augment") else None  # a missing generator fails here too
    fidelity = fidelity_settings(cfg.get("fidelity"))  # so does a bad fidelity block (taps resolve with the models)
    phases = parse_phases(cfg.kd, objective.terms, float(cfg.get("pre_training_scale", 1.0)))
    datamodule = build_datamodule(cfg)
    if augment is not None and hasattr(augment, "check_input_shape"):
        augment.check_input_shape(datamodule.input_shape)  # before any teacher is trained
    if (cfg.data.get("crossfit") or {}).get("folds") is not None:
        raise ConfigError("data.crossfit trains one fold teacher with train.py; to distill from cross-fitted "
                          "teachers use teacher=crossfit teacher.folds=K and leave data.crossfit unset")
    budget = cfg.teacher.get("budget")
    if budget is not None:
        datamodule.limit_train_pool(budget)
    datamodule.setup("fit")
    if objective.train_views:  # e.g. MLKD's strong view; data that cannot make it refuse before any training
        readers = sorted({name for names in objective.train_views.values() for name in names})
        datamodule.use_views(tuple(objective.train_views), ", ".join(f"kd.terms.{name}" for name in readers))
    check_folds(cfg, datamodule)
    check_models_fit(cfg, datamodule, student)  # the student and any teacher to train, before one is trained
    if student is None:
        check_method_fits(cfg, datamodule)  # and the method on this pair, before any training
    data_notices(cfg, datamodule)
    teacher, info = build_teacher(cfg, datamodule, objective, augment)
    bind_training_class_means(objective, teacher, datamodule, cfg)  # before the training views change (use_term_batches)
    use_term_batches(datamodule, objective)
    pl.seed_everything(cfg.seed, workers=True)  # the student's init must not depend on teacher training
    if student is None:
        student, student_config = initial_student(cfg)
    check_classes(student, datamodule.num_classes, "student", "set student.num_classes to match")
    example_input = datamodule.train_set[0][0].unsqueeze(0).repeat(2, *[1] * len(datamodule.input_shape))
    task = DistillationTask(student, teacher, objective, datamodule.num_classes, instantiate(cfg.optimizer),
                            instantiate(cfg.scheduler) if cfg.get("scheduler") else None, student_config,
                            example_input=example_input, num_train=len(datamodule.train_set.base),
                            train_labels=datamodule.train_labels(), phases=phases,
                            fidelity=fidelity, augment=augment, channels_last=bool(cfg.get("channels_last")),
                            seed=cfg.seed)
    # After the task has hooked its feature taps, which a compiled module would not see if added later;
    # student and teacher separately: each graph is one model's, and checkpoint keys stay unchanged.
    setting = compile_setting(cfg)
    for model in (student, *teacher.members):
        compile_in_place(model, setting)
    task.marks_graph_steps = setting == "graphs"
    return datamodule, task, info


def run_distill(cfg: DictConfig, quiet: bool = False, callbacks: list[pl.Callback] | None = None) -> dict:
    adopt_evaluated_model(cfg)  # test_only: the checkpoint's own student names the run
    require_pair(cfg)
    if not quiet and not follows_first_process(cfg.trainer):
        announce(cfg)
    check_config(cfg)
    if cfg.get("test_only"):
        return run_test_only(cfg, quiet)
    baseline = None
    with run_folder_lock(cfg):
        folder, record, resume_from = _start(cfg)
        if record is None:
            datamodule, task, info = build_distillation(cfg)  # the whole config checked, the teacher trained
            # before the fit, as the teacher: under DDP it is trained once (runs/processes.py)
            baseline = _trained_baseline(cfg)
            record = _fit_and_record(cfg, task, datamodule, folder, resume_from, info, callbacks)
        else:
            log.info("this config already finished in %s: showing its record (rerun=true trains again)", folder)
    baseline = baseline or _trained_baseline(cfg)
    if baseline is not None:
        record["baseline"] = {key: baseline[key] for key in ("run_dir", "last", "best")}
        if not follows_first_process(cfg.trainer):
            write_record(folder, record)
    if not quiet and not follows_first_process(cfg.trainer):
        print_record(record)
        if "baseline" in record:
            print_comparison(record)
    return record


def _trained_baseline(cfg: DictConfig) -> dict | None:
    """With baseline=true, the record of the student trained from scratch on the same recipe (or reused)."""
    return run_train(derived_train_config(cfg, cfg.student), quiet=True,
                     label=f"scratch student {cfg.student.name}") if cfg.get("baseline") else None


def run_test_only(cfg: DictConfig, quiet: bool = False) -> dict:
    """Evaluate `ckpt` on the test set (and, for distillation, against the teacher)."""
    if not cfg.get("ckpt"):
        raise ConfigError("test_only=true needs ckpt=PATH (a .ckpt written by train.py or distill_train.py)")
    folder, record, _ = _start(cfg)
    if record is None:
        record = _test_checkpoint(cfg, folder)
    if not quiet and not follows_first_process(cfg.trainer):
        print_record(record)
    return record


def _test_checkpoint(cfg: DictConfig, folder: Path) -> dict:
    architecture = cfg.get("model") or cfg.get("student")
    model, config = model_from_checkpoint(cfg.ckpt, fallback_config=model_config(architecture))
    if cfg.task == "distill":
        datamodule, task, info = build_distillation(cfg, student=model, student_config=config)
    else:
        datamodule, info = build_datamodule(cfg), {}
        check_classes(model, datamodule.num_classes, "checkpoint's model", "evaluate it on the data it was trained on")
        task = ClassificationTask(model, datamodule.num_classes, instantiate(cfg.optimizer), None, config)
    trainer = build_trainer(cfg, [])
    hide_evaluation_bars(trainer, bool(cfg.get("verbose")))
    with trainer_stops(trainer, f"{cfg.task}/{folder.name}"):
        metrics = trainer.test(task, datamodule, verbose=False)[0]
    record = {"task": f"{cfg.task}-test", "run_dir": str(folder), "checkpoint": str(cfg.ckpt),
              "model": config.get("name"), **git_state(), "config": OmegaConf.to_container(cfg, resolve=True),
              "test": {k: float(v) for k, v in metrics.items()}, **info}
    if trainer.is_global_zero:
        write_record(folder, record)
    return record

"""Short rich summaries printed at the end of a run."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tasks.units import shown, shown_in_percent

SHOWN = ("top1", "top5", "agreement", "kl", "ece", "nll", "cka_linear", "cka_rbf", "teacher_top1", "loss")


def _row_name(key: str) -> str:
    return f"{key} (%)" if shown_in_percent(key) else key


def print_record(record: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{record['task']}: {record['run_dir']}", title_justify="left")
    table.add_column("metric")
    columns = [(name, record[name]) for name in ("last", "best") if name in record]
    if "test" in record:
        columns = [("test", {f"test/{k.split('/', 1)[1]}": v for k, v in record["test"].items()})]
    for name, _ in columns:
        monitor = ((record.get("config") or {}).get("callbacks") or {}).get("checkpoint", {}).get("monitor", "val/top1")
        table.add_column(name if name == "test" else "last epoch" if name == "last" else
                         f"best epoch ({record['best']['epoch'] + 1} of {record.get('epochs', '?')}, by {monitor})", justify="right")
    for split in ("val", "test"):
        for key in SHOWN:
            values = [metrics.get(f"{split}/{key}") for _, metrics in columns]
            if key == "loss" and values == [metrics.get(f"{split}/nll") for _, metrics in columns]:
                continue  # the loss of a plain classifier is its NLL: shown once
            if any(v is not None for v in values):
                table.add_row(_row_name(f"{split}/{key}"), *("-" if v is None else shown(key, v) for v in values))
    console.print(table)
    if record.get("wall_time_s") is not None:
        speed = record.get("train_samples_per_s")
        console.print(f"wall time {record['wall_time_s']:.1f} s" + (f", {speed:.0f} train samples/s" if speed else ""))


def print_comparison(record: dict, console: Console | None = None) -> None:
    """The quickstart table: teacher, scratch student, distilled student, fidelity (test set, last epoch)."""
    console = console or Console()
    last, scratch = record["last"], record["baseline"]["last"]
    method = ((record.get("config") or {}).get("kd") or {}).get("name", "KD")
    table = Table(title="test set, last epoch: top-1 %, teacher-student agreement %, KL(teacher || student)",
                  title_justify="left")
    for column in ("teacher", "scratch student", f"{method} student", "agreement", "KL"):
        table.add_column(column, justify="right")
    table.add_row(shown("teacher_top1", last["test/teacher_top1"]), shown("top1", scratch["test/top1"]),
                  shown("top1", last["test/top1"]), shown("agreement", last["test/agreement"]), shown("kl", last["test/kl"]))
    console.print(table)


def composed_run_line(cfg, experiment: str | None, folder, finished: bool) -> str:
    """What a run was composed from and where it lives, in one line (every CLI run prints it first).
    `experiment`: the chosen experiment or recipe, "none", or None when unknown (not composed by the CLI)."""
    parts = [str(cfg.task), f"experiment {experiment or '?'}", f"data {cfg.data.name}"]
    if cfg.task == "distill":
        parts += [f"teacher {teacher_description(cfg)}", f"student {cfg.student.name}", f"method {cfg.kd.name}"]
    else:
        parts.append(f"model {cfg.model.name}")
    if cfg.get("test_only"):
        parts.append(f"evaluates {cfg.get('ckpt')}")
    else:
        optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1]
        parts += [epochs(cfg.trainer.max_epochs), f"{optimizer} lr {cfg.optimizer.get('lr')}", *run_choices(cfg)]
    parts.append(f"run folder {folder}" + (" (finished before: its record; rerun=true trains again)" if finished else ""))
    return " | ".join(parts)


def run_choices(cfg) -> list[str]:
    """The other choices that change what a run computes, where they are not the defaults: the augmentation, a
    training subset, a teacher budget, scaled pre-training phases, a student started from a checkpoint, the
    scratch student trained beside it."""
    choices = []
    augment = (cfg.get("augment") or {}).get("name")
    if augment and augment != "none":
        choices.append(f"augment {augment}")
    if cfg.data.get("train_subset") is not None:
        choices.append(f"{cfg.data.train_subset} training examples")
    if cfg.get("task") == "distill":
        if cfg.teacher.get("budget") is not None:
            choices.append(f"teacher budget {cfg.teacher.budget}")
        if float(cfg.get("pre_training_scale", 1.0)) != 1.0:
            choices.append(f"pre-training phases x{cfg.pre_training_scale}")
        if cfg.get("student_init_checkpoint"):
            choices.append(f"student from {cfg.student_init_checkpoint}")
        if cfg.get("baseline"):
            choices.append("with a scratch student")
    return choices


def epochs(count) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def teacher_description(cfg) -> str:
    """e.g. "cnn1d (trained 40 epochs)", "ckpt_epoch_240.pth", "ensemble 3x resnet32x4 (trained 240 epochs)"."""
    teacher = cfg.teacher
    kind = str(teacher.kind)
    source = str(teacher.get("source") or "single") if kind == "cached" else kind
    given = teacher.get("checkpoint") if source == "single" else teacher.get("checkpoints")
    if given:
        described = str(given).rsplit("/", 1)[-1] if source == "single" else f"{len(given)} checkpoints"
    else:
        model = teacher.model.name
        if source == "ensemble":
            described = "+".join(teacher.models) if teacher.get("models") else f"{teacher.size}x {model}"
        elif source == "crossfit":
            described = f"{teacher.folds} folds x {model}"
        else:
            described = str(model)
        recipe = teacher.get("recipe") or {}
        recipe_epochs = (recipe.get("trainer") or {}).get("max_epochs")
        subset = (recipe.get("data") or {}).get("train_subset")
        described += f" (trained {epochs(recipe_epochs or cfg.trainer.max_epochs)}" + \
            (f" on {subset} examples)" if subset is not None else ")")
    return described if kind == "single" else f"{kind} {described}"

"""Short rich summaries printed at the end of a run."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

SHOWN = ("top1", "top5", "agreement", "kl", "ece", "nll", "cka_linear", "cka_rbf", "teacher_top1", "loss")


def _percent(key: str, value: float) -> str:
    return f"{value:.4f}" if key in ("kl", "loss", "nll", "cka_linear", "cka_rbf") else f"{100 * value:.2f}"


def print_record(record: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{record['task']}: {record['run_dir']}", title_justify="left")
    table.add_column("metric (% except kl, loss)")
    columns = [(name, record[name]) for name in ("last", "best") if name in record]
    if "test" in record:
        columns = [("test", {f"test/{k.split('/', 1)[1]}": v for k, v in record["test"].items()})]
    for name, _ in columns:
        table.add_column(name if name == "test" else f"{name} epoch" + (f" ({record['best']['epoch']})" if name == "best" else ""), justify="right")
    for split in ("val", "test"):
        for key in SHOWN:
            values = [metrics.get(f"{split}/{key}") for _, metrics in columns]
            if any(v is not None for v in values):
                table.add_row(f"{split}/{key}", *("-" if v is None else _percent(key, v) for v in values))
    console.print(table)
    if record.get("wall_time_s") is not None:
        speed = record.get("train_samples_per_s")
        console.print(f"wall time {record['wall_time_s']:.1f} s" + (f", {speed:.0f} train samples/s" if speed else ""))


def print_comparison(record: dict, console: Console | None = None) -> None:
    """The quickstart table: teacher, scratch student, KD student, fidelity (test set, last epoch)."""
    console = console or Console()
    last, scratch = record["last"], record["baseline"]["last"]
    table = Table(title="test set, last epoch: top-1 %, teacher-student agreement %, KL(teacher || student)",
                  title_justify="left")
    for column in ("teacher", "scratch student", "KD student", "agreement", "KL"):
        table.add_column(column, justify="right")
    table.add_row(f"{100 * last['test/teacher_top1']:.2f}", f"{100 * scratch['test/top1']:.2f}",
                  f"{100 * last['test/top1']:.2f}", f"{100 * last['test/agreement']:.2f}", f"{last['test/kl']:.4f}")
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
        parts += [epochs(cfg.trainer.max_epochs), f"{optimizer} lr {cfg.optimizer.get('lr')}"]
    parts.append(f"run folder {folder}" + (" (finished before: its record; rerun=true trains again)" if finished else ""))
    return " | ".join(parts)


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
        recipe_epochs = ((teacher.get("recipe") or {}).get("trainer") or {}).get("max_epochs")
        described += f" (trained {epochs(recipe_epochs or cfg.trainer.max_epochs)})"
    return described if kind == "single" else f"{kind} {described}"

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

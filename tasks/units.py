"""How a metric is shown, the same everywhere (progress bars, run summaries, tables, sweep tables): accuracy-like
metrics are stored as fractions and shown in percent; the others (kl, nll, cka_linear, cka_rbf, loss) as they are.
No torch here: the table scripts import it."""
from __future__ import annotations

PERCENT_METRICS = frozenset({"top1", "top5", "agreement", "teacher_top1", "ece"})


def shown_in_percent(metric: str) -> bool:
    """`val/top1`, `test/agreement`, `val_top1`, ... by the name after the last '/' (or '_' of a Ray name)."""
    name = metric.rsplit("/", 1)[-1]
    return name in PERCENT_METRICS or any(metric.endswith(f"_{unit}") for unit in PERCENT_METRICS)


def shown(metric: str, value: float, digits: int = 2) -> str:
    """`value` of `metric` as text: '93.75' for val/top1 = 0.9375, '0.1797' for val/kl."""
    return f"{100 * value:.{digits}f}" if shown_in_percent(metric) else f"{value:.{digits + 2}f}"

"""What a run shows on the console.

By default: one line saying what was composed (runs.summary.composed_run_line), one progress bar per fit and
the summary tables. Lightning's INFO lines (seeds, devices, "Restoring states from the checkpoint", its
logger advertisement), our own INFO lines and third-party deprecation warnings stay off the console; Hydra's
job log file still gets every log line. `verbose=true` shows everything. Errors are not affected.
"""
from __future__ import annotations

import logging
import warnings

QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


def configure_console(verbose: bool) -> None:
    """Call once at the start of an entry point, after Hydra has set up logging."""
    if verbose:
        return
    for category in QUIET_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    # Lightning's advice on sizes and workers ("smaller than the logging interval", "does not have many workers")
    from lightning_fabric.utilities.warnings import PossibleUserWarning
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for name in ("", *LIGHTNING_LOGGERS):  # "": the root logger, whose console handler Hydra installs
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)


def hide_evaluation_bars(trainer, verbose: bool) -> None:
    """Evaluation after a fit (last and best checkpoints, validation and test) runs without progress bars.
    The bar leaves the trainer rather than being disabled: a disabled rich bar still ends each evaluation
    with an empty line."""
    if not verbose:
        trainer.callbacks = [c for c in trainer.callbacks if c is not trainer.progress_bar_callback]


def fit_label(cfg) -> str:
    """What a fit trains, for its progress display: "student resnet8, kd=dkd" or the model's name."""
    if cfg.get("task") == "distill":
        return f"student {cfg.student.name}, kd={cfg.kd.name}"
    return str(cfg.model.name)


def label_progress(trainer, label: str) -> None:
    """The trainer's progress display names what it trains (tasks/callbacks.py: bar description, epoch lines)."""
    if hasattr(trainer.progress_bar_callback, "label"):
        trainer.progress_bar_callback.label = label


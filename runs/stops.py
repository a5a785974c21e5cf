"""Honest stops: a run stopped by a signal says so in one line, with the command that continues, and exits
non-zero (128 + the signal's number, the shell's convention: 143 for SIGTERM, 130 for SIGINT).

Lightning already turns the signals into stops at the next batch: on SIGTERM (what a scheduler sends before
it kills a job) its signal connector sets `trainer.received_sigterm` and the loops raise SIGTERMException, a
SystemExit without a status (a scheduler would count a success); on SIGINT (Ctrl-C) it catches the
KeyboardInterrupt and calls sys.exit(1). `trainer_stops` (around each Trainer call of a run) turns both into
errors.RunStopped, and `signals_stop_runs` (around the entry point) does the same for a SIGTERM that arrives
outside a Trainer, where Python's default would end the process without a word.

What a stopped run keeps: checkpoints are written only at the end of an epoch (and atomically,
runs/writing.py), so the resume point is the last finished epoch's `last.ckpt`, and resuming from it gives
exactly the unkilled run's result. Nothing is saved mid-epoch: Lightning restarts a non-stateful loader from
the epoch's start after a mid-epoch checkpoint, so that resume would not reproduce the unkilled run (the
unfinished epoch runs again instead). On Slurm, Lightning's own requeue on the pre-emption signal is kept
as it is (runs/plugins.py).
"""
from __future__ import annotations

import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from errors import RunStopped, find_user_error, user_message

SCRIPTS = {"train": "train.py", "distill": "distill_train.py"}
_in_trainer = False  # while a Trainer runs, Lightning's SIGTERM handler (which also calls ours) stops it


@contextmanager
def signals_stop_runs() -> Iterator[None]:
    """Around an entry point's run: SIGTERM, and Ctrl-C outside a Trainer, raise RunStopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def on_sigterm(signum, frame) -> None:
        if not _in_trainer:
            raise RunStopped(signum, "outside training (while the run was being prepared or recorded)")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        raise RunStopped(signal.SIGINT, "outside training (while the run was being prepared or recorded)") from None
    finally:
        for signum, handler in previous.items():  # Lightning leaves SIGINT ignored after a Ctrl-C
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def trainer_stops(trainer, what: str) -> Iterator[None]:
    """Around a Trainer call (fit, validate, test) of the run `what` (e.g. "train/<run>"): Lightning's stop on
    SIGTERM or SIGINT becomes RunStopped, naming where it stopped and the checkpoint it keeps."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from runs.folders import resume_point
    global _in_trainer
    _in_trainer = True
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as stop:
        if isinstance(stop, SIGTERMException):
            signum = signal.SIGTERM
        elif isinstance(stop, KeyboardInterrupt) or trainer.interrupted:  # Lightning's sys.exit(1) after Ctrl-C
            signum = signal.SIGINT
        else:
            raise
        where = (f"in epoch {trainer.current_epoch} of {what}" if trainer.state.fn == "fit"
                 else f"while evaluating {what}")
        kept = resume_point(Path(trainer.default_root_dir))
        raise RunStopped(signum, where, str(kept) if kept else None) from None
    finally:
        _in_trainer = False


def continue_command(cfg: DictConfig, argv: list[str] | None = None) -> str:
    """The command line that continues the run of `cfg` (an entry point's): the same overrides without
    resume/rerun, plus resume=true when its folder holds a checkpoint to continue from."""
    from runs.folders import resume_point, run_folder
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).name if argv and argv[0].endswith(".py") else SCRIPTS.get(str(cfg.get("task")), "train.py")
    kept = [a for a in argv[1:] if a.lstrip("+~").split("=", 1)[0] not in ("resume", "rerun")]
    if resume_point(run_folder(cfg)) is not None:
        kept.append("resume=true")
    return " ".join(["python", script, *map(shlex.quote, kept)])


def stopped_line(stop: RunStopped, cfg: DictConfig) -> str:
    """The one line a stopped run prints (a script that is no run: the signal alone)."""
    if not isinstance(cfg, DictConfig) or "task" not in cfg:
        return f"stopped by {stop.signal_name}; nothing was written"
    kept = (f"its last finished epoch is kept in {stop.kept}" if stop.kept
            else "no epoch of it had finished, so it starts again")
    return f"stopped by {stop.signal_name} {stop.where}; {kept}; continue with: {continue_command(cfg)}"


def exit_on_user_error(run, cfg):
    """Run `run(cfg)`; a UserError becomes one line on stderr and exit status 2 instead of a traceback; a
    signal that stops the run (SIGTERM, SIGINT) one line with the command that continues, and exit status
    128 + the signal's number (see the module's docstring)."""
    try:
        with signals_stop_runs():
            return run(cfg)
    except RunStopped as stop:
        print(stopped_line(stop, cfg), file=sys.stderr)
        sys.exit(128 + stop.signal_number)
    except Exception as error:  # noqa: BLE001 - re-raised unless it is the user's input
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_message(user_error)}", file=sys.stderr)
        sys.exit(2)

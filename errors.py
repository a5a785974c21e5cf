"""Errors caused by the user's input (config, files, data). The entry points print their message alone,
without a traceback: each already names the cause and the fix."""
from __future__ import annotations


class UserError(Exception):
    pass


class ConfigError(UserError, ValueError):
    pass


class RunStopped(Exception):
    """A run stopped by a signal (SIGTERM from a scheduler, SIGINT from Ctrl-C): not the user's input and no
    bug. The entry point prints one line with the command that continues (runs/stops.py) and exits with the
    shell's status for the signal, 128 + its number."""

    def __init__(self, signal_number: int, where: str, kept: str | None = None) -> None:
        import signal
        self.signal_number, self.where, self.kept = int(signal_number), where, kept  # kept: its resume checkpoint
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {self.signal_name} {where}")


def find_user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def user_message(error: UserError) -> str:
    """The error's message on one line; one raised in a DataLoader worker process comes back wrapped with the
    worker's traceback ("Caught X in DataLoader worker process N. Original Traceback ..."): its last line,
    "module.X: message", holds the message."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return one_line(text)


def one_line(text: object) -> str:
    """`text` on one line (a message quoting a library's multi-line error stays one line)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())

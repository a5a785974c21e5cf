"""Errors caused by the user's input (config, files, data). The entry points print their message alone,
without a traceback: each already names the cause and the fix."""
from __future__ import annotations


class UserError(Exception):
    pass


class ConfigError(UserError, ValueError):
    pass


def find_user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def one_line(text: object) -> str:
    """`text` on one line (a message quoting a library's multi-line error stays one line)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def exit_on_user_error(run, cfg):
    """Run `run(cfg)`; a UserError becomes one line on stderr and exit status 2 instead of a traceback."""
    import sys
    try:
        return run(cfg)
    except Exception as error:  # noqa: BLE001 - re-raised unless it is the user's input
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {one_line(user_error)}", file=sys.stderr)
        sys.exit(2)

"""Where a run writes, written safely.

- `write_atomically`: a file is written next to its final place (a hidden temporary file in the same folder,
  so on the same file system), flushed to disk, then renamed over the old one. A write that fails (a full
  disk, a kill) leaves the previous file as it was; a reader never sees half a file.
- checkpoints go through it too (runs/plugins.py `AtomicCheckpointIO`), and so do records.
- `output_folder_problem`: what stops a run from writing under a folder at all (a file in the way, no write
  permission, a nearly full disk), asked before anything is written (runs/preflight.py, runs/validation.py).

Light on imports (no torch at module level): the entry points' preflight uses it before Lightning loads.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from errors import UserError

# Below this much free space under paths.output_dir a run is refused before it starts: a checkpoint of a
# CIFAR ResNet with its optimizer state is tens of MB, and Hydra's log and the records need room too.
MIN_FREE_BYTES = 64 * 2 ** 20


class WriteError(UserError, OSError):
    """A file of the run could not be written; the previous version of it is intact."""


def _write_bytes(handle, data: bytes) -> None:
    """One write of the whole payload (a seam the full-disk test replaces with a failing write)."""
    handle.write(data)


def write_atomically(path: str | os.PathLike, data: bytes | Callable[[Any], None]) -> Path:
    """Write `data` (bytes, or a function writing to a binary file handle) to `path` through a temporary
    file in the same folder renamed into place; on failure the old `path` is untouched and the temporary file
    removed, and a WriteError names the file, the cause and that the previous version survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                _write_bytes(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
        raise WriteError(f"writing {path} failed ({error.strerror or error}); {kept}. Free space (or fix the "
                         f"folder) and run the same command again: an unfinished run continues with resume=true"
                         ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def output_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why nothing can be written under `folder` (which may not exist yet), or None."""
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"it would lie below {existing}, which is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} cannot be written to (read-only, or another user's)"
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        return (f"its disk has {free / 2 ** 20:.1f} MiB free (a run needs at least {MIN_FREE_BYTES // 2 ** 20} MiB "
                f"for its checkpoints and logs)")
    return None

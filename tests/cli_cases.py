"""Runs many command lines of the real entry points in one process (one Lightning import for all):

    python -m tests.cli_cases CASES.json RESULTS.json WATCHED_FOLDER

CASES.json is a list of [script, [arguments...]]; each runs as `python script arguments...` would (the script
executed as __main__ with sys.argv set), its exit status and stderr caught. RESULTS.json gets, per case, the
status, the stderr lines, and which files under WATCHED_FOLDER it changed, removed or added (Hydra's own log
folder and run-folder locks aside: they hold no result).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_RESULTS = ("hydra", ".locks")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (but NOT_RESULTS) -> the digest of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.relative_to(folder).parts[0] not in NOT_RESULTS}


def run_case(script: str, arguments: list[str]) -> tuple[object, str]:
    stderr = io.StringIO()
    sys.argv = [str(ROOT / script), *arguments]
    status: object = 0
    with contextlib.redirect_stderr(stderr):
        try:
            runpy.run_path(str(ROOT / script), run_name="__main__")
        except SystemExit as stop:
            status = stop.code
        except BaseException as error:  # noqa: BLE001 - reported to the test, which fails on it
            status = f"raised {type(error).__name__}: {error}"
    return status, stderr.getvalue()


def main(cases_path: str, results_path: str, watched: str) -> None:
    folder = Path(watched)
    results = []
    for script, arguments in json.loads(Path(cases_path).read_text()):
        before, started = snapshot(folder), time.perf_counter()
        status, stderr = run_case(script, arguments)
        seconds, after = time.perf_counter() - started, snapshot(folder)
        results.append({"status": status, "seconds": round(seconds, 2),
                        "stderr": [line for line in stderr.splitlines() if line.strip()],
                        "changed": sorted(k for k in before if after.get(k) != before[k]),
                        "added": sorted(set(after) - set(before))})
    Path(results_path).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The run record: one JSON file (record.json) per finished run, beside its checkpoints. This module owns
its format (file name, the aside mark of superseded folders) and both writes and reads it.

A record is what runs/training.py writes when a run finishes: {"task", "run_dir", "seed", "config" (the resolved
config), "last" and "best" (metric dicts such as "test/top1", "test/teacher_top1"; "best" adds "epoch"), ...}.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import UserError
from runs.writing import write_atomically

# The record format: one JSON file per finished run, in its run folder.
RECORD_NAME = "record.json"
# Folders that rerun=true moved aside (<run>.old-<time>): superseded runs, kept and never counted.
ASIDE_MARK = ".old-"


class RecordsError(UserError, ValueError):
    pass


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Record:
    path: str  # where it was read from (for messages); "<file> (baseline)" for an embedded baseline
    data: dict
    is_baseline: bool = False

    @property
    def run_dir(self) -> str | None:
        return self.data.get("run_dir")

    @property
    def seed(self) -> Any:
        return self.data.get("seed", self.data.get("config", {}).get("seed"))

    def metric(self, epoch: str, name: str) -> float | None:
        value = (self.data.get(epoch) or {}).get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            value = repr(value)  # a list, a dict, true/false: not a number, refused below
        try:
            return float(value)
        except ValueError:
            raise RecordsError(f"{self.path}: its '{epoch}' metric {name} is {value!r}, not a number; fix that record "
                               f"(or move it out of the folder, or leave it out with --filter)") from None


# ----------------------------------------------------------------------------------------------- loading
def load_records(folder: Path | str, pattern: str = RECORD_NAME, baselines: bool = False) -> list[Record]:
    """Every run record under `folder` (recursively, files named `pattern`), skipping unreadable ones with a
    warning. With `baselines`, a distillation record's embedded from-scratch student (baseline=true) is
    added as a train record (see `baseline_record`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordsError(f"{folder} is not a folder; give the folder that holds the runs' {pattern} files "
                           f"(runs write them into outputs/<train|distill>/<run>/)")
    paths = sorted(p for p in folder.rglob(pattern) if p.is_file() and not any(ASIDE_MARK in part for part in p.parts))
    if not paths:
        raise RecordsError(f"no {pattern} under {folder}; point at a folder of finished runs (e.g. outputs/distill), "
                           f"or pass --pattern for records saved under another name (results/quickstart: "
                           f"--pattern 'seed*.json')")
    records = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            warn(f"skipping {path}: not readable JSON ({error})")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            warn(f"skipping {path}: not a run record (no 'config' section)")
            continue
        records.append(Record(str(path), data))
        if baselines and isinstance(data.get("baseline"), dict):
            records.append(baseline_record(records[-1]))
    if not records:
        raise RecordsError(f"none of the {len(paths)} {pattern} files under {folder} is a run record (see the "
                           f"warnings above)")
    return records


def baseline_record(record: Record) -> Record:
    """The from-scratch student embedded in a distillation record, as a train record. It keeps the
    distillation run's config (so it keys into that run's teacher -> student column) with the student as
    `model` and no `kd` (so its row is "-"); the same baseline embedded in several records is one run,
    counted once per table cell (cells deduplicate by run_dir)."""
    baseline = record.data["baseline"]
    config = copy.deepcopy(record.data["config"])
    config.pop("kd", None)
    config["task"] = "train"
    if "student" in config:
        config["model"] = config["student"]
    data = {"task": "train", "run_dir": baseline.get("run_dir"), "seed": record.seed, "config": config,
            "last": baseline.get("last") or {}, "best": baseline.get("best") or {}}
    return Record(f"{record.path} (baseline)", data, is_baseline=True)


def aside_folder(folder: Path) -> Path:
    """Where rerun=true moves a superseded run folder (kept, never deleted, never counted in tables)."""
    return folder.with_name(f"{folder.name}{ASIDE_MARK}{time.strftime('%Y%m%d-%H%M%S')}")


def read_record(folder: Path) -> dict | None:
    path = folder / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(folder: Path, record: dict) -> Path:
    # atomic (renamed into place from its own folder): a record exists only for a finished run, and a failed
    # write (a full disk) keeps the previous one
    return write_atomically(folder / RECORD_NAME, json.dumps(record, indent=2, sort_keys=False, default=str).encode())

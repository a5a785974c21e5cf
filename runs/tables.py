"""Summarising run records over seeds: keys, labels, filters, means and spreads, Markdown; shared by
make_table.py, plots.py and quickstart_seeds.py.

Records are grouped by *keys*: dotted paths into the record's config (`kd.name`, `teacher.model.name`).
- `a|b` takes the first of the alternatives that the record has (`student.name|model.name` names the student
  of a distillation run and the model of a train run alike);
- a key the config lacks is looked up in the record itself (`task`, `teacher_model`, `epochs`);
- a key found in neither gives the label "-" (a train run has no `kd.name`: it gets the row "-", which
  `--label "-=scratch"` renames).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from runs.records import RECORD_NAME, Record, RecordsError, warn
from tasks.units import shown_in_percent

MISSING = "-"
AXIS_JOIN = " → "
EPOCHS = ("last", "best")
EPOCH_TITLES = {"last": "last epoch", "best": "best-on-validation epoch"}
TEACHER_METRIC = "test/teacher_top1"


# ----------------------------------------------------------------------------------------------- keys
def parse_keys(text: str | Sequence[str] | None) -> list[str]:
    """'kd.name,teacher.kind' -> ['kd.name', 'teacher.kind'] (also accepts a list of such strings)."""
    if text is None:
        return []
    parts = [text] if isinstance(text, str) else list(text)
    keys = [key.strip() for part in parts for key in part.split(",") if key.strip()]
    for key in keys:
        if any(not alternative.strip() for alternative in key.split("|")):
            raise RecordsError(f"config key '{key}' has an empty part; write dotted paths like kd.name or "
                               f"alternatives like student.name|model.name")
    return keys


def _lookup(tree: Any, path: str) -> tuple[bool, Any]:
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def format_value(value: Any) -> str:
    """A config value as a label, written as in YAML overrides so filters read naturally."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(item) for item in value)
    return str(value)


def config_value(record: Record, key: str) -> str:
    """The label of `key` (see the module docstring) for this record; "-" where it has none."""
    for alternative in key.split("|"):
        alternative = alternative.strip()
        for tree in (record.data.get("config", {}), record.data):
            found, value = _lookup(tree, alternative)
            if found:
                if isinstance(value, dict):
                    inner = ", ".join(f"{alternative}.{k}" for k in list(value)[:6])
                    raise RecordsError(f"'{alternative}' is a config section, not a value; use one of its keys "
                                       f"({inner}, ...)")
                return format_value(value)
    return MISSING


def _config_keys(tree: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the leaves of `tree`."""
    keys = []
    for key, value in tree.items():
        keys += _config_keys(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return keys


def check_axis_keys(records: Sequence[Record], keys: Sequence[str], option: str) -> None:
    """A key of an axis (`option`, e.g. --rows) that no selected record has gets one warning line naming the
    nearest keys the records have: every label on that axis is "-" (as for train runs, which have no kd)."""
    for key in keys:
        if any(config_value(record, key) != MISSING for record in records):
            continue
        trees = [tree for record in records for tree in
                 (record.data.get("config", {}), {k: v for k, v in record.data.items() if k != "config"})]
        known = sorted({k for tree in trees for k in _config_keys(tree)})
        nearest = difflib.get_close_matches(key.split("|")[-1].strip(), known, n=3, cutoff=0.6)
        warn(f"{option} {key}: no selected record has this config key, so its labels are all '-'"
             + (f"; did you mean {' or '.join(nearest)}?" if nearest else "")
             + " (keys are dotted paths into record.json's config, e.g. kd.name, student.name)")


def check_out(prefix: Path | None) -> None:
    """--out PREFIX can be written (before any work): not below a file, in a folder that takes files."""
    from runs.writing import output_folder_problem
    if prefix is None:
        return
    problem = output_folder_problem(Path(prefix).absolute().parent)
    if problem:
        raise RecordsError(f"--out {prefix}: nothing can be written there ({problem}); give a PREFIX in a folder you "
                           f"can write to, e.g. --out results/table")


def axis_label(record: Record, keys: Sequence[str], join: str = AXIS_JOIN) -> str:
    """The values of several keys joined, e.g. 'resnet32x4 → resnet8x4'."""
    return join.join(config_value(record, key) for key in keys)


def parse_labels(texts: Iterable[str] | None) -> dict[str, str]:
    """--label OLD=NEW renames a row, column, group or x label (the whole label as shown, e.g. '-=scratch')."""
    renames = {}
    for text in texts or []:
        old, sep, new = text.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise RecordsError(f"--label '{text}' is not OLD=NEW; write e.g. --label '-=scratch' or "
                               f"--label 'crossfit / kd_mse_gamma=Enhanced KD'")
        renames[old.strip()] = new.strip()
    return renames


# ----------------------------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filter:
    key: str
    allowed: tuple[str, ...]
    negated: bool
    text: str

    def matches(self, record: Record) -> bool:
        value = config_value(record, self.key)
        hit = any(_same_value(value, allowed) for allowed in self.allowed)
        return hit != self.negated


def _same_value(value: str, wanted: str) -> bool:
    if value == wanted:
        return True
    try:  # 4 matches 4.0 (temperatures, weights)
        return math.isclose(float(value), float(wanted))
    except ValueError:
        return False


def parse_filters(texts: Iterable[str] | None) -> list[Filter]:
    """--filter KEY=VALUE (VALUE may list alternatives: kd.name=kd,dkd) or KEY!=VALUE."""
    filters = []
    for text in texts or []:
        negated = "!=" in text
        key, sep, values = text.partition("!=" if negated else "=")
        allowed = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not key.strip() or not allowed:
            raise RecordsError(f"--filter '{text}' is not KEY=VALUE; write e.g. --filter kd.name=kd, "
                               f"--filter kd.name=kd,dkd or --filter teacher.kind!=crossfit")
        parse_keys(key)
        filters.append(Filter(key.strip(), allowed, negated, text))
    return filters


def select(records: list[Record], filters: Sequence[Filter]) -> list[Record]:
    """The records every filter keeps; one that keeps none is an error that lists the values seen."""
    for item in filters:
        kept = [record for record in records if item.matches(record)]
        if not kept:
            seen = sorted({config_value(record, item.key) for record in records}, key=natural_key)
            raise RecordsError(f"--filter {item.text} keeps no record; {item.key} takes the values {seen} "
                               f"in the {len(records)} records left")
        records = kept
    return records


# ----------------------------------------------------------------------------------------------- metrics
def is_percent(metric: str) -> bool:
    return shown_in_percent(metric)


def shown_value(metric: str, value: float) -> float:
    return 100.0 * value if is_percent(metric) else value


def metric_title(metric: str) -> str:
    return f"{metric} (%)" if is_percent(metric) else metric


def with_metric(records: Sequence[Record], epoch: str, metrics: Sequence[str]) -> list[Record]:
    """The records that have every one of `metrics` at `epoch`. Where some do and others do not, one warning
    says how many were skipped and why (where none do, the caller stops with the metrics there are)."""
    kept, skipped = [], []
    for record in records:
        (kept if all(record.metric(epoch, m) is not None for m in metrics) else skipped).append(record)
    if kept and skipped:
        example = skipped[0]
        section = example.data.get(epoch)
        why = (f"no {', '.join(metrics)} in their '{epoch}' metrics" if isinstance(section, dict) else
               f"no '{epoch}' metrics" + (" (test_only records have 'test' only)" if "test" in example.data else ""))
        warn(f"skipping {len(skipped)} of {len(records)} records: {why} (e.g. {example.path})")
    return kept


def teacher_accuracies(records: list[Record], epoch: str, metric: str = TEACHER_METRIC) -> list[float]:
    """Teacher test top-1 % of these runs (or another split's: `metric`), one value per teacher (identified
    by its training run or checkpoint): runs that share a teacher (several KD methods on one trained teacher)
    would otherwise weigh it several times and shrink its error bar."""
    by_teacher = {}
    for record in records:
        value = record.metric(epoch, metric)
        if value is None:
            continue
        teacher = record.data.get("teacher_run") or record.data.get("teacher_checkpoint") or record.path
        by_teacher.setdefault(str(teacher), 100.0 * value)
    return list(by_teacher.values())


def mean_and_spread(values: Sequence[float], error: str = "std") -> tuple[float, float]:
    """(mean, sample std with ddof=1) or (mean, standard error = std / sqrt(n)); the spread of one value is
    nan (unknown, not zero)."""
    if error not in ("std", "se"):
        raise RecordsError(f"error bars '{error}' are not one of ['std', 'se']")
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("no values")
    if array.size == 1:
        return float(array[0]), float("nan")
    std = float(np.std(array, ddof=1))
    return float(np.mean(array)), std / math.sqrt(array.size) if error == "se" else std


def format_mean_std(values: Sequence[float], digits: int = 2, pm: str = " ± ",
                    single_as_zero_spread: bool = False) -> str:
    """'72.00 ± 2.00' (mean ± sample std); a single value shows its mean alone ('72.00'), or '72.00 ± 0.00'
    with `single_as_zero_spread` (quickstart_seeds.py's table)."""
    mean, spread = mean_and_spread(values)
    if math.isnan(spread):
        if not single_as_zero_spread:
            return f"{mean:.{digits}f}"
        spread = 0.0
    return f"{mean:.{digits}f}{pm}{spread:.{digits}f}"


# ----------------------------------------------------------------------------------------------- grouping
def natural_key(text: str) -> tuple:
    """Sorts resnet8 < resnet14 < resnet110 (numbers by value) and '-' (missing) last."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return (text == MISSING, [(0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p])


def ordered(labels: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """Labels in `order` first (as given), then the rest in natural order. A label in `order` that no record
    has is an error listing the ones there are."""
    labels = set(labels)
    order = list(order or [])
    unknown = [label for label in order if label not in labels]
    if unknown:
        raise RecordsError(f"the order names {unknown}, which no selected record has; the labels are "
                           f"{sorted(labels, key=natural_key)}")
    return order + sorted(labels - set(order), key=natural_key)


def parse_order(text: str | None) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()] if text else []


def unique_runs(records: Sequence[Record]) -> list[Record]:
    """One record per run: a run found twice (the same baseline embedded in several distillation records,
    or a record copied into two folders) counts once. Copies other than baselines are reported."""
    kept, seen = [], {}
    for record in records:
        run = record.run_dir
        if run is None or run not in seen:
            if run is not None:
                seen[run] = record
            kept.append(record)
        elif not record.is_baseline:
            warn(f"{record.path} and {seen[run].path} are the same run ({run}); counting it once")
    return kept


# Config keys that differ between runs of one experiment without making them different experiments.
NOT_A_DIFFERENCE = ("run_dir", "run_name", "paths", "seed", "data.seed", "hydra", "logger", "callbacks", "published")
_warned_differences: set[tuple[str, ...]] = set()


def differing_keys(records: Sequence[Record]) -> list[str]:
    """Dotted config keys whose values differ among these records (run-specific ones aside)."""
    def flat(tree: Any, prefix: str = "") -> dict[str, str]:
        if not isinstance(tree, dict):
            return {prefix: format_value(tree)}
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()} \
            if tree else {prefix: "{}"}
    views = [{k.rstrip("."): v for k, v in flat(record.data.get("config", {})).items()} for record in records]
    keys = sorted({key for view in views for key in view})
    differing = [key for key in keys if len({view.get(key, MISSING) for view in views}) > 1]
    return [key for key in differing if not any(key == n or key.startswith(f"{n}.") for n in NOT_A_DIFFERENCE)]


def check_seeds(records: Sequence[Record], where: str) -> None:
    """Warns when one cell or point averages several runs of the same seed: they differ in config values that
    the grouping ignores, which the warning names (once per set of such keys, however many cells share it)."""
    seeds = [record.seed for record in records]
    if len(set(seeds)) == len(seeds):
        return
    keys = tuple(differing_keys(records)[:6])
    if keys in _warned_differences:
        return
    _warned_differences.add(keys)
    named = f"they differ in {', '.join(keys)}" if keys else "their configs are the same (the same run copied?)"
    warn(f"{where} averages {len(records)} runs of repeated seeds: {named}; add such keys to the grouping or select "
         f"with --filter (cells that differ in the same keys are not warned about again)")


def shown_label(record: Record, keys: Sequence[str], renames: dict[str, str] | None = None,
                join: str = AXIS_JOIN) -> str:
    """The record's label on an axis after --label renames ("" when the axis has no keys)."""
    label = axis_label(record, keys, join) if keys else ""
    return (renames or {}).get(label, label)


def group_by(records: Sequence[Record], keys: Sequence[str], renames: dict[str, str] | None = None,
             join: str = AXIS_JOIN) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(shown_label(record, keys, renames, join), []).append(record)
    return groups


# ----------------------------------------------------------------------------------------------- rendering
def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def add_selection_arguments(parser, join: str, labels_what: str) -> None:
    """The options make_table.py and plots.py share: which records, how their labels read."""
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="keep records whose KEY is VALUE (KEY=A,B: any of them; KEY!=VALUE: not it); repeatable")
    parser.add_argument("--label", action="append", default=[], metavar="OLD=NEW",
                        help=f"rename {labels_what} label, e.g. '-=scratch'; repeatable")
    parser.add_argument("--join", default=join, help=f"joins the values of several keys in a label (default '{join}')")
    parser.add_argument("--pattern", default=RECORD_NAME, help="record file name or glob (default record.json)")
    parser.add_argument("--baselines", action="store_true",
                        help="add each distillation record's embedded from-scratch student as a train run")


def attach_dash_values(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """['--label', '-=scratch'] -> ['--label=-=scratch']: argparse would read a value that starts with '-'
    (the label of a missing key) as an option."""
    argv, joined = list(argv), []
    while argv:
        item = argv.pop(0)
        if item in options and argv and argv[0].startswith("-") and "=" in argv[0]:
            item = f"{item}={argv.pop(0)}"
        joined.append(item)
    return joined


def exit_on_error(main, argv):
    """Runs main(argv); bad input becomes one line on stderr and exit status 2 (as in the entry points)."""
    from runs.stops import exit_on_user_error
    return exit_on_user_error(main, argv)

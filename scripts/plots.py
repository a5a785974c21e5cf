"""Paper-style figures from a folder of run records, written as PREFIX.png and PREFIX.pdf.

    python scripts/plots.py capacity FOLDER --out PREFIX [--x teacher.model.name] [--x-order A,B,...]
        [--group teacher.kind,kd.name] [--metric test/top1] [--teacher] [--teacher-group teacher.kind]
    python scripts/plots.py fidelity FOLDER --out PREFIX [--group kd.name] [--mean]
        [--accuracy test/top1] [--agreement test/agreement] [--kl test/kl]
    python scripts/plots.py methods FOLDER --out PREFIX [--rows kd.name] [--group KEYS] [--metric test/top1]
        [--order A,B,...] [--from-zero]

Common options: --epoch last|best (default last), --filter KEY=VALUE (repeatable; KEY=A,B or KEY!=VALUE),
--label OLD=NEW (renames an x, row or group label; repeatable), --error std|se, --title, --pattern,
--baselines (see make_table.py; keys and record selection work as there).

- capacity: the metric against teacher capacity (semiparametric KD's figure: student accuracy against
  teacher depth for KD, cross-fit KD and enhanced KD). x is any config key, in natural order (resnet8 <
  resnet14 < resnet110) unless --x-order says otherwise (numbers are spaced by value); one line per
  --group label (several keys join as "crossfit / kd_mse_gamma"); error bars are the standard error over
  seeds by default. --teacher adds the teachers' own test top-1 as dashed lines, one per --teacher-group label.
- fidelity: the student's agreement with its teacher (left) and KL(teacher || student) (right) against the
  student's accuracy ("Does KD really work?"): one point per run, or with --mean one point per group at the
  group's mean with error bars on both axes.
- methods: one bar per --rows label with mean ± std over seeds (default), side by side per --group label.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (and no display on servers)
import matplotlib.pyplot as plt
import numpy as np


from runs.records import Record, RecordsError, load_records
from runs.tables import (add_selection_arguments, attach_dash_values, check_seeds, EPOCH_TITLES, EPOCHS,
                        exit_on_error, group_by, is_percent, mean_and_spread, metric_title, ordered,
                        parse_filters, parse_keys, parse_labels, parse_order, select, shown_label,
                        shown_value, teacher_accuracies, TEACHER_METRIC, unique_runs, with_metric)

JOIN = " / "  # several keys' values on one axis: "crossfit / kd" reads better in a legend than an arrow


# ----------------------------------------------------------------------------------------------- helpers
def summary(records: list[Record], epoch: str, metric: str, error: str, where: str | None) -> tuple[float, float]:
    """(mean, error bar) of the metric over the runs; one run gets no bar (0). `where` names the point in
    the warning about repeated seeds (None: already checked)."""
    records = unique_runs(records)
    if where is not None:
        check_seeds(records, where)
    mean, spread = mean_and_spread([shown_value(metric, r.metric(epoch, metric)) for r in records], error)
    return mean, 0.0 if math.isnan(spread) else spread


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def x_positions(labels: set[str], order: list[str]) -> tuple[list[str], dict[str, float], bool]:
    """Labels in order and their positions: numbers at their value (unless an order is given), other
    labels evenly spaced."""
    labels_in_order = ordered(labels, order)
    numeric = not order and all(is_number(label) for label in labels_in_order)
    return labels_in_order, {label: float(label) if numeric else float(i)
                             for i, label in enumerate(labels_in_order)}, numeric


def crowded(labels: list[str], width_inches: float) -> bool:
    """Whether horizontal tick labels would run into each other (about 14 characters fit per inch)."""
    return len(labels) * max((len(label) for label in labels), default=0) > 14 * width_inches * 0.8


def save(fig, prefix: Path) -> list[Path]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = prefix.with_name(prefix.name + suffix)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
        print(f"wrote {path}", file=sys.stderr)
    plt.close(fig)
    return paths


def title(args: argparse.Namespace, default: str) -> str:
    return args.title if args.title is not None else f"{default}, {EPOCH_TITLES[args.epoch]}"


# ----------------------------------------------------------------------------------------------- capacity
def plot_capacity(records: list[Record], args: argparse.Namespace) -> list[Path]:
    renames = parse_labels(args.label)
    x_keys, group_keys = parse_keys(args.x), parse_keys(args.group)
    if not x_keys:
        raise RecordsError("--x needs a config key, e.g. --x teacher.model.name")
    if args.teacher and not is_percent(args.metric):
        raise RecordsError(f"--teacher draws the teachers' top-1 %, which does not share an axis with "
                           f"{args.metric}; drop --teacher or plot an accuracy (--metric test/top1)")
    usable = with_metric(records, args.epoch, [args.metric])
    if not usable:
        raise RecordsError(f"no selected record has {args.metric} at the {args.epoch} epoch")

    def x_of(record: Record) -> str:
        return shown_label(record, x_keys, renames, args.join)

    labels, position, numeric = x_positions({x_of(r) for r in usable}, parse_order(args.x_order))
    groups = group_by(usable, group_keys, renames, args.join)
    names = ordered(groups, parse_order(args.group_order))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    # Categorical x: nudge the groups apart so their error bars do not hide each other.
    dodge = 0.0 if numeric or len(names) == 1 else 0.08
    for index, name in enumerate(names):
        by_x = {}
        for record in groups[name]:
            by_x.setdefault(x_of(record), []).append(record)
        xs = [x for x in labels if x in by_x]
        stats = [summary(by_x[x], args.epoch, args.metric, args.error, f"{name} at {x}") for x in xs]
        offset = dodge * (index - (len(names) - 1) / 2)
        ax.errorbar([position[x] + offset for x in xs], [m for m, _ in stats], yerr=[e for _, e in stats],
                    marker="o", capsize=3, label=name or args.metric)
    if args.teacher:
        teacher_groups = group_by(usable, parse_keys(args.teacher_group), renames, args.join)
        for name in ordered(teacher_groups):
            by_x = {}
            for record in teacher_groups[name]:
                by_x.setdefault(x_of(record), []).append(record)
            points = [(x, teacher_accuracies(by_x[x], args.epoch)) for x in labels if x in by_x]
            points = [(x, mean_and_spread(values, args.error)) for x, values in points if values]
            if not points:
                raise RecordsError(f"--teacher: no record has {TEACHER_METRIC} (train runs have no teacher)")
            ax.errorbar([position[x] for x, _ in points], [m for _, (m, _) in points],
                        yerr=[0.0 if math.isnan(e) else e for _, (_, e) in points], linestyle="--",
                        marker=".", capsize=2, color="0.4" if len(teacher_groups) == 1 else None,
                        label="teacher" + (f" ({name})" if name and len(teacher_groups) > 1 else ""))
    if not numeric:
        slanted = crowded(labels, fig.get_figwidth())
        ax.set_xticks([position[x] for x in labels], labels, rotation=30 if slanted else 0,
                      ha="right" if slanted else "center")
    ax.set_xlabel(args.x_title or ", ".join(x_keys))
    ax.set_ylabel(metric_title(args.metric))
    ax.set_title(title(args, f"{args.metric} against {', '.join(x_keys)}"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=f"± {'s.e.' if args.error == 'se' else 'std'} over seeds", title_fontsize=8)
    return save(fig, args.out)


# ----------------------------------------------------------------------------------------------- fidelity
def plot_fidelity(records: list[Record], args: argparse.Namespace) -> list[Path]:
    renames = parse_labels(args.label)
    metrics = [args.accuracy, args.agreement, args.kl]
    usable = with_metric(records, args.epoch, metrics)
    if not usable:
        raise RecordsError(f"no selected record has all of {metrics} at the {args.epoch} epoch (train runs "
                           f"have no fidelity metrics)")
    groups = group_by(usable, parse_keys(args.group), renames, args.join)
    names = ordered(groups, parse_order(args.group_order))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, name in enumerate(names):
        members = unique_runs(groups[name])
        color = colors[index % len(colors)]
        if args.mean:
            check_seeds(members, f"group {name}")
        for ax, fidelity in zip(axes, (args.agreement, args.kl)):
            if args.mean:
                x, x_error = summary(members, args.epoch, args.accuracy, args.error, None)
                y, y_error = summary(members, args.epoch, fidelity, args.error, None)
                ax.errorbar([x], [y], xerr=[x_error], yerr=[y_error], marker="o", capsize=3, color=color,
                            label=f"{name} (n={len(members)})" if name else f"n={len(members)}")
            else:
                ax.scatter([shown_value(args.accuracy, r.metric(args.epoch, args.accuracy)) for r in members],
                           [shown_value(fidelity, r.metric(args.epoch, fidelity)) for r in members],
                           color=color, alpha=0.8, label=name or None)
    for ax, fidelity in zip(axes, (args.agreement, args.kl)):
        ax.set_xlabel(f"student {metric_title(args.accuracy)}")
        ax.set_ylabel(metric_title(fidelity))
        ax.grid(alpha=0.3)
    if len(names) > 1 or args.mean:
        axes[0].legend(fontsize=8)
    fig.suptitle(title(args, "student fidelity against accuracy"), fontsize=10)
    return save(fig, args.out)


# ----------------------------------------------------------------------------------------------- methods
def plot_methods(records: list[Record], args: argparse.Namespace) -> list[Path]:
    renames = parse_labels(args.label)
    row_keys, group_keys = parse_keys(args.rows), parse_keys(args.group)
    if not row_keys:
        raise RecordsError("--rows needs a config key, e.g. --rows kd.name")
    usable = with_metric(records, args.epoch, [args.metric])
    if not usable:
        raise RecordsError(f"no selected record has {args.metric} at the {args.epoch} epoch")
    rows = group_by(usable, row_keys, renames, args.join)
    row_names = ordered(rows, parse_order(args.order))
    group_names = ordered(group_by(usable, group_keys, renames, args.join), parse_order(args.group_order))
    width = 0.8 / len(group_names)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(row_names) * len(group_names) + 1.5), 4.2),
                           layout="constrained")
    low, high = [], []
    for g, group in enumerate(group_names):
        xs, means, errors = [], [], []
        for r, row in enumerate(row_names):
            members = [rec for rec in rows[row] if shown_label(rec, group_keys, renames, args.join) == group]
            if members:
                mean, error = summary(members, args.epoch, args.metric, args.error, f"bar ({row}, {group})")
                xs.append(r + (g - (len(group_names) - 1) / 2) * width)
                means.append(mean)
                errors.append(error)
        ax.bar(xs, means, width=width * 0.95, yerr=errors, capsize=3, label=group or None)
        low += [m - e for m, e in zip(means, errors)]
        high += [m + e for m, e in zip(means, errors)]
    # KD methods differ by a point or two: start the axis just below the lowest bar unless asked not to.
    if not args.from_zero and low and min(low) > 0:
        span = max(high) - min(low) or abs(max(high)) or 1.0
        ax.set_ylim(max(0.0, min(low) - 0.25 * span), max(high) + 0.1 * span)
    slanted = crowded(row_names, fig.get_figwidth())
    ax.set_xticks(np.arange(len(row_names)), row_names, rotation=30 if slanted else 0,
                  ha="right" if slanted else "center")
    ax.set_ylabel(f"{metric_title(args.metric)}, mean ± {'s.e.' if args.error == 'se' else 'std'}")
    ax.set_title(title(args, f"{args.metric} by {', '.join(row_keys)}"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if group_keys:
        ax.legend(fontsize=8, title=", ".join(group_keys), title_fontsize=8)
    return save(fig, args.out)


# ----------------------------------------------------------------------------------------------- CLI
PLOTS = {"capacity": plot_capacity, "fidelity": plot_fidelity, "methods": plot_methods}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("folder", type=Path, help="folder searched recursively for run records")
    common.add_argument("--out", type=Path, required=True, metavar="PREFIX", help="writes PREFIX.png and PREFIX.pdf")
    common.add_argument("--epoch", choices=EPOCHS, default="last", help="last or best-on-validation epoch")
    add_selection_arguments(common, JOIN, "an x, row or group")
    common.add_argument("--group-order", help="group labels in this order (comma-separated; the rest follow)")
    common.add_argument("--title", help="figure title (default: what is plotted and the epoch)")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="plot", required=True, metavar="{capacity,fidelity,methods}")

    capacity = commands.add_parser("capacity", parents=[common], help="metric against teacher capacity")
    capacity.add_argument("--x", default="teacher.model.name", help="config key(s) of the x axis")
    capacity.add_argument("--x-order", help="x labels in this order (comma-separated; the rest follow)")
    capacity.add_argument("--x-title", help="x axis title (default: the key)")
    capacity.add_argument("--group", default="teacher.kind,kd.name", help="config key(s): one line per label")
    capacity.add_argument("--metric", default="test/top1")
    capacity.add_argument("--error", choices=["se", "std"], default="se", help="error bars (default se)")
    capacity.add_argument("--teacher", action="store_true", help="add the teachers' test top-1 (dashed)")
    capacity.add_argument("--teacher-group", default="teacher.kind", help="config key(s): one teacher line per label")

    fidelity = commands.add_parser("fidelity", parents=[common], help="agreement and KL against accuracy")
    fidelity.add_argument("--group", default="kd.name", help="config key(s): one colour per label")
    fidelity.add_argument("--mean", action="store_true", help="one point per group (mean, error bars)")
    fidelity.add_argument("--error", choices=["se", "std"], default="se", help="error bars with --mean (default se)")
    fidelity.add_argument("--accuracy", default="test/top1")
    fidelity.add_argument("--agreement", default="test/agreement")
    fidelity.add_argument("--kl", default="test/kl")

    methods = commands.add_parser("methods", parents=[common], help="bar chart of a metric per method")
    methods.add_argument("--rows", default="kd.name", help="config key(s): one bar per label")
    methods.add_argument("--group", default="", help="config key(s): bars side by side per label")
    methods.add_argument("--order", help="row labels in this order (comma-separated; the rest follow)")
    methods.add_argument("--metric", default="test/top1")
    methods.add_argument("--error", choices=["se", "std"], default="std", help="error bars (default std)")
    methods.add_argument("--from-zero", action="store_true", help="start the y axis at 0")
    return parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv, ("--label", "--filter")))


def run(args: argparse.Namespace) -> list[Path]:
    records = select(load_records(args.folder, args.pattern, args.baselines), parse_filters(args.filter))
    return PLOTS[args.plot](records, args)


def main(argv: list[str] | None = None) -> list[Path]:
    return exit_on_error(run, parse_args(argv))


if __name__ == "__main__":
    main()

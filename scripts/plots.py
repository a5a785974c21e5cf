"""Paper-style figures from a folder of run records, written as PREFIX.png and PREFIX.pdf.

    python scripts/plots.py capacity FOLDER --out PREFIX [--x teacher.model.name] [--x-order A,B,...]
        [--group teacher.kind,kd.name] [--metric test/top1] [--teacher] [--teacher-group teacher.kind]
    python scripts/plots.py fidelity FOLDER --out PREFIX [--group kd.name] [--mean]
        [--accuracy test/top1] [--agreement test/agreement] [--kl test/kl]
    python scripts/plots.py methods FOLDER --out PREFIX [--rows kd.name] [--group KEYS] [--metric test/top1]
        [--order A,B,...] [--sort mean|name] [--scratch ROW] [--from-zero]

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
- methods: one bar per --rows label with mean ± std over seeds (default), side by side per --group label,
  best first (--sort name: natural order). The student from scratch is a dashed line with its ± band, not a
  bar: the train runs among the records (train.py's student, or --baselines' embedded ones), or the row
  --scratch names (e.g. --scratch ce, the CE-only distillation run). The teacher's top-1 is a dotted line
  when the metric is a top-1.

Legends sit outside the axes; more than 10 groups get distinct (colour, marker) pairs; tick labels slant or
stand upright where they would touch (scripts/figure_layout.py).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from runs.records import Record, RecordsError, load_records, warn
from runs.tables import (EPOCH_TITLES, EPOCHS, TEACHER_METRIC, add_selection_arguments, attach_dash_values,
                         check_axis_keys, check_out, check_seeds, exit_on_error, group_by, is_percent,
                         mean_and_spread, metric_title, ordered,
                         parse_filters, parse_keys, parse_labels, parse_order, select, shown_label, shown_value,
                         teacher_accuracies, unique_runs, with_metric)
from scripts.figure_layout import (dense_window, fit_tick_labels, group_styles, label_lines_right,
                                   label_points_outside, legend_outside, plt, save, show_zoom)

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


def title(args: argparse.Namespace, default: str) -> str:
    return args.title if args.title is not None else f"{default}, {EPOCH_TITLES[args.epoch]}"


def error_name(args: argparse.Namespace) -> str:
    return "s.e." if args.error == "se" else "std"


def teacher_metric(metric: str) -> str | None:
    """The teacher's counterpart of a student top-1 ("test/top1" -> "test/teacher_top1"), else None."""
    split, _, name = metric.rpartition("/")
    return f"{split}/teacher_top1" if name == "top1" else None


# ----------------------------------------------------------------------------------------------- capacity
def plot_capacity(records: list[Record], args: argparse.Namespace):
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

    def by_x(members: list[Record]) -> dict[str, list[Record]]:
        return group_by(members, x_keys, renames, args.join)

    labels, position, numeric = x_positions(set(by_x(usable)), parse_order(args.x_order))
    groups = group_by(usable, group_keys, renames, args.join)
    names = ordered(groups, parse_order(args.group_order))
    taught = [r for r in usable if r.metric(args.epoch, TEACHER_METRIC) is not None]  # train runs have no teacher
    if args.teacher and not taught:
        raise RecordsError(f"--teacher: no record has {TEACHER_METRIC} (train runs have no teacher)")
    teacher_groups = group_by(taught, parse_keys(args.teacher_group), renames, args.join) if args.teacher else {}
    teacher_names = [f"teacher ({name})" if name and len(teacher_groups) > 1 else "teacher"
                     for name in ordered(teacher_groups)]
    styles = group_styles(names + teacher_names)
    if len(teacher_names) == 1:  # one teacher: grey, apart from the students' colours
        styles[teacher_names[0]] = {"color": "0.35", "marker": "."}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    # Categorical x: nudge the groups apart so their error bars do not hide each other.
    dodge = 0.0 if numeric or len(names) == 1 else min(0.08, 0.3 / len(names))
    for index, name in enumerate(names):
        at = by_x(groups[name])
        xs = [x for x in labels if x in at]
        stats = [summary(at[x], args.epoch, args.metric, args.error, f"{name} at {x}") for x in xs]
        offset = dodge * (index - (len(names) - 1) / 2)
        ax.errorbar([position[x] + offset for x in xs], [m for m, _ in stats], yerr=[e for _, e in stats],
                    capsize=3, label=name or args.metric, **styles[name])
    for name, shown in zip(ordered(teacher_groups), teacher_names):
        at = by_x(teacher_groups[name])
        points = [(x, teacher_accuracies(at[x], args.epoch)) for x in labels if x in at]
        points = [(x, mean_and_spread(values, args.error)) for x, values in points]
        ax.errorbar([position[x] for x, _ in points], [m for _, (m, _) in points],
                    yerr=[0.0 if math.isnan(e) else e for _, (_, e) in points], linestyle="--",
                    capsize=2, markersize=4, label=shown, **styles[shown])
    if not numeric:
        ax.set_xticks([position[x] for x in labels], labels)
    ax.set_xlabel(args.x_title or ", ".join(x_keys))
    ax.set_ylabel(f"{metric_title(args.metric)}, mean ± {error_name(args)}")
    fig.suptitle(title(args, f"{args.metric} against {args.x_title or ', '.join(x_keys)}"))
    ax.grid(alpha=0.3)
    legend_outside(ax, *ax.get_legend_handles_labels())
    fit_tick_labels(ax)
    return fig


# ----------------------------------------------------------------------------------------------- fidelity
def fidelity_points(members: list[Record], args: argparse.Namespace) -> list[tuple[float, ...]]:
    """(accuracy, its error, agreement, its error, KL, its error): one per run, or with --mean the group's."""
    metrics = (args.accuracy, args.agreement, args.kl)
    if args.mean:
        return [tuple(v for metric in metrics for v in summary(members, args.epoch, metric, args.error, None))]
    return [tuple(v for metric in metrics for v in (shown_value(metric, r.metric(args.epoch, metric)), 0.0))
            for r in members]


def plot_fidelity(records: list[Record], args: argparse.Namespace):
    renames = parse_labels(args.label)
    metrics = [args.accuracy, args.agreement, args.kl]
    usable = with_metric(records, args.epoch, metrics)
    if not usable:
        raise RecordsError(f"no selected record has all of {metrics} at the {args.epoch} epoch (train runs "
                           f"have no fidelity metrics)")
    groups = group_by(usable, parse_keys(args.group), renames, args.join)
    names = ordered(groups, parse_order(args.group_order))
    styles = group_styles(names)
    points, labels = {}, []
    for name in names:
        members = unique_runs(groups[name])
        if args.mean:
            check_seeds(members, f"group {name}")
        points[name] = fidelity_points(members, args)
        labels.append(f"{name} (n={len(members)})" if args.mean else name)
    # A few outliers can squeeze the other points into one blot: a second row then magnifies the crowd.
    zoom = dense_window([p[0] for group in points.values() for p in group])
    fig, axes = plt.subplots(2 if zoom else 1, 2, figsize=(9.0, 7.4 if zoom else 4.0), layout="constrained",
                             squeeze=False)
    handles = []
    for name in names:
        for row in axes:
            for ax, column in zip(row, (2, 4)):
                x, x_error, y, y_error = ([p[i] for p in points[name]] for i in (0, 1, column, column + 1))
                handle = ax.errorbar(x, y, xerr=x_error, yerr=y_error, linestyle="none", capsize=3 if args.mean else 0,
                                     alpha=1.0 if args.mean else 0.8, **styles[name])
        handles.append(handle)
    for row in axes:
        for ax, fidelity in zip(row, (args.agreement, args.kl)):
            ax.set_xlabel(f"student {metric_title(args.accuracy)}")
            ax.set_ylabel(metric_title(fidelity))
            ax.grid(alpha=0.3)
    if zoom:
        for whole, magnified, column in zip(axes[0], axes[1], (2, 4)):
            box = show_zoom(whole, magnified, zoom, [(p[0], p[column], p[column + 1]) for group in points.values()
                                                     for p in group])
            if args.mean:  # the few points outside the crowd lie far apart: name them where they are
                label_points_outside(whole, box, [(p[0], p[column], name, styles[name]["color"])
                                                  for name, (p,) in points.items()])
    if len(names) > 1 or args.mean:
        legend_outside(axes[0][-1], handles, labels, "right" if len(names) <= 8 else "bottom",
                       title=f"mean ± {error_name(args)} over seeds" if args.mean else None)
    fig.suptitle(title(args, "student fidelity against accuracy"))
    return fig


# ----------------------------------------------------------------------------------------------- methods
def split_scratch(records: list[Record], args: argparse.Namespace, row_keys: list[str],
                  renames: dict[str, str]) -> tuple[list[Record], list[Record]]:
    """(method runs, from-scratch student runs): the row --scratch names, else the train runs."""
    if args.scratch:
        rows = group_by(records, row_keys, renames, args.join)
        if args.scratch not in rows:
            raise RecordsError(f"--scratch {args.scratch} names no row; the rows are {ordered(rows)}")
        scratch = rows[args.scratch]
    else:
        scratch = [r for r in records if r.is_baseline or r.data.get("task") == "train"]
    methods = [r for r in records if all(r is not s for s in scratch)]
    if not methods:
        raise RecordsError("every selected record is a student from scratch; the chart needs distillation runs")
    return methods, scratch


def plot_methods(records: list[Record], args: argparse.Namespace):
    renames = parse_labels(args.label)
    row_keys, group_keys = parse_keys(args.rows), parse_keys(args.group)
    if not row_keys:
        raise RecordsError("--rows needs a config key, e.g. --rows kd.name")
    usable = with_metric(records, args.epoch, [args.metric])
    if not usable:
        raise RecordsError(f"no selected record has {args.metric} at the {args.epoch} epoch")
    methods, scratch = split_scratch(usable, args, row_keys, renames)

    def group_of(record: Record) -> str:
        return shown_label(record, group_keys, renames, args.join)

    groups = group_by(methods, group_keys, renames, args.join)
    group_names = ordered(groups, parse_order(args.group_order))
    cells = {(row, group): summary(members, args.epoch, args.metric, args.error, f"bar ({row}, {group})")
             for group in group_names
             for row, members in group_by(groups[group], row_keys, renames, args.join).items()}
    order = parse_order(args.order)
    rest = ordered({row for row, _ in cells}, order)[len(order):]
    if args.sort == "mean":  # best first by the mean of the row's bars over the groups; ties in natural order
        rest.sort(key=lambda row: -np.mean([m for (r, _), (m, _) in cells.items() if r == row]))
    row_names = order + rest
    colors = group_styles(group_names) if group_keys else {"": {"color": "tab:blue"}}
    width = 0.8 / len(group_names)
    fig, ax = plt.subplots(figsize=(min(10.0, max(4.5, 1.6 + 0.32 * len(cells))), 4.4), layout="constrained")
    extremes, bars = [], []
    for g, group in enumerate(group_names):
        xs, values = zip(*[(r + (g - (len(group_names) - 1) / 2) * width, cells[(row, group)])
                           for r, row in enumerate(row_names) if (row, group) in cells])
        bars.append(ax.bar(xs, [m for m, _ in values], width=width * 0.95, yerr=[e for _, e in values],
                           capsize=3, color=colors[group]["color"], label=group or None))
        extremes += [v for m, e in values for v in (m - e, m + e)]
    lines = reference_lines(ax, scratch, methods, group_of, group_names, colors, args)
    extremes += [y for y, _, _ in lines]
    # KD methods differ by a point or two: start the axis just below the lowest bar unless asked not to.
    if not args.from_zero and min(extremes) > 0:
        span = max(extremes) - min(extremes) or abs(max(extremes)) or 1.0
        ax.set_ylim(max(0.0, min(extremes) - 0.25 * span), max(extremes) + 0.1 * span)
    ax.set_xticks(np.arange(len(row_names)), row_names)
    ax.set_xlim(-0.6, len(row_names) - 0.4)
    ax.set_ylabel(f"{metric_title(args.metric)}, mean ± {error_name(args)}")
    fig.suptitle(title(args, f"{args.metric} by {', '.join(row_keys)}"))
    ax.grid(axis="y", alpha=0.3)
    if group_keys:
        legend_outside(ax, bars, group_names, where="bottom", title=", ".join(group_keys))
    fit_tick_labels(ax)
    label_lines_right(ax, lines)
    return fig


def reference_lines(ax, scratch: list[Record], methods: list[Record], group_of, group_names: list[str],
                    colors: dict[str, dict], args: argparse.Namespace) -> list[tuple[float, str, object]]:
    """Per group: the student from scratch (dashed, with its ± band) and the teacher (dotted), as
    horizontal lines; returns (y, label, colour) for their direct labels."""
    unplaced = sorted({group_of(r) for r in scratch} - set(group_names))
    if unplaced:
        warn(f"the students from scratch in {unplaced} match no group of bars, so no line shows them; key the "
             f"groups by what both kinds of run have (e.g. --group 'student.name|model.name') or use --baselines")
    lines = []
    for group in group_names:
        color = colors[group]["color"] if len(group_names) > 1 else "0.25"
        members = [r for r in scratch if group_of(r) == group]
        if members:
            mean, error = summary(members, args.epoch, args.metric, args.error, f"scratch ({group})")
            ax.axhspan(mean - error, mean + error, color=color, alpha=0.12, linewidth=0)
            label = f"from scratch{f' ({args.scratch})' if args.scratch else ''} {mean:.1f}"
            ax.axhline(mean, color=color, linestyle="--", linewidth=1.2, label=label)
            lines.append((mean, label, color))
        counterpart = teacher_metric(args.metric)
        teachers = teacher_accuracies(unique_runs([r for r in methods if group_of(r) == group]), args.epoch,
                                      counterpart) if counterpart else []
        if teachers:
            mean = float(np.mean(teachers))
            ax.axhline(mean, color=color, linestyle=":", linewidth=1.5, label=f"teacher {mean:.1f}")
            lines.append((mean, f"teacher {mean:.1f}", color))
    return lines


def figure(args: argparse.Namespace):
    """The figure the arguments ask for, not yet saved (tests look at it)."""
    check_out(args.out)
    records = select(load_records(args.folder, args.pattern, args.baselines), parse_filters(args.filter))
    for option in ("x", "rows", "group"):  # the axes this plot keys by
        if getattr(args, option, None):
            check_axis_keys(records, parse_keys(getattr(args, option)), f"--{option.replace('_', '-')}")
    return PLOTS[args.plot](records, args)


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
    methods.add_argument("--order", help="row labels first, in this order (comma-separated; the rest follow)")
    methods.add_argument("--sort", choices=["mean", "name"], default="mean",
                         help="the other rows best first (mean, default) or in natural order (name)")
    methods.add_argument("--scratch", metavar="ROW", help="the row that is the student from scratch, drawn as a "
                         "line (default: the train runs among the records, e.g. with --baselines)")
    methods.add_argument("--metric", default="test/top1")
    methods.add_argument("--error", choices=["se", "std"], default="std", help="error bars (default std)")
    methods.add_argument("--from-zero", action="store_true", help="start the y axis at 0")
    return parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv, ("--label", "--filter")))


def run(args: argparse.Namespace) -> list[Path]:
    return save(figure(args), args.out)


def main(argv: list[str] | None = None) -> list[Path]:
    return exit_on_error(run, parse_args(argv))


if __name__ == "__main__":
    main()

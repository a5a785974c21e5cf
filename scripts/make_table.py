"""Paper-style tables (Markdown and LaTeX) from a folder of run records: mean ± std over seeds.

    python scripts/make_table.py FOLDER [--rows kd.name] [--cols teacher.model.name,student.name]
        [--metric test/top1] [--epoch last|best|both] [--filter KEY=VALUE ...] [--label OLD=NEW ...]
        [--row-order A,B] [--col-order A,B] [--digits 2] [--pattern record.json] [--baselines]
        [--published] [--out PREFIX] [--print md|tex|none]

Every record.json under FOLDER (recursively; folders that rerun=true moved aside are skipped) is one run.
Rows and columns are config keys, dotted paths into the record's config; several keys joined by commas make
one axis whose labels join the values ("resnet32x4 → resnet8x4"); `--cols ''` gives a single column.
A cell is the mean ± sample std (ddof=1) of the metric over the cell's runs (its seeds); one run shows its
mean alone, and cells whose number of runs differs from the usual one say (n=k). Accuracy-like metrics
(top1, top5, agreement, teacher_top1, ece) are shown in percent. Each column header gives the teacher's
test top-1: the mean of test/teacher_top1 over the column's teachers (runs that share a trained teacher,
e.g. several methods distilled from one teacher per seed, count it once). `--epoch both` (the default)
writes one table for the last epoch and one for the best-on-validation epoch.

Train runs (train.py records, e.g. a student trained from scratch) are rows too: keys they lack give "-".
A train record has `model` where a distillation record has `student` and no `kd`, so
`--cols 'student.name|model.name'` puts both in the student's column and `--label '-=scratch'` names
their row. `--baselines` adds the from-scratch student stored inside each distillation record
(baseline=true) as such a train run, keeping the distillation run's teacher, so it shares the
teacher -> student column.

`--published` compares with the anchors' published numbers. A reproduction cell of cfg/experiment/ carries a
`published:` block (metric, value, std where the anchor gives one, the teacher's published accuracy, epoch,
source), which every run record keeps in its config. Each table cell whose runs carry one for the table's
metric then reads "ours vs published (ours - published)", and a dagger marks a difference larger than
max(2 x the sample std over our seeds, the anchor's own std); with one run and no anchor std nothing is
marked (no spread to judge by). Column headers add the published teacher accuracy.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from runs.records import Record, RecordsError, load_records, warn
from runs.tables import (add_selection_arguments, attach_dash_values, AXIS_JOIN, axis_label, check_axis_keys,
                        check_out, check_seeds,
                        EPOCH_TITLES, EPOCHS, exit_on_error, format_mean_std, markdown_table, mean_and_spread,
                        metric_title, ordered, parse_filters, parse_keys, parse_labels, parse_order, select,
                        shown_value, teacher_accuracies, unique_runs, with_metric)

PM = {"md": " ± ", "tex": r" $\pm$ "}
MARK = {"md": "†", "tex": r"$^\dagger$"}


@dataclass(frozen=True)
class PublishedValue:
    """A cell's `published:` block, as its runs' records carry it (values in the units the table shows)."""
    value: float
    source: str
    std: float | None = None
    teacher: float | None = None
    epoch: str | None = None


def published_value(record: Record, metric: str) -> PublishedValue | None:
    """The record's published block if it is for `metric`, else None."""
    block = record.data.get("config", {}).get("published")
    if not isinstance(block, dict) or block.get("metric") != metric or block.get("value") is None:
        return None
    optional = {key: None if block.get(key) is None else float(block[key]) for key in ("std", "teacher")}
    return PublishedValue(float(block["value"]), str(block.get("source", "")), epoch=block.get("epoch"), **optional)


def shared_published(members: list[Record], metric: str, where: str) -> PublishedValue | None:
    """The one published value of a table cell's runs (runs without one, e.g. older records, do not count);
    runs that disagree (several experiment cells mixed in one table cell) give none."""
    found = {published_value(record, metric) for record in members} - {None}
    if len(found) > 1:
        warn(f"{where} mixes runs with different published values ({len(found)}); add the key that tells them "
             f"apart to the grouping: no published value shown there")
        return None
    return found.pop() if found else None


def beyond_spread(values: list[float], published: PublishedValue) -> bool | None:
    """Whether |ours - published| exceeds max(2 x our sample std, the anchor's std); None with no spread."""
    mean, std = mean_and_spread(values)
    limits = [limit for limit in (2 * std, published.std) if limit is not None and limit == limit]
    return abs(mean - published.value) > max(limits) if limits else None


@dataclass
class Table:
    metric: str
    epoch: str
    row_keys: list[str]
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], list[float]]
    teacher: dict[str, float] = field(default_factory=dict)  # column -> teacher top-1 %, where known
    runs: int = 0
    join: str = AXIS_JOIN  # between the values of several keys, and between the key names in the corner
    published: dict[tuple[str, str], PublishedValue] | None = None  # with --published: cell -> its value

    def usual_count(self) -> int:
        """The most common number of runs per cell (ties: the larger), which the caption states."""
        counts = Counter(len(values) for values in self.cells.values())
        return max(counts, key=lambda n: (counts[n], n))


def build_table(records: list[Record], row_keys: list[str], col_keys: list[str], metric: str, epoch: str,
                renames: dict[str, str] | None = None, row_order: list[str] | None = None,
                col_order: list[str] | None = None, join: str = AXIS_JOIN, published: bool = False) -> Table:
    renames = renames or {}
    usable = with_metric(records, epoch, [metric])
    if not usable:
        names = sorted({name for record in records for name in (record.data.get(epoch) or {}) if name != "epoch"})
        raise RecordsError(f"no selected record has {metric} at the {epoch} epoch; pick --metric from {names}")
    grouped: dict[tuple[str, str], list[Record]] = {}
    for record in usable:
        row = axis_label(record, row_keys, join) if row_keys else metric
        column = axis_label(record, col_keys, join) if col_keys else metric_title(metric)
        grouped.setdefault((renames.get(row, row), renames.get(column, column)), []).append(record)
    cells, by_column, anchors = {}, {}, {}
    for (row, column), members in grouped.items():
        members = unique_runs(members)
        check_seeds(members, f"cell ({row}, {column})")
        cells[(row, column)] = [shown_value(metric, record.metric(epoch, metric)) for record in members]
        by_column.setdefault(column, []).extend(members)
        if published and (value := shared_published(members, metric, f"cell ({row}, {column})")) is not None:
            anchors[(row, column)] = value
    teacher = {}
    for column, members in by_column.items():
        accuracies = teacher_accuracies(unique_runs(members), epoch)
        if accuracies:
            teacher[column] = sum(accuracies) / len(accuracies)
    return Table(metric, epoch, row_keys, ordered({row for row, _ in cells}, row_order),
                 ordered({column for _, column in cells}, col_order), cells, teacher,
                 sum(len(values) for values in cells.values()), join, anchors if published else None)


def cell_text(table: Table, row: str, column: str, digits: int, style: str) -> str:
    values = table.cells.get((row, column))
    if not values:
        return "-"
    text = format_mean_std(values, digits, PM[style])
    if len(values) != table.usual_count():
        text = f"{text} (n={len(values)})"
    anchor = (table.published or {}).get((row, column))
    if anchor is None:
        return text
    difference = mean_and_spread(values)[0] - anchor.value
    mark = MARK[style] if beyond_spread(values, anchor) else ""
    return f"{text} vs {anchor.value:.{digits}f} ({difference:+.{digits}f}){mark}"


def published_teacher(table: Table, column: str) -> float | None:
    teachers = {anchor.teacher for (_, col), anchor in (table.published or {}).items() if col == column}
    return teachers.pop() if len(teachers) == 1 else None


def column_header(table: Table, column: str, digits: int) -> str:
    parts = []
    accuracy, published = table.teacher.get(column), published_teacher(table, column)
    if accuracy is not None:
        parts.append(f"teacher {accuracy:.{digits}f}")
    if published is not None:
        parts.append(f"published {published:.{digits}f}" if parts else f"published teacher {published:.{digits}f}")
    return f"{column} ({', '.join(parts)})" if parts else column


def caption(table: Table, source: str) -> str:
    usual = table.usual_count()
    marked = any(len(values) != usual for values in table.cells.values())
    parts = [f"{metric_title(table.metric)}, {EPOCH_TITLES[table.epoch]}: mean ± sample std over seeds "
             f"(one run shows its mean), n = {usual} run{'s' if usual != 1 else ''} per cell"
             + (" except where marked (n=k)" if marked else "") + "."]
    if table.teacher:
        parts.append("Column headers: teacher test top-1 %, mean over the column's teachers.")
    if table.published is not None:
        parts.append(published_caption(table))
    parts.append(f"{table.runs} runs from {source}.")
    return " ".join(parts)


def published_caption(table: Table) -> str:
    anchors = list(table.published.values())
    if not anchors:
        return (f"Published: no selected run carries a published {table.metric} (its config has no `published:` "
                f"block), so the cells show ours only.")
    text = ("Published: a cell reads ours vs the anchor's published value (ours - published); † marks a difference "
            "larger than max(2 x our std over seeds, the anchor's std); headers add the published teacher accuracy.")
    other_epochs = sorted({a.epoch for a in anchors if a.epoch is not None and a.epoch != table.epoch})
    if other_epochs:
        text += f" Some published values report the {' / '.join(other_epochs)} epoch, not this table's."
    return text + f" Sources: {'; '.join(sorted({a.source for a in anchors}))}."


def markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")  # a bare | would split the cell (e.g. a key like student.name|model.name)


def to_markdown(table: Table, digits: int, source: str) -> str:
    corner = table.join.join(table.row_keys) or "metric"
    header = [markdown_escape(text) for text in
              (corner, *(column_header(table, column, digits) for column in table.columns))]
    rows = [[markdown_escape(row), *(cell_text(table, row, column, digits, "md") for column in table.columns)]
            for row in table.rows]
    return "\n".join([f"**{metric_title(table.metric)}, {EPOCH_TITLES[table.epoch]}**", "",
                      markdown_table(header, rows), "", caption(table, source)])


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "→": r"$\rightarrow$", "±": r"$\pm$", "†": r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(char, char) for char in text)


def to_latex(table: Table, digits: int, source: str) -> str:
    corner = table.join.join(table.row_keys) or "metric"
    header = [corner, *(column_header(table, column, digits) for column in table.columns)]
    lines = [r"% make_table.py; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering",
             r"\caption{" + latex_escape(caption(table, source)) + "}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             " & ".join(latex_escape(text) for text in header) + r" \\", r"\midrule"]
    for row in table.rows:
        # Cells are built with the LaTeX ± directly; only the labels need escaping.
        cells = [cell_text(table, row, column, digits, "tex") for column in table.columns]
        lines.append(" & ".join([latex_escape(row), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder searched recursively for run records")
    parser.add_argument("--rows", default="kd.name", help="config key(s) of the rows, comma-separated")
    parser.add_argument("--cols", default="teacher.model.name,student.name",
                        help="config key(s) of the columns, comma-separated ('' = one column)")
    parser.add_argument("--metric", default="test/top1", help="metric of the record's last/best sections")
    parser.add_argument("--epoch", choices=[*EPOCHS, "both"], default="both",
                        help="last epoch, best-on-validation epoch, or one table each (default)")
    add_selection_arguments(parser, AXIS_JOIN, "a row or column")
    parser.add_argument("--row-order", help="row labels in this order (comma-separated; the rest follow)")
    parser.add_argument("--col-order", help="column labels in this order (comma-separated; the rest follow)")
    parser.add_argument("--digits", type=int, default=2, help="decimals shown (default 2)")
    parser.add_argument("--published", action="store_true",
                        help="add each cell's published value and ours - published, from the runs' published blocks")
    parser.add_argument("--out", type=Path, metavar="PREFIX", help="also write PREFIX.md and PREFIX.tex")
    parser.add_argument("--print", dest="show", choices=["md", "tex", "none"], default="md",
                        help="what goes to stdout (default md)")
    return parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv, ("--label", "--filter")))


def run(args: argparse.Namespace) -> tuple[str, str]:
    if args.digits < 0:
        raise RecordsError(f"--digits must be >= 0, got {args.digits}")
    renames = parse_labels(args.label)
    check_out(args.out)
    records = select(load_records(args.folder, args.pattern, args.baselines), parse_filters(args.filter))
    check_axis_keys(records, parse_keys(args.rows), "--rows")
    check_axis_keys(records, parse_keys(args.cols), "--cols")
    epochs = EPOCHS if args.epoch == "both" else (args.epoch,)
    tables = [build_table(records, parse_keys(args.rows), parse_keys(args.cols), args.metric, epoch, renames,
                          parse_order(args.row_order), parse_order(args.col_order), args.join, args.published)
              for epoch in epochs]
    source = str(args.folder)
    markdown = "\n\n".join(to_markdown(table, args.digits, source) for table in tables) + "\n"
    latex = "\n\n".join(to_latex(table, args.digits, source) for table in tables) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".md", markdown), (".tex", latex)):
            path = args.out.with_name(args.out.name + suffix)
            path.write_text(text)
            print(f"wrote {path}", file=sys.stderr)
    if args.show != "none":
        sys.stdout.write(markdown if args.show == "md" else latex)
    return markdown, latex


def main(argv: list[str] | None = None) -> tuple[str, str]:
    return exit_on_error(run, parse_args(argv))


if __name__ == "__main__":
    main()

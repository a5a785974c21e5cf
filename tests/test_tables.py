"""scripts/make_table.py on hand-made run records with known means and stds (plots: test_plots.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from scripts import make_table
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parent.parent
PAIR_A, PAIR_B = ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8")
COLUMN_A, COLUMN_B = "resnet32x4 → resnet8x4", "vgg13 → vgg8"

# (method, pair) -> test/top1 per seed 0, 1, 2 at the last epoch and at the best-on-validation epoch.
LAST = {("kd", PAIR_A): [0.70, 0.72, 0.74], ("crd", PAIR_A): [0.75, 0.75, 0.78],
        ("kd", PAIR_B): [0.60, 0.61, 0.62], ("crd", PAIR_B): [0.63, 0.64, 0.68]}
BEST = {**LAST, ("kd", PAIR_A): [0.71, 0.73, 0.78]}
# By hand (percent): mean, then sample std sqrt(sum of squared deviations / (n - 1)).
#   70, 72, 74: mean 72, deviations -2, 0, 2 -> sqrt(8 / 2) = 2
#   75, 75, 78: mean 76, deviations -1, -1, 2 -> sqrt(6 / 2) = 1.7320...
#   60, 61, 62: mean 61, deviations -1, 0, 1 -> sqrt(2 / 2) = 1
#   63, 64, 68: mean 65, deviations -2, -1, 3 -> sqrt(14 / 2) = 2.6457...
#   71, 73, 78: mean 74, deviations -3, -1, 4 -> sqrt(26 / 2) = 3.6055...
EXPECTED_LAST = {("kd", COLUMN_A): "72.00 ± 2.00", ("crd", COLUMN_A): "76.00 ± 1.73",
                 ("kd", COLUMN_B): "61.00 ± 1.00", ("crd", COLUMN_B): "65.00 ± 2.65"}
EXPECTED_BEST = {**EXPECTED_LAST, ("kd", COLUMN_A): "74.00 ± 3.61"}
# Teacher test top-1 per seed (each seed trains its own teacher): mean 79.40 for pair A, 74.64 for B.
TEACHER = {PAIR_A: [0.790, 0.794, 0.798], PAIR_B: [0.7464, 0.7464, 0.7464]}
HEADER_A, HEADER_B = f"{COLUMN_A} (teacher 79.40)", f"{COLUMN_B} (teacher 74.64)"


def distill_record(method: str, pair: tuple[str, str], seed: int, last: float, best: float, teacher: float,
                   kind: str = "single") -> dict:
    teacher_name, student_name = pair
    metrics = lambda top1: {"test/top1": top1, "val/top1": top1 + 0.01, "test/teacher_top1": teacher,  # noqa: E731
                            "test/agreement": top1 + 0.05, "test/kl": 1.0 - top1}
    return {"task": "distill", "seed": seed,
            "run_dir": f"outputs/distill/{method}-{teacher_name}-{student_name}-{kind}-s{seed}",
            "teacher_run": f"outputs/train/{teacher_name}-{kind}-s{seed}",
            "config": {"kd": {"name": method}, "seed": seed, "data": {"name": "cifar100"},
                       "teacher": {"kind": kind, "model": {"name": teacher_name}}, "student": {"name": student_name}},
            "last": metrics(last), "best": {"epoch": 150, **metrics(best)}}


def write(folder: Path, record: dict, name: str = "record.json") -> Path:
    path = folder / record["run_dir"].replace("/", "_") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """2 methods x 2 pairs x 3 seeds."""
    folder = tmp_path / "runs"
    for (method, pair), values in LAST.items():
        for seed, (last, best, teacher) in enumerate(zip(values, BEST[(method, pair)], TEACHER[pair])):
            write(folder, distill_record(method, pair, seed, last, best, teacher))
    return folder


def markdown_cells(text: str) -> dict[tuple[str, str], str]:
    """{(row, column header): cell} of the first Markdown table in text."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = {}
    for line in lines[2:]:
        row = [cell.strip() for cell in line.strip("|").split("|")]
        cells.update({(row[0], column): cell for column, cell in zip(header[1:], row[1:])})
    return cells


def tables(text: str) -> list[str]:
    """The Markdown output split into its tables (one per epoch)."""
    return [part for part in re.split(r"(?=^\*\*)", text, flags=re.M) if part.strip()]


def with_headers(expected: dict) -> dict:
    return {(row, HEADER_A if column == COLUMN_A else HEADER_B): cell for (row, column), cell in expected.items()}


# ----------------------------------------------------------------------------------------------- tables
def test_cells_are_mean_and_sample_std_over_seeds_for_last_and_best(runs, capsys):
    markdown, _ = make_table.main([str(runs), "--rows", "kd.name", "--cols", "teacher.model.name,student.name"])
    assert capsys.readouterr().out == markdown
    last, best = tables(markdown)
    assert "last epoch" in last.splitlines()[0] and "best-on-validation epoch" in best.splitlines()[0]
    assert markdown_cells(last) == with_headers(EXPECTED_LAST)
    assert markdown_cells(best) == with_headers(EXPECTED_BEST)
    # the one (method, pair) whose records differ between the epochs is the one cell that differs
    differing = {key for key, cell in markdown_cells(last).items() if markdown_cells(best)[key] != cell}
    assert differing == {("kd", HEADER_A)}
    assert "n = 3 runs per cell." in last


def test_epoch_flag_metric_and_outputs(runs, tmp_path, capsys):
    prefix = tmp_path / "tables" / "cifar100"
    markdown, latex = make_table.main([str(runs), "--epoch", "best", "--metric", "test/kl", "--digits", "3",
                                       "--out", str(prefix), "--print", "none"])
    assert capsys.readouterr().out == ""
    assert prefix.with_suffix(".md").read_text() == markdown and prefix.with_suffix(".tex").read_text() == latex
    assert len(tables(markdown)) == 1 and "best-on-validation epoch" in markdown
    # KL is not a percentage: 1 - top1 of (0.71, 0.73, 0.78) -> 0.29, 0.27, 0.22: mean 0.260, std 0.036
    assert markdown_cells(markdown)[("kd", f"{COLUMN_A} (teacher 79.400)")] == "0.260 ± 0.036"


def test_latex_table_is_structurally_sound(runs):
    _, latex = make_table.main([str(runs), "--epoch", "last", "--print", "none"])
    assert latex.count(r"\begin{tabular}{lcc}") == 1 and latex.count(r"\end{tabular}") == 1
    assert latex.count(r"\begin{table}") == latex.count(r"\end{table}") == 1
    assert latex.count("{") == latex.count("}")
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    header = latex.split(r"\toprule")[1].split(r"\midrule")[0].strip()
    assert header == (r"kd.name & resnet32x4 $\rightarrow$ resnet8x4 (teacher 79.40) & "
                      r"vgg13 $\rightarrow$ vgg8 (teacher 74.64) \\")
    assert len(body) == 2
    for line in body:
        assert line.endswith(r" \\") and line.count(" & ") == 2
    assert r"kd & 72.00 $\pm$ 2.00 & 61.00 $\pm$ 1.00 \\" in body
    assert "±" not in latex and "→" not in latex  # unicode replaced by math mode


def test_filters_select_records(runs, capsys):
    markdown, _ = make_table.main([str(runs), "--epoch", "last", "--filter", "kd.name=kd",
                                   "--filter", "student.name!=vgg8"])
    assert markdown_cells(markdown) == {("kd", HEADER_A): "72.00 ± 2.00"}
    markdown, _ = make_table.main([str(runs), "--epoch", "last", "--filter", "kd.name=kd,crd", "--filter", "seed=0"])
    assert markdown_cells(markdown)[("crd", f"{COLUMN_B} (teacher 74.64)")] == "63.00"  # one seed: mean alone
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        make_table.main([str(runs), "--filter", "kd.name=dkd"])
    assert exit_info.value.code == 2
    assert "--filter kd.name=dkd keeps no record; kd.name takes the values ['crd', 'kd']" in capsys.readouterr().err


def test_record_missing_the_metric_is_skipped_with_a_warning(runs, capsys):
    broken = distill_record("kd", PAIR_A, 3, 0.99, 0.99, 0.79)
    del broken["last"]["test/top1"]
    path = write(runs, broken)
    markdown, _ = make_table.main([str(runs)])
    warning = capsys.readouterr().err
    assert warning.count("warning: skipping") == 1  # one line, however many records lack it
    assert "records: no test/top1 in their 'last' metrics" in warning and str(path) in warning
    last, best = tables(markdown)
    assert markdown_cells(last)[("kd", HEADER_A)] == "72.00 ± 2.00"
    # its best section has the metric: that cell has 4 runs (71, 73, 78, 99: mean 80.25), marked as the odd one
    # out; the teacher mean includes its teacher (79.0, 79.4, 79.8, 79.0 -> 79.30)
    cell = markdown_cells(best)[("kd", f"{COLUMN_A} (teacher 79.30)")]
    assert cell.startswith("80.25 ± ") and cell.endswith("(n=4)")
    assert "n = 3 runs per cell except where marked (n=k)" in best


def test_empty_folder_is_one_clear_error(tmp_path):
    empty = tmp_path / "no_runs_here"
    empty.mkdir()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(empty)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no record.json under {empty}") and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_train_runs_are_rows(runs, capsys):
    # a student trained from scratch by train.py: `model` instead of `student`, no kd, no teacher
    for seed, top1 in enumerate([0.66, 0.67, 0.71]):  # mean 68, deviations -2, -1, 3 -> sqrt(14 / 2) = 2.65
        write(runs, {"task": "train", "seed": seed, "run_dir": f"outputs/train/resnet8x4-s{seed}",
                     "config": {"model": {"name": "resnet8x4"}, "seed": seed, "data": {"name": "cifar100"}},
                     "last": {"test/top1": top1}, "best": {"epoch": 9, "test/top1": top1}})
    markdown, _ = make_table.main([str(runs), "--epoch", "last", "--cols", "student.name|model.name",
                                   "--label", "-=scratch", "--row-order", "scratch,kd"])
    cells = markdown_cells(markdown)
    header = "resnet8x4 (teacher 79.40)"  # the teacher mean comes from the distillation runs only
    assert cells[("scratch", header)] == "68.00 ± 2.65" and cells[("kd", header)] == "72.00 ± 2.00"
    assert [line.split("|")[1].strip() for line in markdown.splitlines()[4:7]] == ["scratch", "kd", "crd"]


def test_embedded_baselines_join_their_pair_column_once(tmp_path):
    folder = tmp_path / "runs"
    for method in ("kd", "crd"):  # both runs embed the same scratch baseline per seed
        for seed, top1 in enumerate([0.70, 0.72, 0.74]):
            record = distill_record(method, PAIR_A, seed, top1, top1, 0.79)
            record["baseline"] = {"run_dir": f"outputs/train/resnet8x4-s{seed}",
                                  "last": {"test/top1": top1 - 0.05}, "best": {"epoch": 3, "test/top1": top1 - 0.05}}
            write(folder, record)
    markdown, _ = make_table.main([str(folder), "--epoch", "last", "--baselines", "--label=-=scratch"])
    assert markdown_cells(markdown)[("scratch", f"{COLUMN_A} (teacher 79.00)")] == "67.00 ± 2.00"
    assert "n = 3 runs per cell." in markdown


def test_bad_options_name_the_problem(runs, capsys):
    for argv, message in (([str(runs), "--metric", "test/top9"], "no selected record has test/top9"),
                          ([str(runs), "--rows", "teacher.model"], "'teacher.model' is a config section"),
                          ([str(runs), "--row-order", "dkd"], "the order names ['dkd']"),
                          ([str(runs), "--filter", "kd.name"], "--filter 'kd.name' is not KEY=VALUE"),
                          ([str(runs / "missing")], "is not a folder")):
        with pytest.raises(SystemExit) as exit_info:
            make_table.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- published
# Runs of three RepDistiller cells (resnet32x4 -> resnet8x4), each record's config the composed cell itself, so
# it carries the cell's published block: KD 73.33, CRD 75.51, AT 73.44 (teacher 79.42).
PUBLISHED_CELLS = {"kd": ("repdistiller/kd_resnet32x4_resnet8x4", [0.70, 0.72, 0.74]),
                   "crd": ("repdistiller/crd_resnet32x4_resnet8x4", [0.75, 0.75, 0.78]),
                   "at": ("repdistiller/at_resnet32x4_resnet8x4", [0.60, 0.61, 0.62])}
# By hand: KD 72.00 ± 2.00 vs 73.33: -1.33, within 2 x 2.00; CRD 76.00 ± 1.73 vs 75.51: +0.49, within 2 x 1.73;
# AT 61.00 ± 1.00 vs 73.44: -12.44, beyond 2 x 1.00 (marked).
EXPECTED_PUBLISHED = {"kd": "72.00 ± 2.00 vs 73.33 (-1.33)", "crd": "76.00 ± 1.73 vs 75.51 (+0.49)",
                      "at": "61.00 ± 1.00 vs 73.44 (-12.44)†"}
PUBLISHED_HEADER = f"{COLUMN_A} (teacher 79.40, published 79.42)"


@pytest.fixture(scope="module")
def cell_configs() -> dict[str, dict]:
    """The resolved config of each experiment cell, as a run of it records it."""
    configs = {method: OmegaConf.to_container(compose_config("distill", [f"experiment={name}"]), resolve=True)
               for method, (name, _) in PUBLISHED_CELLS.items()}
    assert all(config["published"]["source"] for config in configs.values())  # each names where its number is from
    return configs


def write_reproduction(folder: Path, cell_configs: dict, anchor_std: float | None = None) -> Path:
    for method, (_, values) in PUBLISHED_CELLS.items():
        for seed, (top1, teacher) in enumerate(zip(values, TEACHER[PAIR_A])):
            record = distill_record(method, PAIR_A, seed, top1, top1, teacher)
            record["config"] = {**json.loads(json.dumps(cell_configs[method])), "seed": seed}
            if anchor_std is not None:
                record["config"]["published"]["std"] = anchor_std
            write(folder, record)
    return folder


def test_published_adds_value_difference_and_marks_what_lies_beyond_the_spread(cell_configs, tmp_path):
    folder = write_reproduction(tmp_path / "runs", cell_configs)
    plain, _ = make_table.main([str(folder), "--epoch", "last", "--print", "none"])
    assert " vs " not in plain and "Published" not in plain  # only on request
    markdown, latex = make_table.main([str(folder), "--epoch", "last", "--published", "--print", "none"])
    assert markdown_cells(markdown) == {(method, PUBLISHED_HEADER): text for method, text in EXPECTED_PUBLISHED.items()}
    assert "HobbitLong/RepDistiller README.md, same-architecture table" in markdown
    assert r"61.00 $\pm$ 1.00 vs 73.44 (-12.44)$^\dagger$" in latex and "†" not in latex
    best, _ = make_table.main([str(folder), "--epoch", "best", "--published", "--print", "none"])
    assert "Some published values report the last epoch, not this table's." in best


def test_the_anchor_std_widens_the_margin_and_other_metrics_have_no_published_value(cell_configs, tmp_path):
    folder = write_reproduction(tmp_path / "runs", cell_configs, anchor_std=13.0)  # |-12.44| < max(2 x 1.00, 13)
    markdown, _ = make_table.main([str(folder), "--epoch", "last", "--published", "--print", "none"])
    assert markdown_cells(markdown)[("at", PUBLISHED_HEADER)] == "61.00 ± 1.00 vs 73.44 (-12.44)"
    kl, _ = make_table.main([str(folder), "--epoch", "last", "--metric", "test/kl", "--published", "--print", "none"])
    assert " vs " not in kl and "no selected run carries a published test/kl" in kl


def test_a_mistyped_metric_lists_the_metrics_once_and_mixed_configs_name_their_keys_once(runs, capsys):
    with pytest.raises(SystemExit):
        make_table.main([str(runs), "--metric", "test/top11"])
    err = capsys.readouterr().err
    assert err.count("test/agreement") == 1 and "warning" not in err  # the list once, in the error; no per-run lines
    # Two methods in one cell (rows keyed by nothing): the runs of a seed differ in kd.name (and its terms); said
    # once for all the cells that differ in those keys.
    make_table.main([str(runs), "--rows", "", "--epoch", "both"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "repeated seeds" in line]
    assert len(warnings) == 1 and "they differ in kd.name" in warnings[0]


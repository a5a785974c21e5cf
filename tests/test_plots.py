"""scripts/plots.py on hand-made run records: the files it writes, and that its figures read at a glance
(legends off the data, one colour and marker per group, sorted bars with the scratch and teacher lines,
tick labels apart, text legible where a README shows the figure)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text

from scripts import plots
from scripts.figure_layout import DPI
from tests.test_tables import PAIR_A, PAIR_B, distill_record, runs, write  # noqa: F401 (runs: a fixture)

# The widest a Markdown page (GitHub's README column) shows an image, and the smallest text one can read there.
README_WIDTH_PX, LEGIBLE_PX = 830, 10


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def figure(kind: str, folder: Path, *argv: str):
    fig = plots.figure(plots.parse_args([kind, str(folder), "--out", "unused", *argv]))
    fig.draw_without_rendering()
    return fig


def many_methods(folder: Path, count: int, name: str = "method_{:02d}") -> list[str]:
    """`count` methods on PAIR_A, 2 seeds each; method i has test top-1 50 + i % 7 + i / 100 (%)."""
    names = [name.format(i) for i in range(count)]
    for i, method in enumerate(names):
        for seed in (0, 1):
            top1 = (50 + i % 7 + i / 100 + seed * 0.5) / 100
            write(folder, distill_record(method, PAIR_A, seed, top1, top1, 0.8))
    return names


def legends(fig) -> list[Legend]:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def marker_styles(lines: list[Line2D]) -> list[tuple[tuple, str]]:
    """(colour, marker) of every line that draws markers, error bar caps aside."""
    return [(tuple(round(c, 4) for c in to_rgba(line.get_color())), line.get_marker())
            for line in lines if line.get_marker() not in (None, "None", "none", "", "_", "|")]


# ----------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("argv", [
    ["capacity", "--x", "teacher.model.name", "--group", "teacher.kind,kd.name", "--teacher",
     "--label", "single / kd=KD", "--label", "crossfit / kd=cross-fit KD"],
    ["fidelity", "--group", "kd.name"],
    ["fidelity", "--group", "kd.name", "--mean", "--epoch", "best"],
    ["methods", "--rows", "kd.name", "--group", "teacher.model.name,student.name"],
], ids=["capacity", "fidelity-points", "fidelity-means", "methods"])
def test_plots_write_png_and_pdf(runs, tmp_path, argv):  # noqa: F811
    for seed, top1 in enumerate([0.73, 0.74, 0.76]):  # a cross-fit KD line for the capacity plot
        write(runs, distill_record("kd", PAIR_A, seed, top1, top1, 0.78, kind="crossfit"))
    prefix = tmp_path / "figures" / argv[0]
    paths = plots.main([argv[0], str(runs), "--out", str(prefix), *argv[1:]])
    assert [path.suffix for path in paths] == [".png", ".pdf"]
    png, pdf = paths
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000


def test_capacity_refuses_teacher_line_on_a_non_accuracy_axis(runs, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as exit_info:
        plots.main(["capacity", str(runs), "--out", str(tmp_path / "c"), "--metric", "test/kl", "--teacher"])
    assert exit_info.value.code == 2 and "--teacher draws the teachers' top-1 %" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- legends
@pytest.mark.parametrize("kind, argv, groups", [
    ("capacity", ["--x", "student.name", "--group", "kd.name", "--teacher"], 4),
    ("fidelity", ["--group", "kd.name", "--mean"], 4),
    ("fidelity", ["--group", "kd.name", "--mean"], 13),
    ("methods", ["--rows", "kd.name", "--group", "teacher.model.name,student.name"], 4),
], ids=["capacity", "fidelity", "fidelity-13", "methods-grouped"])
def test_legends_stay_off_the_data(tmp_path, kind, argv, groups):
    folder = tmp_path / "runs"
    many_methods(folder, groups)
    for seed in (0, 1):  # a second pair, for the methods chart's groups and the capacity plot's x
        write(folder, distill_record("method_00", PAIR_B, seed, 0.6, 0.6, 0.7))
    fig = figure(kind, folder, *argv)
    assert legends(fig)
    for legend in legends(fig):
        box = legend.get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent()), f"the legend covers part of {ax.get_title()!r}"


@pytest.mark.parametrize("kind, argv", [("fidelity", ["--group", "kd.name", "--mean"]),
                                        ("capacity", ["--x", "student.name", "--group", "kd.name"])])
def test_more_than_ten_groups_get_distinct_colour_and_marker_pairs(tmp_path, kind, argv):
    names = many_methods(tmp_path / "runs", 23)
    fig = figure(kind, tmp_path / "runs", *argv)
    (legend,) = legends(fig)
    styles = marker_styles(legend.findobj(Line2D))
    assert len(styles) == len(names) and len(set(styles)) == len(names)
    assert set(marker_styles(fig.axes[0].get_lines())) == set(styles)  # the points carry the pairs the legend shows
    assert len({colour for colour, _ in styles}) >= 20  # not ten colours recycled


def test_fidelity_magnifies_a_crowd_that_outliers_squeeze_and_names_the_outliers(tmp_path):
    folder = tmp_path / "runs"
    for i, top1 in enumerate([0.950, 0.952, 0.954, 0.956, 0.958, 0.960, 0.962, 0.964, 0.70, 0.80]):
        for seed in (0, 1):
            write(folder, distill_record(f"m{i}", PAIR_A, seed, top1, top1, 0.97))
    fig = figure("fidelity", folder, "--group", "kd.name", "--mean")
    (whole, _), (magnified, _) = [fig.axes[:2], fig.axes[2:]]
    low, high = magnified.get_xlim()
    assert 94.0 < low < 95.0 and 96.4 < high < 97.5  # the eight crowded methods, not the outliers at 70 and 80
    assert {text.get_text() for text in whole.texts} == {"m8", "m9"}


# ----------------------------------------------------------------------------------------------- methods
def methods_with_scratch(folder: Path, scratch: list[float], teacher: float) -> None:
    """kd 72 %, crd 76 %, fitnet 61 % (means over seeds 0-2) on PAIR_A with this teacher top-1; and the
    student from scratch as train.py records with these top-1s."""
    for method, values in (("kd", [0.70, 0.72, 0.74]), ("crd", [0.75, 0.75, 0.78]), ("fitnet", [0.60, 0.61, 0.62])):
        for seed, top1 in enumerate(values):
            write(folder, distill_record(method, PAIR_A, seed, top1, top1, teacher))
    for seed, top1 in enumerate(scratch):
        write(folder, {"task": "train", "seed": seed, "run_dir": f"outputs/train/{PAIR_A[1]}-s{seed}",
                       "config": {"model": {"name": PAIR_A[1]}, "seed": seed}, "last": {"test/top1": top1},
                       "best": {"epoch": 9, "test/top1": top1}})


def bar_heights(ax) -> list[float]:
    return [bar.get_height() for container in ax.containers if isinstance(container, BarContainer) for bar in container]


def reference(ax, name: str) -> tuple[float, str]:
    """(height, direct label) of the horizontal line whose label starts with `name`."""
    line = next(line for line in ax.get_lines() if line.get_label().startswith(name))
    y = line.get_ydata()
    assert y[0] == y[-1], f"the {name} line is not horizontal"
    label = next(text for text in ax.texts if text.get_text().startswith(name))
    return y[0], label.get_text()


def test_methods_bars_are_sorted_with_scratch_and_teacher_lines(tmp_path):
    folder = tmp_path / "runs"
    methods_with_scratch(folder, [0.66, 0.67, 0.71], teacher=0.794)
    ax = figure("methods", folder, "--rows", "kd.name").axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["crd", "kd", "fitnet"]  # by mean, best first
    assert bar_heights(ax) == pytest.approx([76.0, 72.0, 61.0])
    height, label = reference(ax, "from scratch")  # 66, 67, 71: mean 68 (a train run, not a bar)
    assert height == pytest.approx(68.0) and label == "from scratch 68.0"
    height, label = reference(ax, "teacher")
    assert height == pytest.approx(79.4) and label == "teacher 79.4"
    low, high = ax.get_ylim()
    assert low < 61.0 and high > 79.4  # every bar and both lines in view

    ax = figure("methods", folder, "--rows", "kd.name", "--sort", "name", "--order", "kd").axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["kd", "crd", "fitnet"]


def test_methods_scratch_row_and_embedded_baselines_become_the_line(tmp_path):
    folder = tmp_path / "runs"
    for seed, (ce, kd) in enumerate([(0.60, 0.70), (0.62, 0.72)]):
        record = distill_record("ce", PAIR_A, seed, ce, ce, 0.8)
        write(folder, record)
        record = distill_record("kd", PAIR_A, seed, kd, kd, 0.8)
        record["baseline"] = {"run_dir": f"outputs/train/scratch-s{seed}", "last": {"test/top1": kd - 0.2},
                              "best": {"epoch": 3, "test/top1": kd - 0.2}}
        write(folder, record)
    ax = figure("methods", folder, "--scratch", "ce").axes[0]  # the CE-only run is the scratch student
    assert [label.get_text() for label in ax.get_xticklabels()] == ["kd"]
    assert reference(ax, "from scratch")[0] == pytest.approx(61.0)
    ax = figure("methods", folder, "--baselines", "--filter", "kd.name=kd,-").axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["kd"]
    assert reference(ax, "from scratch")[0] == pytest.approx(51.0)


def test_methods_unknown_scratch_row_is_one_clear_error(runs, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as exit_info:
        plots.main(["methods", str(runs), "--out", str(tmp_path / "m"), "--scratch", "ce"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--scratch ce names no row; the rows are ['crd', 'kd']" in message


def test_close_reference_lines_get_labels_apart(tmp_path):
    folder = tmp_path / "runs"
    methods_with_scratch(folder, [0.79, 0.79, 0.79], teacher=0.7905)  # scratch 79.0, teacher 79.05
    ax = figure("methods", folder).axes[0]
    labels = [text for text in ax.texts if text.get_text().startswith(("teacher", "from scratch"))]
    assert len(labels) == 2 and not labels[0].get_window_extent().overlaps(labels[1].get_window_extent())


# ----------------------------------------------------------------------------------------------- tick labels
def ticks_collide(labels: list[Text]) -> bool:
    """Whether neighbouring tick labels touch: level or upright labels by their boxes; labels slanted by
    the same angle are parallel strips one text height thick, apart by the spacing times sin(angle)."""
    renderer = labels[0].figure.canvas.get_renderer()
    labels = sorted(labels, key=lambda label: label.get_window_extent().x1)
    for left, right in zip(labels, labels[1:]):
        angle = left.get_rotation() % 180
        if angle in (0, 90):
            if left.get_window_extent().overlaps(right.get_window_extent()):
                return True
            continue
        _, height, _ = renderer.get_text_width_height_descent(left.get_text(), left.get_fontproperties(), ismath=False)
        spacing = abs(right.get_transform().transform(right.get_position())[0]
                      - left.get_transform().transform(left.get_position())[0])
        if spacing * math.sin(math.radians(angle)) < height:
            return True
    return False


@pytest.mark.parametrize("count, name", [(4, "m{}"), (12, "method_with_a_long_name_{:02d}"), (40, "distiller_{:02d}")])
def test_tick_labels_never_overlap(tmp_path, count, name):
    many_methods(tmp_path / "runs", count, name)
    fig = figure("methods", tmp_path / "runs")
    ax = fig.axes[0]
    labels = [label for label in ax.get_xticklabels() if label.get_text()]
    assert len(labels) == count and not ticks_collide(labels)
    assert all(not label.get_window_extent().overlaps(ax.xaxis.label.get_window_extent()) for label in labels)
    if count == 4:
        assert all(label.get_rotation() == 0 for label in labels)  # short labels stay level


# ----------------------------------------------------------------------------------------------- legibility
@pytest.mark.parametrize("kind, argv", [
    ("methods", ["--rows", "kd.name"]),
    ("methods", ["--rows", "kd.name", "--group", "teacher.model.name,student.name"]),
    ("fidelity", ["--group", "kd.name", "--mean"]),
    ("capacity", ["--x", "student.name", "--group", "kd.name", "--teacher"]),
])
def test_text_is_legible_at_the_width_a_readme_shows(tmp_path, kind, argv):
    many_methods(tmp_path / "runs", 26)
    for seed in (0, 1):
        write(tmp_path / "runs", distill_record("method_00", PAIR_B, seed, 0.6, 0.6, 0.7))
    fig = figure(kind, tmp_path / "runs", *argv)
    saved_px = fig.get_tightbbox().width * DPI  # savefig(bbox_inches="tight") at the scripts' dpi
    shown = min(1.0, README_WIDTH_PX / saved_px)
    sizes = [text.get_fontsize() for text in fig.findobj(Text) if text.get_visible() and text.get_text().strip()]
    assert min(sizes) / 72 * DPI * shown >= LEGIBLE_PX

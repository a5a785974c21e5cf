"""How plots.py's figures are laid out so they read at a glance: one (colour, marker) pair per group,
legends outside the axes, tick labels that never run into each other, direct labels for reference lines and
outlying points, a magnified panel for a crowd of points, and a check that the smallest text stays legible
where a README shows the figure."""
from __future__ import annotations

import math
import sys
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (and no display on servers)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

# A Markdown page (GitHub's README column) shows an image at most about this wide, scaled down to fit.
SHOWN_WIDTH_PX = 830
MIN_SHOWN_TEXT_PX = 10  # smallest legible text at that width (about 7.5 pt on a screen)
DPI = 150
# More groups than tab10 has colours: tab20's ten strong colours, then its ten pale ones, and markers that
# change with every group, so no two groups share a (colour, marker) pair below 20 x 7 = 140 groups.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def group_styles(names: list[str]) -> dict[str, dict]:
    """{group: {"color", "marker"}}: tab10 colours and round markers for up to 10 groups; beyond that
    distinct (colour, marker) pairs."""
    if len(names) <= 10:
        colors = plt.get_cmap("tab10").colors
        return {name: {"color": colors[i], "marker": "o"} for i, name in enumerate(names)}
    tab20 = plt.get_cmap("tab20").colors
    colors = tab20[0::2] + tab20[1::2]
    return {name: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(names)}


def legend_outside(ax, handles, labels, where: str = "right", title: str | None = None) -> None:
    """One legend beside the axes `ax` (right, top aligned) or under all of the figure's axes (bottom), never
    over the data; a long legend spreads over columns."""
    if not handles:
        return
    if where == "right":
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, title=title,
                  ncols=1 + len(handles) // 16)
        return
    font_pt = FontProperties(size=plt.rcParams["legend.fontsize"]).get_size_in_points()
    width_chars = ax.figure.get_figwidth() * 72 / (0.6 * font_pt)
    ncols = max(1, min(len(handles), int(width_chars // (max(map(len, labels)) + 6))))
    ax.figure.legend(handles, labels, loc="outside lower center", title=title, ncols=ncols)


def fit_tick_labels(ax) -> None:
    """Leaves the x tick labels level if they fit side by side, else slants them (45°), else stands them
    upright (90°); measured on the drawn figure, so it holds for any font and figure size."""
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    labels = [label for label in ax.get_xticklabels() if label.get_text()]
    if len(labels) < 2:
        return
    boxes = [label.get_window_extent(renderer) for label in labels]
    gaps = [b.x0 - a.x1 for a, b in pairwise(sorted(boxes, key=lambda box: box.x0))]
    if min(gaps) > 0.3 * boxes[0].height:
        return
    centres = sorted((box.x0 + box.x1) / 2 for box in boxes)
    spacing = min(b - a for a, b in pairwise(centres))
    line_height = max(box.height for box in boxes)
    # Parallel labels slanted by an angle stand spacing * sin(angle) apart; they need a line's height.
    angle = 45 if spacing * math.sin(math.radians(45)) > 1.3 * line_height else 90
    for label in labels:  # the label ends at its tick
        label.set(rotation=angle, rotation_mode="anchor", ha="right", va="top" if angle == 45 else "center")


def label_lines_right(ax, items: list[tuple[float, str, object]]) -> None:
    """Direct labels just outside the right spine, level with each horizontal line (y, text, colour),
    pushed apart where lines lie closer than a line of text."""
    if not items:
        return
    fig = ax.figure
    fig.draw_without_rendering()  # the axes' final height, to convert data to points
    bottom, top = ax.get_ylim()
    height_pt = ax.get_window_extent().height * 72 / fig.dpi
    gap = 1.25 * plt.rcParams["font.size"]
    placed = []  # (wanted, shown) heights in points from the axes' bottom
    for y, _, _ in sorted(items, key=lambda item: item[0]):
        wanted = (y - bottom) / (top - bottom) * height_pt
        placed.append((wanted, max(wanted, placed[-1][1] + gap) if placed else wanted))
    for (y, text, color), (wanted, shown) in zip(sorted(items, key=lambda item: item[0]), placed):
        ax.annotate(text, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(4, shown - wanted),
                    textcoords="offset points", ha="left", va="center", color=color, annotation_clip=False)


def dense_window(values: list[float], share: float = 0.8, narrow: float = 0.25) -> tuple[float, float] | None:
    """The narrowest interval that holds `share` of the values, padded, when it spans less than `narrow` of
    their whole range (a crowd pushed together by outliers); else None."""
    values = sorted(values)
    count = math.ceil(share * len(values))
    if len(values) < 5:
        return None
    width, start = min((values[i + count - 1] - values[i], i) for i in range(len(values) - count + 1))
    whole = values[-1] - values[0]
    if whole <= 0 or width > narrow * whole:
        return None
    pad = max(0.15 * width, 0.02 * whole)
    return values[start] - pad, values[start + count - 1] + pad


def show_zoom(whole, magnified, window: tuple[float, float],
              points: list[tuple[float, float, float]]) -> tuple[float, float, float, float]:
    """Limits `magnified` to the x window and the y extent (with error bars) of the crowd of points (x, y,
    y error) inside it, and marks that box (x0, x1, y0, y1, returned) on `whole`."""
    low, high = window
    inside = [(y, error) for x, y, error in points if low <= x <= high]
    # The crowd's own outliers in y (one point far above the rest) stay on the whole panel only.
    bottom, top = dense_window([y for y, _ in inside], share=0.85, narrow=0.5) or (
        min(y - error for y, error in inside), max(y + error for y, error in inside))
    pad = 0.05 * (top - bottom) or 0.5
    bottom, top = bottom - pad, top + pad
    magnified.set(xlim=window, ylim=(bottom, top), title="the dashed box above, magnified")
    whole.add_patch(Rectangle((low, bottom), high - low, top - bottom, fill=False, linestyle="--",
                              edgecolor="0.35", linewidth=1.0, zorder=3))
    return low, high, bottom, top


def label_points_outside(ax, box: tuple[float, float, float, float],
                         items: list[tuple[float, float, str, object]]) -> None:
    """Names the points (x, y, text, colour) outside the box (x0, x1, y0, y1), farthest first, beside the
    point on the side facing away from the box, else on another side; a name that would touch the box or a
    name already placed on every side is left to the legend."""
    x0, x1, y0, y1 = box
    ax.autoscale_view()  # the final limits, so that data map to axes fractions
    centre = ax.transLimits.transform(((x0 + x1) / 2, (y0 + y1) / 2))
    renderer = ax.figure.canvas.get_renderer()
    taken = [Bbox(ax.transData.transform([(x0, y0), (x1, y1)]))]
    outside = [(ax.transLimits.transform((x, y)) - centre, x, y, text, color) for x, y, text, color in items
               if not (x0 <= x <= x1 and y0 <= y <= y1)]
    for (dx, dy), x, y, text, color in sorted(outside, key=lambda item: -math.hypot(*item[0])):
        away = (1 if dx >= 0 else -1, 1 if dy >= 0 else -1)
        for right, up in (away, (-away[0], away[1]), (away[0], -away[1]), (-away[0], -away[1])):
            label = ax.annotate(text, (x, y), xytext=(6 * right, 5 * up), textcoords="offset points",
                                ha="left" if right > 0 else "right", va="bottom" if up > 0 else "top", color=color)
            extent = label.get_window_extent(renderer)
            if not any(extent.overlaps(other) for other in taken):
                taken.append(extent)
                break
            label.remove()


def smallest_shown_text_px(fig) -> float:
    """Height in pixels of the figure's smallest text when the saved image is shown SHOWN_WIDTH_PX wide
    (or at its own size, if narrower)."""
    renderer = fig.canvas.get_renderer()
    width_in = fig.get_tightbbox(renderer).width
    scale = min(1.0, SHOWN_WIDTH_PX / (width_in * DPI))
    sizes = [text.get_fontsize() for text in fig.findobj(Text)
             if text.get_visible() and text.get_text().strip()]
    return min(sizes, default=math.inf) / 72 * DPI * scale


def save(fig, prefix: Path) -> list[Path]:
    """PREFIX.png and PREFIX.pdf; warns when the smallest text would be illegible in a README."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    fig.draw_without_rendering()
    shown = smallest_shown_text_px(fig)
    if shown < MIN_SHOWN_TEXT_PX:
        print(f"warning: {prefix.name}'s smallest text shows {shown:.1f} px high in a {SHOWN_WIDTH_PX} px README "
              f"column (legible from {MIN_SHOWN_TEXT_PX}); fewer groups or --filter make it narrower",
              file=sys.stderr)
    paths = []
    for suffix in (".png", ".pdf"):
        path = prefix.with_name(prefix.name + suffix)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        paths.append(path)
        print(f"wrote {path}", file=sys.stderr)
    plt.close(fig)
    return paths

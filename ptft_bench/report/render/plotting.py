"""What every figure shares: the Agg backend, print styling, one colour per strategy family,
saving, and direct point labels placed so that they do not overlap.

Made for print: every axis is labelled with its unit, counts spanning decades use a log scale,
each strategy family has one colour (variants within a family differ by marker), and points are
labelled where they are instead of through a legend of many entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are generated on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
DPI = 150
LABEL_SIZE = 7
plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
    }
)

Style = dict[str, dict[str, Any]]


def variant_styles(lb: pd.DataFrame) -> Style:
    """{variant: {"color", "marker", "linestyle", "family"}}: one colour per family."""
    palette = plt.get_cmap("tab10").colors
    fams = sorted(lb["strategy_family"].dropna().unique(), key=lambda f: (f != "full", f))
    colour = {f: palette[i % len(palette)] for i, f in enumerate(fams)}
    styles: Style = {}
    for fam in fams:
        variants = sorted(lb.loc[lb["strategy_family"] == fam, "variant"].unique())
        for j, v in enumerate(variants):
            styles[v] = {
                "color": colour[fam],
                "marker": MARKERS[j % len(MARKERS)],
                # lines of one family share a colour: dash patterns tell them apart
                "linestyle": LINESTYLES[j % len(LINESTYLES)],
                "family": fam,
            }
    return styles


def style_of(styles: Style, variant: str) -> dict[str, Any]:
    """The variant's style; grey circles for a variant the leaderboard does not know."""
    return styles.get(variant, {"color": "0.5", "marker": "o", "linestyle": "-", "family": "?"})


def family_legend(
    fig: Any, styles: Style, variants: list[str], anchor=(1.0, 0.95), grey: str = ""
) -> None:
    """A legend of the strategy families present (a handful of colours, not every variant);
    ``grey`` names what grey points mean, when there are any."""
    fams = {}
    for v in variants:
        st = style_of(styles, v)
        fams.setdefault(st["family"], st["color"])
    handles = [Patch(color=c, label=f) for f, c in fams.items()]
    handles += [Patch(color="0.6", label=grey)] if grey else []
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=anchor, title="family")


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def log_if_decades(ax: Any, values: pd.Series, axis: str = "x") -> bool:
    v = values[(values > 0) & values.notna()]
    if len(v) and v.max() / v.min() >= 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


# Candidate label positions around a point (offset in points), tried in this order.
OFFSETS = (
    (5, 3),
    (5, -3),
    (-5, 3),
    (-5, -3),
    (0, 7),
    (0, -7),
    (12, 10),
    (-12, 10),
    (12, -10),
    (-12, -10),
    (0, 16),
    (0, -16),
    (22, 0),
    (-22, 0),
    (18, 22),
    (-18, 22),
    (18, -22),
    (-18, -22),
    (0, 28),
    (0, -28),
)


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _alignment(offset: tuple[float, float]) -> tuple[str, str]:
    dx, dy = offset
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    return ha, "bottom" if dy > 0 else "top" if dy < 0 else "center"


def _box(px: float, py: float, w: float, h: float, offset, scale: float) -> Bbox:
    """Display-space box of a w x h label placed at ``offset`` points from (px, py)."""
    ha, va = _alignment(offset)
    x = px + offset[0] * scale - {"left": 0.0, "right": w, "center": w / 2}[ha]
    y = py + offset[1] * scale - {"bottom": 0.0, "top": h, "center": h / 2}[va]
    return Bbox.from_extents(x, y, x + w, y + h)


def _cost(box: Bbox, placed: list[Bbox], marks: list[Bbox], frame: Bbox, offset) -> float:
    outside = box.width * box.height - _overlap(box, frame)
    cost = sum(_overlap(box, b) for b in placed) + sum(_overlap(box, m) for m in marks)
    return cost + 2 * outside + 0.01 * (abs(offset[0]) + abs(offset[1]))


def place_labels(
    ax: Any,
    points: list[tuple[float, float, str, Any]],
    spans: list[tuple[float, float]] | None = None,
) -> None:
    """Label each (x, y, text, colour) next to its point, greedily choosing for each label the
    candidate offset that overlaps least with the labels already placed, all markers, the
    vertical error bars ``spans`` ((low, high) per point) and the axes' edges (a simple repel;
    call it once the axes' limits and layout are final)."""
    renderer = ax.figure.canvas.get_renderer()
    ax.set_xlim(ax.get_xlim())  # labels must not move the limits they were placed in
    ax.set_ylim(ax.get_ylim())
    frame = ax.get_window_extent(renderer)
    scale = ax.figure.dpi / 72  # points -> display pixels
    centres = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    marks = [Bbox.from_extents(px - 4, py - 4, px + 4, py + 4) for px, py in centres]
    for (x, _, _, _), (lo, hi) in zip(points, spans or []):
        (px, y0), (_, y1) = ax.transData.transform([(x, lo), (x, hi)])
        marks.append(Bbox.from_extents(px - 3, min(y0, y1), px + 3, max(y0, y1)))
    sizes = []
    for _, _, text, _ in points:  # a label's size does not depend on where it goes
        probe = ax.text(0, 0, text, fontsize=LABEL_SIZE)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    placed: list[Bbox] = []
    # Crowded points first: they have the fewest good places left.
    crowd = [sum(_overlap(m.expanded(8, 4), o) > 0 for o in marks) for m in marks[: len(points)]]
    for i in sorted(range(len(points)), key=lambda i: -crowd[i]):
        (px, py), (w, h) = centres[i], sizes[i]
        boxes = [(_box(px, py, w, h, off, scale), off) for off in OFFSETS]
        box, offset = min(boxes, key=lambda b: _cost(b[0], placed, marks, frame, b[1]))
        placed.append(box)
        x, y, text, colour = points[i]
        ha, va = _alignment(offset)
        far = abs(offset[0]) > 8 or abs(offset[1]) > 8
        arrow = {"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.6} if far else None
        ax.annotate(
            text,
            (x, y),
            xytext=offset,
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=LABEL_SIZE,
            color=colour,
            arrowprops=arrow,
            zorder=4,
        )

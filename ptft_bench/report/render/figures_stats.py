"""Statistical figures: forest plots of the gap to full fine-tuning (per task, with the
simultaneous intervals the leaderboards print, and averaged over the across-tasks table's tasks)
and the critical-difference diagram of mean ranks (Demšar 2006)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.report.evidence import Evidence, TaskEvidence, comparison_tasks
from ptft_bench.report.render.plotting import Style, family_legend, plt, save, style_of
from ptft_bench.report.stats.gaps import Gap
from ptft_bench.report.stats.ranks import RankComparison


def _forest(
    items: list[tuple[str, Gap | None, float, bool]], styles: Style, xlabel: str, title: str
) -> Any:
    """Rows (variant, gap or None, observed points, significant), best gap on top; a gap's bar
    is its simultaneous interval (`Gap.sim_low`, `sim_high`: the 95% one outside a family)."""
    items = sorted(items, key=lambda it: it[2])
    fig, ax = plt.subplots(figsize=(7.2, 0.34 * len(items) + 1.4))
    for y, (v, g, obs, sig) in enumerate(items):
        st = style_of(styles, v)
        if g is None:
            ax.plot(obs, y, marker="x", color=st["color"], ms=6, ls="none", zorder=3)
            continue
        lo, hi = 100 * g.sim_low, 100 * g.sim_high
        ax.plot([lo, hi], [y, y], color=st["color"], lw=1.6, solid_capstyle="butt", zorder=2)
        face = st["color"] if sig else "white"
        ax.plot(obs, y, marker="o", ms=6, color=st["color"], mfc=face, ls="none", zorder=3)
    ax.axvline(0, color="0.3", lw=1, ls="--", zorder=1)
    ax.set_yticks(range(len(items)), [it[0] for it in items])
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    family_legend(fig, styles, [it[0] for it in items], anchor=(1.0, 0.9))
    fig.tight_layout()
    return fig


def forest_figure(
    g: pd.DataFrame, ev: TaskEvidence | None, styles: Style, title: str, path: Path
) -> Path | None:
    """Each compared variant's gap to full fine-tuning on one task, with its simultaneous
    interval (filled: Holm-significant)."""
    if ev is None or ev.reference is None:
        return None
    ref = g[g["variant"] == ev.reference]["test_mean"].iloc[0]
    items = []
    for v in ev.eligible:
        if v == ev.reference:
            continue
        row = ev.row(v)
        if row is not None:
            gap = row.to_reference
            items.append((v, gap, 100 * gap.observed, gap.significant()))
        else:  # no predictions: the difference of means, without an interval
            score = g[g["variant"] == v]["test_mean"].iloc[0]
            items.append((v, None, score - ref, False))
    if not items:
        return None
    rows = ev.comparison.rows if ev.comparison else []
    m = max((r.to_reference.family for r in rows if r.has_evidence), default=0)
    shown = f"95% simultaneous, m = {m}" if m > 1 else "95% interval"
    xlabel = f"Δ test {ev.metric} vs `{ev.reference}` (points, {shown})"
    return save(_forest(items, styles, xlabel.replace("`", ""), title), path)


def forest_all_figure(lb: pd.DataFrame, evidence: Evidence, styles: Style, path: Path):
    """The mean over the across-tasks table's tasks (`evidence.comparison_tasks`, 2+ with
    evidence) of each variant's gap to full fine-tuning, with its 95% interval."""
    model = str(lb["model"].iloc[0])
    tasks = comparison_tasks(lb, model)
    evs = [evidence.task(t, model) for t in tasks]
    refs = {ev.reference for ev in evs if ev and ev.reference}
    if len(tasks) < 2 or len(refs) != 1:
        return None
    ref = refs.pop()
    variants = sorted({v for ev in evs if ev for v in ev.eligible if v != ref})
    items = []
    for v in variants:
        gap = evidence.mean_gap(model, v, ref, tasks)
        if gap is not None:
            items.append((v, gap, 100 * gap.observed, not gap.low <= 0 <= gap.high))
    if not items:
        return None
    xlabel = f"mean Δ test score vs {ref} over {len(tasks)} tasks (points, 95% interval)"
    return save(_forest(items, styles, xlabel, f"All tasks · {model}"), path)


def _cd_axis(ax: Any, k: int, cd: float) -> None:
    ax.set_xlim(0.5, k + 0.5)
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.08, color="black", lw=1)
        ax.text(r, 0.13, str(r), ha="center", va="bottom", fontsize=8)
    ax.hlines(0.45, 1, 1 + cd, color="black", lw=2)
    ax.vlines([1, 1 + cd], 0.4, 0.5, color="black", lw=1)
    ax.text(1 + cd / 2, 0.55, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)


def cd_figure(ranks: RankComparison, styles: Style, model: str, path: Path) -> Path | None:
    """Critical-difference diagram: mean ranks on an axis (1 = best, left), names joined to
    their rank, bars under the variants not distinguishable from one another."""
    order = np.argsort(ranks.mean_rank, kind="stable")
    k = len(order)
    half = (k + 1) // 2
    step = 0.32
    fig, ax = plt.subplots(figsize=(8.0, 1.6 + step * (half + len(ranks.groups)) * 1.2))
    _cd_axis(ax, k, ranks.cd)
    for j, i in enumerate(order):
        name, r = ranks.names[i], float(ranks.mean_rank[i])
        left = j < half
        level = -(j if left else k - 1 - j) * step - 0.35 - step * len(ranks.groups)
        x_text = 0.6 if left else k + 0.4
        colour = style_of(styles, name)["color"]
        ax.plot([r, r, x_text], [0, level, level], color=colour, lw=0.9)
        ax.text(
            x_text,
            level,
            f"{name} ({r:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
            color=colour,
        )
    pos = {n: float(ranks.mean_rank[i]) for i, n in enumerate(ranks.names)}
    for level, grp in enumerate(ranks.groups):
        xs = [pos[n] for n in grp]
        y = -0.18 - level * step
        ax.hlines(y, min(xs) - 0.05, max(xs) + 0.05, color="black", lw=3)
    ax.set_ylim(-(half + len(ranks.groups)) * step - 0.6, 0.9)
    ax.axis("off")
    f = ranks.friedman
    ax.set_title(
        f"Mean rank over {f.n_tasks} tasks · {model} (Friedman p = {f.p_value:.3g}; "
        f"Nemenyi α = 0.05)"
    )
    fig.tight_layout()
    return save(fig, path)

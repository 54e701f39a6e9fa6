"""Figures per task: quality against cost (points labelled directly, intervals as error bars,
Pareto frontier), learning curves and seed bars; `make_figures` writes them and the statistical
figures of `figures_stats` (forest plots, critical-difference diagrams).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.report.evidence import Evidence, TaskEvidence
from ptft_bench.report.render.figures_stats import cd_figure, forest_all_figure, forest_figure
from ptft_bench.report.render.plotting import (
    Style,
    family_legend,
    log_if_decades,
    place_labels,
    plt,
    safe_name,
    save,
    style_of,
    variant_styles,
)
from ptft_bench.report.stats.descriptive import pareto_mask


def _legend_outside(fig: Any, axes: list[Any]) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        title="strategy variant",
    )


TRADEOFF_AXES = (
    ("trainable_params", "trainable parameters (count)", 1.0),
    ("train_seconds", "train time (s)", 1.0),
    ("memory_bytes", "training memory, the run's own (MiB)", 2.0**-20),
    ("inference_overhead", "serving latency at batch 1 (× the base model's)", 1.0),
)


def score_intervals(g: pd.DataFrame, ev: TaskEvidence | None) -> dict[str, tuple[float, float]]:
    """{variant: (low, high)} of the mean test score in points: the bootstrap interval where
    there are predictions, else the t interval over 3+ seeds; absent otherwise."""
    out = {}
    for _, r in g.iterrows():
        v = str(r["variant"])
        if ev is not None and ev.has(v):
            lo, hi = ev.samples.score_interval(v)
            out[v] = (100 * lo, 100 * hi)
        elif math.isfinite(r["test_ci_low"]):
            out[v] = (r["test_ci_low"], r["test_ci_high"])
    return out


def _tradeoff_panel(ax, g: pd.DataFrame, col: str, scale: float, styles: Style, ci) -> pd.Series:
    """Points with interval bars on one cost axis, and the frontier of those that learned."""
    x = g[col] * scale
    for (_, r), xv in zip(g.iterrows(), x):
        st = style_of(styles, r["variant"])
        lo, hi = ci.get(r["variant"], (r["test_mean"], r["test_mean"]))
        yerr = [[max(0.0, r["test_mean"] - lo)], [max(0.0, hi - r["test_mean"])]]
        colour = "0.6" if r["did_not_learn"] else st["color"]
        ax.errorbar(
            xv,
            r["test_mean"],
            yerr=yerr,
            fmt=st["marker"],
            color=colour,
            ms=5,
            capsize=2,
            lw=0.8,
            zorder=3,
        )
    learned = ~g["did_not_learn"].astype(bool)
    mask = np.array(pareto_mask(x.where(learned).tolist(), g["test_mean"].tolist()))
    if mask.any():
        front = pd.DataFrame({"x": x[mask], "y": g["test_mean"][mask]}).sort_values("x")
        ax.plot(
            front["x"], front["y"], ls="--", color="0.35", lw=1, drawstyle="steps-post", zorder=2
        )
    return x


def tradeoff_figure(
    g: pd.DataFrame, styles: Style, metric: str, title: str, path: Path, ev=None
) -> Path | None:
    """Quality vs trainable parameters, train time and peak memory; every point labelled."""
    g = g[g["test_mean"].notna()]
    axes_spec = [a for a in TRADEOFF_AXES if g[a[0]].notna().any()]
    if g.empty or not axes_spec:
        return None
    fig, axes = plt.subplots(
        1, len(axes_spec), figsize=(4.6 * len(axes_spec), 4.2), sharey=True, squeeze=False
    )
    axes = list(axes[0])
    ci = score_intervals(g, ev)
    xs = []
    for ax, (col, label, scale) in zip(axes, axes_spec):
        x = _tradeoff_panel(ax, g, col, scale, styles, ci)
        logged = log_if_decades(ax, x)
        ax.set_xlabel(label + (", log scale" if logged else ""))
        ax.margins(x=0.15, y=0.12)
        xs.append(x)
    axes[0].set_ylabel(f"test {metric} (points, 95% interval)")
    fig.suptitle(title)
    dead = g["did_not_learn"].astype(bool)
    family_legend(
        fig, styles, list(g.loc[~dead, "variant"]), grey="learned nothing" if dead.any() else ""
    )
    fig.tight_layout()
    for ax, x in zip(axes, xs):
        colours = [
            "0.45" if d else style_of(styles, v)["color"]
            for v, d in zip(g["variant"], g["did_not_learn"])
        ]
        spans = [ci.get(v, (m, m)) for v, m in zip(g["variant"], g["test_mean"])]
        place_labels(ax, list(zip(x, g["test_mean"], g["variant"].astype(str), colours)), spans)
    return save(fig, path)


def _curves(histories: list[list[dict[str, Any]]], metric: str) -> tuple[pd.Series, pd.Series]:
    """Seed-averaged train loss and validation metric (points) by step."""
    loss, val = [], []
    for hist in histories:
        for h in hist or []:
            if not isinstance(h, dict) or "step" not in h:
                continue
            if isinstance(h.get("validation"), dict) and metric in h["validation"]:
                val.append((h["step"], float(h["validation"][metric]) * 100))
            elif h.get("loss") is not None:
                loss.append((h["step"], float(h["loss"])))
    to_series = lambda pts: (  # noqa: E731
        pd.DataFrame(pts, columns=["step", "v"]).groupby("step")["v"].mean()
        if pts
        else pd.Series(dtype=float)
    )
    return to_series(loss), to_series(val)


def learning_curves(
    g: pd.DataFrame, styles: Style, metric: str, title: str, path: Path
) -> Path | None:
    """Train loss and validation metric by step, one line per variant (mean over seeds)."""
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(9, 3.4))
    drawn = False
    for _, r in g[g["test_mean"].notna()].iterrows():
        hist = r.get("history")
        loss, val = _curves(hist if isinstance(hist, list) else [], metric)
        st = styles[r["variant"]]
        if len(loss):
            # Per-step loss is noisy; a short moving average keeps the trend readable in print.
            smooth = loss.rolling(max(1, len(loss) // 25), center=True, min_periods=1).mean()
            ax_l.plot(
                smooth.index,
                smooth.values,
                color=st["color"],
                lw=1.2,
                ls=st.get("linestyle", "-"),
                label=r["variant"],
            )
            drawn = True
        if len(val):
            ax_v.plot(
                val.index,
                val.values,
                color=st["color"],
                marker=st["marker"],
                ms=4,
                lw=1.2,
                ls=st.get("linestyle", "-"),
                label=r["variant"],
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax_l.set_xlabel("optimizer step")
    ax_l.set_ylabel("train loss (moving average)")
    log_if_decades(
        ax_l,
        pd.Series(
            [ln.get_ydata().max() for ln in ax_l.lines]
            + [ln.get_ydata().min() for ln in ax_l.lines]
        ),
        axis="y",
    )
    ax_v.set_xlabel("optimizer step")
    ax_v.set_ylabel(f"validation {metric} (points)")
    fig.suptitle(title)
    _legend_outside(fig, [ax_l, ax_v])
    fig.tight_layout()
    return save(fig, path)


def seed_bars(g: pd.DataFrame, styles: Style, metric: str, title: str, path: Path) -> Path | None:
    """Horizontal bars of the mean test score, ±1 std whiskers and one dot per seed."""
    g = g[g["test_mean"].notna()].sort_values("test_mean")
    if g.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(g) + 1.2))
    y = np.arange(len(g))
    colours = [styles[v]["color"] for v in g["variant"]]
    std = g["test_std"].fillna(0).to_numpy()
    ax.barh(y, g["test_mean"], xerr=std, color=colours, alpha=0.8, capsize=3, height=0.6)
    xmax = min(110.0, float(g["test_mean"].max() + std.max()) + 12)
    for yi, (_, r) in zip(y, g.iterrows()):
        seeds = list(r["seed_scores"].values())
        ax.scatter(
            seeds,
            [yi] * len(seeds),
            s=12,
            color="black",
            zorder=3,
            label="individual seeds" if yi == 0 else None,
        )
        # Place the value label clear of the whisker and the seed dots.
        right = max(
            seeds + [r["test_mean"] + (r["test_std"] if math.isfinite(r["test_std"]) else 0)]
        )
        ax.text(
            right + 0.02 * xmax,
            yi,
            f"{r['test_mean']:.1f}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, g["variant"])
    ax.set_xlabel(f"test {metric} (points; bar = mean, whisker = ±1 std over seeds)")
    ax.set_xlim(0, xmax)
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def _task_figures(g, styles, ev, fig_dir: Path) -> dict[str, Path]:
    metric = (
        str(g["primary_metric"].dropna().iloc[0]) if g["primary_metric"].notna().any() else "score"
    )
    task, model = str(g["task"].iloc[0]), str(g["model"].iloc[0])
    stem, title = safe_name(f"{task}__{model}"), f"{task} · {model}"
    out = {
        "forest": forest_figure(g, ev, styles, title, fig_dir / f"forest_{stem}.png"),
        "tradeoffs": tradeoff_figure(
            g, styles, metric, title, fig_dir / f"tradeoffs_{stem}.png", ev
        ),
        "curves": learning_curves(g, styles, metric, title, fig_dir / f"curves_{stem}.png"),
        "bars": seed_bars(g, styles, metric, title, fig_dir / f"bars_{stem}.png"),
    }
    return {k: v for k, v in out.items() if v is not None}


def make_figures(
    lb: pd.DataFrame, evidence: Evidence, fig_dir: Path
) -> dict[tuple[str, str, str], Path]:
    """Write every figure; returns {(kind, task, model): path} ("" as task for the figures
    across tasks) for the ones with data."""
    styles = variant_styles(lb)
    out: dict[tuple[str, str, str], Path] = {}
    for (task, model), g in lb.groupby(["task", "model"]):
        ev = evidence.task(str(task), str(model))
        for kind, path in _task_figures(g, styles, ev, fig_dir).items():
            out[(kind, str(task), str(model))] = path
    for model, g in lb.groupby("model"):
        stem = safe_name(str(model))
        forest = forest_all_figure(g, evidence, styles, fig_dir / f"forest_all__{stem}.png")
        ranks = evidence.ranks.get(str(model))
        cd = cd_figure(ranks, styles, str(model), fig_dir / f"cd__{stem}.png") if ranks else None
        for kind, path in (("forest_all", forest), ("cd", cd)):
            if path is not None:
                out[(kind, "", str(model))] = path
    return out

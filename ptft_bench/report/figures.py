"""Figures (matplotlib, Agg backend): trade-offs with Pareto frontiers, learning curves, seed bars.

Made for print: every axis is labelled with its unit, counts spanning decades use a log scale,
each strategy family has one colour (variants within a family differ by marker), and legends sit
outside the axes so they never hide data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are generated on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ptft_bench.report.stats import pareto_mask  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
DPI = 150
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
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]


def variant_styles(lb: pd.DataFrame) -> Style:
    """{variant: {"color", "marker", "family"}}: one colour per family, markers within it."""
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _log_if_decades(ax: Any, values: pd.Series, axis: str = "x") -> bool:
    v = values[(values > 0) & values.notna()]
    if len(v) and v.max() / v.min() >= 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


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


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


TRADEOFF_AXES = (
    ("trainable_params", "trainable parameters (count)", 1.0),
    ("train_seconds", "train time (s)", 1.0),
    ("peak_memory_bytes", "peak memory (MiB)", 2.0**-20),
)


def tradeoff_figure(
    g: pd.DataFrame, styles: Style, metric: str, title: str, path: Path
) -> Path | None:
    """Quality vs trainable parameters, train time and peak memory, Pareto frontiers dashed."""
    g = g[g["test_mean"].notna()]
    axes_spec = [a for a in TRADEOFF_AXES if g[a[0]].notna().any()]
    if g.empty or not axes_spec:
        return None
    fig, axes = plt.subplots(
        1, len(axes_spec), figsize=(3.6 * len(axes_spec), 3.4), sharey=True, squeeze=False
    )
    axes = list(axes[0])
    for ax, (col, label, scale) in zip(axes, axes_spec):
        x = g[col] * scale
        for (_, r), xv in zip(g.iterrows(), x):
            st = styles[r["variant"]]
            err = r["test_std"] if math.isfinite(r["test_std"]) else None
            ax.errorbar(
                xv,
                r["test_mean"],
                yerr=err,
                fmt=st["marker"],
                color=st["color"],
                ms=6,
                capsize=2,
                lw=1,
                label=r["variant"],
                zorder=3,
            )
        mask = np.array(pareto_mask(x.tolist(), g["test_mean"].tolist()))
        if mask.sum() >= 1:
            front = pd.DataFrame({"x": x[mask], "y": g["test_mean"][mask]}).sort_values("x")
            ax.plot(
                front["x"],
                front["y"],
                ls="--",
                color="0.35",
                lw=1,
                drawstyle="steps-post",
                label="Pareto frontier",
                zorder=2,
            )
        logged = _log_if_decades(ax, x)
        ax.set_xlabel(label + (", log scale" if logged else ""))
        ax.margins(x=0.12, y=0.12)
    axes[0].set_ylabel(f"test {metric} (points)")
    fig.suptitle(title)
    _legend_outside(fig, axes)
    fig.tight_layout()
    return _save(fig, path)


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
    _log_if_decades(
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
    return _save(fig, path)


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
    return _save(fig, path)


def make_figures(lb: pd.DataFrame, fig_dir: Path) -> dict[tuple[str, str, str], Path]:
    """Write every figure; returns {(kind, task, model): path} for the ones with data."""
    styles = variant_styles(lb)
    out: dict[tuple[str, str, str], Path] = {}
    for (task, model), g in lb.groupby(["task", "model"]):
        metric = (
            str(g["primary_metric"].dropna().iloc[0])
            if g["primary_metric"].notna().any()
            else "score"
        )
        stem = _safe(f"{task}__{model}")
        title = f"{task} · {model}"
        for kind, fn in (
            ("tradeoffs", tradeoff_figure),
            ("curves", learning_curves),
            ("bars", seed_bars),
        ):
            path = fn(g, styles, metric, title, fig_dir / f"{kind}_{stem}.png")
            if path is not None:
                out[(kind, str(task), str(model))] = path
    return out

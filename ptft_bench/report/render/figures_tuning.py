"""Figures of the tuning section, per (task, model): the expected best validation score after n
trials (one line per variant, `stats.tuning`), and every trial's validation score against its
learning rate (log scale; pruned trials hollow, collapsed or failed ones as crosses, the
selected trial ringed). Drawn with the styles of `plotting` (one colour per strategy family).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ptft_bench.report.render.plotting import plt, safe_name, save, style_of, variant_styles


def _legend(fig: Any, ax: Any, title: str) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title=title, fontsize=7)


def curve_figure(g: pd.DataFrame, styles: dict, metric: str, title: str, path: Path) -> Path | None:
    """Expected best validation score (points) against the number of trials, per variant."""
    rows = [r for _, r in g.iterrows() if r["tuning"].get("expected_best")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    n_max = 1
    for r in sorted(rows, key=lambda r: str(r["variant"])):
        curve = r["tuning"]["expected_best"]
        st = style_of(styles, r["variant"])
        ns = list(range(1, len(curve) + 1))
        n_max = max(n_max, len(curve))
        ax.plot(
            ns,
            curve,
            color=st["color"],
            marker=st["marker"],
            ls=st.get("linestyle", "-"),
            ms=4,
            lw=1.2,
            label=str(r["variant"]),
        )
    ax.set_xticks(range(1, n_max + 1) if n_max <= 12 else ax.get_xticks())
    ax.set_xlabel("trials (n)")
    ax.set_ylabel(f"expected best validation {metric} (points)")
    ax.set_title(title)
    _legend(fig, ax, "strategy variant")
    fig.tight_layout()
    return save(fig, path)


def _y(r: pd.Series) -> float:
    """A trial's validation score: the best it reached, else its final one (NaN: none)."""
    return r["value"] if math.isfinite(r["value"]) else r["validation"]


def _trial_points(ax: Any, t: pd.DataFrame, st: dict, label: str) -> bool:
    t = t.assign(y=[_y(r) for _, r in t.iterrows()]).dropna(subset=["y"]).sort_values("lr")
    t = t[t["lr"] > 0]
    if t.empty:
        return False
    colour, marker = st["color"], st["marker"]
    if not any(t["params"].map(bool)):  # the lr alone was searched: a line reads as a profile
        ax.plot(t["lr"], t["y"], color=colour, lw=0.8, ls=st.get("linestyle", "-"), alpha=0.5)
    complete, pruned = t[t["outcome"] == "complete"], t[t["outcome"] == "pruned"]
    failed = t[t["outcome"] == "failed"]
    ax.scatter(complete["lr"], complete["y"], color=colour, marker=marker, s=28, label=label)
    ax.scatter(
        pruned["lr"], pruned["y"], facecolors="none", edgecolors=[colour], marker=marker, s=28
    )
    ax.scatter(failed["lr"], failed["y"], color=colour, marker="x", s=28)
    best = t[t["selected"].astype(bool)]
    ax.scatter(best["lr"], best["y"], facecolors="none", edgecolors="black", s=110, lw=1.0)
    return True


def lr_figure(t: pd.DataFrame, styles: dict, metric: str, title: str, path: Path) -> Path | None:
    """Every trial's validation score against its learning rate, one series per variant."""
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = False
    for variant, g in t.groupby("variant", sort=True):
        drawn |= _trial_points(ax, g, style_of(styles, str(variant)), str(variant))
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"validation {metric} (points)")
    ax.set_title(title)
    for marker, face, text in (("o", "0.3", "complete"), ("o", "none", "pruned")):
        ax.scatter([], [], marker=marker, facecolors=face, edgecolors="0.3", s=28, label=text)
    ax.scatter([], [], marker="x", color="0.3", s=28, label="collapsed / failed")
    ax.scatter([], [], facecolors="none", edgecolors="black", s=110, label="selected")
    _legend(fig, ax, "variant · trial")
    fig.tight_layout()
    return save(fig, path)


def tuning_figures(
    lb: pd.DataFrame, trials: pd.DataFrame, fig_dir: Path
) -> dict[tuple[str, str, str], Path]:
    """Both figures for each tuned (task, model): {(kind, task, model): path} for those drawn
    ("tuning_curve", "tuning_lr")."""
    if lb.empty or "tuning" not in lb or trials.empty:
        return {}
    rows = lb[lb["tuning"].map(bool)]
    styles = variant_styles(lb)
    out: dict[tuple[str, str, str], Path] = {}
    for (task, model), g in rows.groupby(["task", "model"]):
        metric = next((str(m) for m in g["primary_metric"] if isinstance(m, str)), "score")
        stem, title = safe_name(f"{task}__{model}"), f"{task} · {model}"
        mine = trials[(trials["task"] == task) & (trials["model"] == model)]
        drawn = {
            "tuning_curve": curve_figure(
                g, styles, metric, title, fig_dir / f"tuning_curve_{stem}.png"
            ),
            "tuning_lr": lr_figure(mine, styles, metric, title, fig_dir / f"tuning_lr_{stem}.png"),
        }
        out.update({(k, str(task), str(model)): p for k, p in drawn.items() if p is not None})
    return out

"""`ptft-bench list`: strategies with parameters, tasks with metrics and data sources, suites."""

from __future__ import annotations

import tomllib


def print_listing(what: str = "all") -> None:
    if what in ("strategies", "all"):
        _strategies()
    if what in ("tasks", "all"):
        _tasks()
    if what in ("suites", "all"):
        _suites()


def _strategies() -> None:
    from ptft_bench.strategy.registry import list_strategies

    print("STRATEGIES  (ptft-bench run --strategies NAME or NAME:param=value,...)")
    for info in list_strategies():
        lrs = ", ".join(f"{x:g}" for x in info.default_lrs)
        print(f"  {info.name:<20} [{info.family}] {info.description}  (default lrs: {lrs})")
        for p in info.params:
            if p.name == "...":
                print(f"      ... {p.help}")
            else:
                print(f"      {p.name} ({p.type}, default {p.default!r}): {p.help}")
    print()


def _tasks() -> None:
    from ptft_bench.tasks import list_tasks

    print("TASKS")
    for spec in list_tasks():
        if getattr(spec, "is_generation", False):
            kind, texts = "generation", "prompt -> text"
        else:
            kind = "regression" if spec.is_regression else f"{spec.num_labels} classes"
            texts = " + ".join(spec.text_columns)
        src = getattr(spec, "source_help", "") or getattr(spec, "description", "")
        selection = getattr(spec, "selection_metric", spec.primary_metric)
        chosen = "" if selection == spec.primary_metric else f"; selection {selection}"
        print(
            f"  {spec.name:<16} {texts:<24} {kind:<11} metrics: {', '.join(spec.metrics)} "
            f"(primary {spec.primary_metric}{chosen})"
        )
        if src:
            print(f"      data: {src}")
    print(
        "  custom tasks: a CSV / TSV / JSON-lines file (csv:PATH?text=COL&label=COL, or for "
        "generation gen:PATH?prompt=COL&target=COL), see README (Tasks)"
    )
    print()


def _suites() -> None:
    from ptft_bench.config import bundled_suites

    print("SUITES  (ptft-bench run --suite NAME)")
    for name, path in sorted(bundled_suites().items()):
        raw = tomllib.loads(path.read_text())
        print(f"  {name:<16} {raw.get('description', '')}")
    print()

"""Custom tasks from any CSV / TSV / JSON-lines file.

Two ways to use one:

- in code: ``spec = custom_task("reviews.csv", text_columns=["review"], label_column="stars")``
  registers the task under ``spec.name`` (default: the file's stem), and ``load_task(spec.name)``
  loads it;
- by name string (suite files, the command line): ``"csv:reviews.csv"``, ``"tsv:PATH"``,
  ``"jsonl:PATH"`` or ``"file:PATH"`` (format from the suffix), with optional settings after
  ``?``: ``csv:reviews.csv?text=title,body&label=stars&regression=1&test=reviews_test.csv``.
  Without ``text=`` the usual column names are tried (text, sentence, sentence1/sentence2, ...).

String labels become classes named by the sorted distinct values of the training file.

Generation tasks from a file (prompt -> text; see ``ptft_bench.tasks.generation`` for the frames):

- in code: ``custom_generation_task("pairs.jsonl", prompt_column="question", target_column="answer")``;
- by name string: ``gen:PATH?prompt=COLUMN&target=COLUMN&test=PATH`` (CSV, TSV, JSON lines; format
  from the suffix, or ``&format=csv|tsv|jsonl|json``; ``&primary=chrf`` to rank by another metric).
  Without ``prompt=`` / ``target=`` the usual names are tried (prompt, input, source, mr /
  target, output, completion, reference, ref). Rows sharing a prompt are the references of one
  input in validation and test; validation (and test, without ``test=``) is held out by prompt.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from ptft_bench.errors import UserError
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS
from ptft_bench.tasks.sources import label_names_from, read_table
from ptft_bench.tasks.spec import (
    CUSTOM_TASKS,
    GENERATION_TASKS,
    GLUE_TASKS,
    MOVIE_TASKS,
    TaskSpec,
    generation_spec,
)

FILE_PREFIXES = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "json": "json", "file": None}
GENERATION_PREFIX = "gen"
PROMPT_COLUMNS = ("prompt", "input", "source", "mr")
TARGET_COLUMNS = ("target", "output", "completion", "reference", "ref")

# Tried in order when no text columns are given: pairs first, so a pair file is not read as a
# single-sentence task by accident.
AUTO_TEXT_COLUMNS = [
    ("text_a", "text_b"),
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("text",),
    ("sentence",),
    ("review",),
    ("text_a",),
]


@dataclass(frozen=True)
class CustomSource:
    """Where a custom task's rows come from and which raw columns to read."""

    path: str
    text_columns: tuple[str, ...]
    label_column: str
    fmt: str | None = None
    test_path: str | None = None


# name -> source; the matching spec lives in spec.CUSTOM_TASKS. A generation task stores its
# prompt column as text_columns[0] and its target column as label_column.
CUSTOM_SOURCES: dict[str, CustomSource] = {}


def _guess_text_columns(columns: Sequence[str], path: str) -> tuple[str, ...]:
    for candidate in AUTO_TEXT_COLUMNS:
        if all(c in columns for c in candidate):
            return candidate
    raise UserError(
        f"{path}: cannot tell which column holds the text (columns: {list(columns)}): pass "
        "text_columns=[...] or write csv:PATH?text=COLUMN[,COLUMN2]"
    )


def custom_task(
    path: str | os.PathLike,
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    regression: bool = False,
    name: str | None = None,
    test_path: str | os.PathLike | None = None,
    label_names: Sequence[str] | None = None,
    fmt: str | None = None,
) -> TaskSpec:
    """Register a task read from a file and return its spec.

    Args:
        path: training file (.csv, .tsv, .jsonl or .json). Validation is held out from it; so is
            the test split unless ``test_path`` is given.
        text_columns: one column, or two for sentence pairs; None tries common names.
        label_column: the label column: class names/ids, or numbers when ``regression``.
        regression: a single real-valued target (metrics: Pearson, Spearman).
        name: registry name; default the file's stem. Built-in task names are refused.
        test_path: optional file with the same columns, used as the test split.
        label_names: fix the class set and order; default the sorted distinct training labels.
        fmt: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"json"``; default from the suffix.
    """
    p = Path(path).expanduser()
    name = _custom_name(name, p)
    raw = read_table(p, fmt)
    text = tuple(text_columns) if text_columns else _guess_text_columns(list(raw.columns), str(p))
    if len(text) not in (1, 2):
        raise UserError(f"text_columns must name 1 or 2 columns, got {list(text)}")
    missing = [c for c in (*text, label_column) if c not in raw.columns]
    if missing:
        raise UserError(
            f"{p}: column(s) {missing} not found; the file has columns {list(raw.columns)}"
        )
    if regression:
        names, metrics, primary = None, ("pearson", "spearman", "pearson_spearman"), "pearson"
    else:
        names = _class_names(raw[label_column], label_names, label_column, p)
        metrics = ("accuracy", "f1") if len(names) == 2 else ("accuracy", "f1_macro")
        primary = "accuracy"
    spec = TaskSpec(
        name=name,
        text_columns=("text_a", "text_b") if len(text) == 2 else ("text_a",),
        label_names=names,
        is_regression=regression,
        metrics=metrics,
        primary_metric=primary,
        num_labels=1 if regression else len(names),
        description=f"custom task from {p.name}" + (" (regression)" if regression else ""),
        origin=f"file: {p}" + (f" (test: {test_path})" if test_path else ""),
        family="custom",
    )
    CUSTOM_TASKS[name] = spec
    CUSTOM_SOURCES[name] = CustomSource(
        str(p), text, label_column, fmt, str(Path(test_path).expanduser()) if test_path else None
    )
    return spec


def _custom_name(name: str | None, p: Path) -> str:
    name = name or p.stem
    if (
        name.lower() in GLUE_TASKS
        or name.lower() in MOVIE_TASKS
        or name.lower() in GENERATION_TASKS
    ):
        raise UserError(f"custom task name {name!r} is a built-in task: pass another name=")
    return name


def _pick_column(
    given: str | None, candidates: tuple[str, ...], columns: list, what: str, p
) -> str:
    if given:
        if given not in columns:
            raise UserError(
                f"{p}: {what} column {given!r} not found; the file has columns {columns}"
            )
        return given
    for c in candidates:
        if c in columns:
            return c
    raise UserError(
        f"{p}: cannot tell which column holds the {what} (columns: {columns}): write "
        f"gen:PATH?{what}=COLUMN (or pass {what}_column=)"
    )


def custom_generation_task(
    path: str | os.PathLike,
    prompt_column: str | None = None,
    target_column: str | None = None,
    name: str | None = None,
    test_path: str | os.PathLike | None = None,
    fmt: str | None = None,
    primary_metric: str = "bleu",
) -> TaskSpec:
    """Register a generation task (prompt -> target text) read from a file and return its spec.

    Args:
        path: training file (.csv, .tsv, .jsonl or .json), one (prompt, target) pair per row;
            rows sharing a prompt are references of one input. Validation is held out from it
            by prompt; so is the test split unless ``test_path`` is given.
        prompt_column / target_column: the columns; None tries common names.
        name: registry name; default the file's stem. Built-in task names are refused.
        test_path: optional file with the same columns, used as the test split.
        fmt: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"json"``; default from the suffix.
        primary_metric: the ranking metric, one of ``GENERATION_METRICS``.
    """
    p = Path(path).expanduser()
    name = _custom_name(name, p)
    if primary_metric not in GENERATION_METRICS:
        raise UserError(
            f"primary metric {primary_metric!r} is not a generation metric: choose one of "
            f"{', '.join(GENERATION_METRICS)}"
        )
    columns = list(read_table(p, fmt).columns)
    prompt = _pick_column(prompt_column, PROMPT_COLUMNS, columns, "prompt", p)
    target = _pick_column(target_column, TARGET_COLUMNS, columns, "target", p)
    if prompt == target:
        raise UserError(f"{p}: prompt and target are the same column {prompt!r}: name two columns")
    test = str(Path(test_path).expanduser()) if test_path else None
    spec = generation_spec(
        name,
        f"custom generation task from {p.name} ({prompt} -> {target})",
        f"file: {p}" + (f" (test: {test_path})" if test_path else ""),
        primary=primary_metric,
    )
    CUSTOM_TASKS[name] = spec
    CUSTOM_SOURCES[name] = CustomSource(str(p), (prompt,), target, fmt, test)
    return spec


def _class_names(labels, label_names: Sequence[str] | None, column: str, p: Path) -> tuple:
    """The class set: as given, or the sorted distinct training labels (at least two)."""
    names = tuple(str(n) for n in label_names) if label_names else label_names_from(labels.dropna())
    if len(names) < 2:
        raise UserError(
            f"{p}: label column {column!r} has {len(names)} distinct value(s) "
            f"{list(names)}; a classification task needs at least 2 (or pass regression=True)"
        )
    return names


def is_file_task(name: str) -> bool:
    """True for name strings such as ``csv:PATH`` or ``gen:PATH`` that describe a file task."""
    prefix, sep, _ = name.partition(":")
    return bool(sep) and (prefix.lower() in FILE_PREFIXES or prefix.lower() == GENERATION_PREFIX)


def _parse(name: str, allowed: set[str]) -> tuple[str, str, dict[str, str]]:
    """(prefix, path, options) of a ``PREFIX:PATH?key=value&...`` task string."""
    prefix, _, rest = name.partition(":")
    path, _, query = rest.partition("?")
    if not path:
        raise UserError(f"task {name!r} names no file: write {prefix}:PATH")
    opts = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise UserError(f"task {name!r}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    return prefix, path, opts


def generation_task_from_string(name: str) -> TaskSpec:
    """Register (or refresh) the task a ``gen:PATH?prompt=...&target=...&test=...`` string names."""
    _, path, opts = _parse(name, {"prompt", "target", "test", "format", "primary"})
    fmt = opts.get("format") or None
    if fmt is not None and fmt not in ("csv", "tsv", "jsonl", "json"):
        raise UserError(f"task {name!r}: format {fmt!r} is not one of csv, tsv, jsonl, json")
    return custom_generation_task(
        path,
        prompt_column=opts.get("prompt") or None,
        target_column=opts.get("target") or None,
        name=name,
        test_path=opts.get("test") or None,
        fmt=fmt,
        primary_metric=opts.get("primary") or "bleu",
    )


def task_from_string(name: str) -> TaskSpec:
    """Register (or refresh) the task a ``csv:PATH?text=...&label=...`` (or ``gen:...``) string
    describes."""
    if name.partition(":")[0].lower() == GENERATION_PREFIX:
        return generation_task_from_string(name)
    prefix, path, opts = _parse(name, {"text", "label", "regression", "test", "labels"})
    split = lambda s: [c.strip() for c in s.split(",") if c.strip()] or None  # noqa: E731
    return custom_task(
        path,
        text_columns=split(opts["text"]) if "text" in opts else None,
        label_column=opts.get("label", "label"),
        regression=opts.get("regression", "0").lower() in ("1", "true", "yes"),
        name=name,
        test_path=opts.get("test") or None,
        label_names=split(opts["labels"]) if "labels" in opts else None,
        fmt=FILE_PREFIXES[prefix.lower()],
    )

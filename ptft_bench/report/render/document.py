"""A tiny document model, so that markdown and HTML are two renderings of the same content.

Text in `Paragraph`, `Bullets` and cells may use `**bold**` and `` `code` ``; renderers
translate those two and escape everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """A table cell: display text, a sort key for HTML tables, and a "best in column" flag."""

    text: str
    sort: float | str | None = None
    best: bool = False


@dataclass
class Table:
    """Rows of cells under column headers; `note` is shown under the table."""

    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    note: str = ""


@dataclass
class Figure:
    """A PNG written under the report folder (`path` relative to it)."""

    path: Path
    caption: str


@dataclass
class Paragraph:
    """One paragraph of text."""

    text: str


@dataclass
class Bullets:
    """A bulleted list."""

    items: list[str]


Block = Table | Figure | Paragraph | Bullets


@dataclass
class Section:
    """A titled part of the report; `level` 2 for top sections, 3 for subsections."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    """The whole report."""

    title: str
    sections: list[Section] = field(default_factory=list)


def mark_best(rows: list[list[Cell]], col: int, higher_is_better: bool) -> None:
    """Flag the best numeric sort key in column `col` (all ties flagged); needs 2+ values."""
    keys = [r[col].sort for r in rows]
    vals = [k for k in keys if isinstance(k, float | int) and math.isfinite(k)]
    if len(vals) < 2 or min(vals) == max(vals):
        return
    best = max(vals) if higher_is_better else min(vals)
    for r in rows:
        if r[col].sort == best:
            r[col].best = True

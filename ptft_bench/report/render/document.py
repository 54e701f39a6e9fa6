"""A tiny document model, so that markdown and HTML are two renderings of the same content.

Text in `Paragraph`, `Bullets` and cells may use `**bold**` and `` `code` ``; renderers
translate those two and escape everything else.

Top-level sections are numbered when the document is built, never by hand: a `Section` has an
unnumbered title and a stable ``key``, and any text may refer to another section as
``{§key}`` (see `ref`). `Document.numbered` writes "1.", "2.", ... before the level-2 titles in
reading order and turns every reference into "section N", so inserting a section renumbers the
report and its cross-references at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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


@dataclass
class Details:
    """Blocks shown folded under a one-line ``summary``: an HTML `<details>` element that opens
    on a click (no script needed). Markdown shows them folded the same way (GitHub renders
    `<details>`) unless ``markdown`` is False; it then shows ``instead`` (e.g. where else the
    content is), or nothing. For content that would overload the markdown, such as a table
    with every column (the HTML stays self-contained either way)."""

    summary: str
    blocks: list[Block] = field(default_factory=list)
    markdown: bool = True
    instead: str = ""


Block = Table | Figure | Paragraph | Bullets | Details


@dataclass
class Section:
    """A titled part of the report; `level` 2 for top sections (numbered by `Document.numbered`,
    found by ``key`` by the references to them), 3 for subsections (unnumbered)."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    key: str = ""


class SectionReferenceError(ValueError):
    """A reference names no section of the document, or two sections share a key."""


# `{§key}` in any text of the document: a reference to the section with that key.
REFERENCE = re.compile(r"\{§([^{}]*)\}")


def ref(key: str) -> str:
    """The reference token of section ``key``, for texts built with f-strings."""
    return "{§" + key + "}"


@dataclass
class Document:
    """The whole report."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def numbered(self) -> Document:
        """A copy with the level-2 titles numbered 1, 2, ... in reading order and every ``{§key}``
        reference (titles, paragraphs, bullets, captions, notes, column headers, cells) written
        as "section N".

        Raises:
            SectionReferenceError: a reference to a key no level-2 section has, or a duplicate key.
        """
        numbers: dict[str, int] = {}
        top = [s for s in self.sections if s.level == 2]
        for n, sec in enumerate(top, start=1):
            if sec.key and sec.key in numbers:
                raise SectionReferenceError(f"two sections have the key {sec.key!r}")
            if sec.key:
                numbers[sec.key] = n

        def resolve(text: str) -> str:
            return REFERENCE.sub(lambda m: f"section {_number(numbers, m.group(1))}", text)

        out, n = [], 0
        for sec in self.sections:
            title = resolve(sec.title)
            if sec.level == 2:
                n += 1
                title = f"{n}. {title}"
            out.append(
                replace(sec, title=title, blocks=[_resolved(b, resolve) for b in sec.blocks])
            )
        return Document(resolve(self.title), out)


def _number(numbers: dict[str, int], key: str) -> int:
    if key not in numbers:
        known = ", ".join(sorted(numbers)) or "none"
        raise SectionReferenceError(f"reference to unknown section {{§{key}}} (known: {known})")
    return numbers[key]


def _resolved(block: Block, resolve: Callable[[str], str]) -> Block:
    """A copy of ``block`` with ``resolve`` applied to each of its texts."""
    if isinstance(block, Paragraph):
        return Paragraph(resolve(block.text))
    if isinstance(block, Bullets):
        return Bullets([resolve(i) for i in block.items])
    if isinstance(block, Figure):
        return replace(block, caption=resolve(block.caption))
    if isinstance(block, Details):
        blocks = [_resolved(b, resolve) for b in block.blocks]
        return replace(
            block, summary=resolve(block.summary), blocks=blocks, instead=resolve(block.instead)
        )
    return Table(
        [resolve(c) for c in block.columns],
        [[replace(c, text=resolve(c.text)) for c in row] for row in block.rows],
        caption=resolve(block.caption),
        note=resolve(block.note),
    )


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

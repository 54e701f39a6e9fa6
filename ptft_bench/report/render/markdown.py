"""Render a `Document` as GitHub-flavoured markdown (figures as relative links)."""

from __future__ import annotations

import re

from ptft_bench.report.render.document import (
    Block,
    Bullets,
    Details,
    Document,
    Paragraph,
    Table,
)


def _cell(text: str, best: bool) -> str:
    # A pipe would end the cell early; bold marks the best value in a column.
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if best and text and not text.startswith("**") else text


def render_table(t: Table) -> list[str]:
    """A pipe table with its caption above and note below."""
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(_cell(c.text, c.best) for c in row) + " |")
    if t.note:
        lines += ["", f"<sub>{t.note}</sub>"]
    return lines + [""]


def render_details(d: Details) -> list[str]:
    """Folded under a `<details>` element (blank lines around the markdown inside, so that
    GitHub renders it), or ``d.instead`` where the content is left to the HTML."""
    if not d.markdown:
        return [d.instead, ""] if d.instead else []
    summary = re.sub(r"\*\*|`", "", d.summary)  # no markdown inside the HTML element
    lines = [f"<details><summary>{summary}</summary>", ""]
    for b in d.blocks:
        lines += render_block(b)
    return lines + ["</details>", ""]


def render_block(b: Block) -> list[str]:
    """One block's lines, a blank line after it."""
    if isinstance(b, Paragraph):
        return [b.text, ""]
    if isinstance(b, Bullets):
        return [f"- {i}" for i in b.items] + [""]
    if isinstance(b, Table):
        return render_table(b)
    if isinstance(b, Details):
        return render_details(b)
    return [f"![{b.path.stem}]({b.path.as_posix()})", "", f"*{b.caption}*", ""]


def render(doc: Document) -> str:
    """The whole report as markdown text."""
    lines = [f"# {doc.title}", ""]
    for sec in doc.sections:
        lines += ["#" * sec.level + " " + sec.title, ""]
        for b in sec.blocks:
            lines += render_block(b)
    return "\n".join(lines)

"""Render a `Document` as GitHub-flavoured markdown (figures as relative links)."""

from __future__ import annotations

from ptft_bench.report.render.document import Bullets, Document, Figure, Paragraph, Table


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


def render(doc: Document) -> str:
    """The whole report as markdown text."""
    lines = [f"# {doc.title}", ""]
    for sec in doc.sections:
        lines += ["#" * sec.level + " " + sec.title, ""]
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                lines += [b.text, ""]
            elif isinstance(b, Bullets):
                lines += [f"- {i}" for i in b.items] + [""]
            elif isinstance(b, Table):
                lines += render_table(b)
            elif isinstance(b, Figure):
                lines += [f"![{b.path.stem}]({b.path.as_posix()})", "", f"*{b.caption}*", ""]
    return "\n".join(lines)

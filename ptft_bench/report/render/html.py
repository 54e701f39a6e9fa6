"""Render a `Document` as one self-contained HTML file.

Figures are embedded as base64 PNG data URIs and styles and the small sorting script are inline,
so the file opens anywhere (mail attachment, CI artefact, offline) without a single network
request.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from ptft_bench.report.render.document import (
    Block,
    Bullets,
    Details,
    Document,
    Figure,
    Paragraph,
    Table,
)

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --head:#f6f8fa; --best:#dafbe1; --accent:#0969da; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1200px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.8rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
h2 { font-size: 1.4rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
code { font: 0.88em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--head);
       padding: .1em .3em; border-radius: 4px; }
nav { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; }
nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; white-space: nowrap; }
.table-wrap { overflow-x: auto; margin: .6rem 0; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: right; white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; }
th:hover { background: #eaeef2; }
th.asc::after { content: " ▲"; font-size: .7em; } th.desc::after { content: " ▼"; font-size: .7em; }
td:first-child, th:first-child, td.text { text-align: left; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr:hover { background: #f1f8ff; }
td.best { background: var(--best); font-weight: 600; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3rem 0; }
.note { color: var(--muted); font-size: 12.5px; max-width: 100ch; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: .3rem; }
details { margin: .4rem 0 1rem; } details > summary { cursor: pointer; color: var(--accent); }
@media print { nav { display: none; } th { position: static; } }
"""

# Click a header to sort by it (numbers by their data-sort key, text otherwise); on load, record
# each image's decoded width on <body> so a headless browser test can check every figure decoded.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(r) {
        var c = r.cells[col]; var k = c ? c.getAttribute("data-sort") : null;
        if (k !== null && k !== "" && !isNaN(Number(k))) return Number(k);
        return c ? c.textContent.trim().toLowerCase() : "";
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.imgs = imgs.map(function (i) { return i.naturalWidth; }).join(",");
  document.body.dataset.tables = String(document.querySelectorAll("table").length);
});
"""


def inline(text: str) -> str:
    """Escape text, then turn `**bold**` and `` `code` `` into tags."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _sort_attr(value: object) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f' data-sort="{value!r}"' if math.isfinite(value) else ' data-sort=""'
    return f' data-sort="{html.escape(str(value))}"' if value is not None else ""


def render_table(t: Table) -> str:
    """A sortable table; best cells get class "best"; text columns are left-aligned."""
    head = "".join(f"<th>{inline(c)}</th>" for c in t.columns)
    body = []
    for row in t.rows:
        cells = []
        for c in row:
            cls = ["best"] if c.best else []
            if not isinstance(c.sort, float | int):
                cls.append("text")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}{_sort_attr(c.sort)}>{inline(c.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{inline(t.caption)}</caption>" if t.caption else ""
    out = f'<div class="table-wrap"><table class="sortable">{cap}<thead><tr>{head}</tr></thead>'
    out += f"<tbody>{''.join(body)}</tbody></table></div>"
    return out + (f'<p class="note">{inline(t.note)}</p>' if t.note else "")


def render_figure(f: Figure, base: Path) -> str:
    """The PNG inlined as a data URI."""
    data = base64.b64encode((base / f.path).read_bytes()).decode("ascii")
    alt = html.escape(f.caption.replace("`", ""))
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{inline(f.caption)}</figcaption></figure>"
    )


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_block(b: Block, base: Path) -> str:
    """One block as HTML; a `Details` folds its blocks under a `<details>` element."""
    if isinstance(b, Paragraph):
        return f"<p>{inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return render_table(b)
    if isinstance(b, Details):
        inner = "".join(render_block(x, base) for x in b.blocks)
        return f"<details><summary>{inline(b.summary)}</summary>{inner}</details>"
    return render_figure(b, base)


def render(doc: Document, base: Path) -> str:
    """The whole report as one HTML page; `base` is the folder figure paths are relative to."""
    parts = []
    for sec in doc.sections:
        tag = f"h{sec.level}"
        parts.append(f'<{tag} id="{_anchor(sec.title)}">{inline(sec.title)}</{tag}>')
        parts += [render_block(b, base) for b in sec.blocks]
    nav = "".join(
        f'<a href="#{_anchor(s.title)}">{inline(s.title)}</a>' for s in doc.sections if s.level == 2
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{inline(doc.title)}</h1><nav>{nav}</nav>{''.join(parts)}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )

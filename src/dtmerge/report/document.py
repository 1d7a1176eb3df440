"""A tiny document model rendered three ways: Markdown, standalone HTML, terminal text.

The report is assembled once as sections of paragraphs, tables and images, so the three
outputs cannot drift apart. HTML embeds images as base64 data URIs and inlines its CSS:
the file opens anywhere with no other file next to it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    name: str  # file name when written next to report.md, e.g. "tradeoff.png"
    png: bytes
    alt: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    emphasis: bool = False  # drawn as a highlighted box in HTML (the Answer)


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], image_dir: str = "plots") -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for block in sec.blocks:
            if isinstance(block, Paragraph):
                out += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    out += [f"*{block.caption}*", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
                out.append("|" + "|".join("---" for _ in block.headers) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                out.append("")
            elif isinstance(block, Image):
                out += [f"![{block.alt}]({image_dir}/{block.name})", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{border-bottom:2px solid #1f77b4;padding-bottom:.3rem}
h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f6fa}
caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.3rem}
img{max-width:100%;height:auto;border:1px solid #eee}
section.emphasis{background:#f3f8fd;border:1px solid #b6d4ee;border-radius:6px;padding:0 1rem .4rem}
.up{color:#1a7f37;font-weight:600}.down{color:#c62828;font-weight:600}
"""


def _html_cell(text: str) -> str:
    escaped = html.escape(str(text))
    # Colour the significance marks so a reader's eye finds them.
    escaped = escaped.replace("▲", '<span class="up">▲</span>')
    return escaped.replace("▼", '<span class="down">▼</span>')


def to_html(title: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for sec in sections:
        css = ' class="emphasis"' if sec.emphasis else ""
        parts.append(f"<section{css}><h2>{html.escape(sec.title)}</h2>")
        for block in sec.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{_html_cell(block.text)}</p>")
            elif isinstance(block, Table):
                parts.append("<table>")
                if block.caption:
                    parts.append(f"<caption>{html.escape(block.caption)}</caption>")
                parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr>")
                for row in block.rows:
                    parts.append("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
                parts.append("</table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(block.alt)}" '
                    f'src="data:image/png;base64,{data}"></figure>'
                )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- terminal


def table_to_text(table: Table) -> str:
    """Fixed-width columns for a terminal."""
    cells = [table.headers] + table.rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(table.headers))]
    lines = []
    if table.caption:
        lines.append(table.caption)
    for j, row in enumerate(cells):
        lines.append("  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        ))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)

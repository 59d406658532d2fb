"""Render a model version's evaluation report (``report/report.md``) as safe HTML.

The reports are written by ``training/report.py`` and use a small Markdown subset: headings,
paragraphs, ``-`` lists, pipe tables, ``**bold**``, ``code`` and images of the report's own PNG
files. This renderer handles exactly that subset, escapes every piece of text first, and only
emits an ``<img>`` for a file the caller allows, so a tampered report cannot inject markup or
point the browser anywhere else. No Markdown library is needed for it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

REPORT_MARKDOWN = "report.md"
#: Names a report image may have: plain file names, no directories, no hidden files.
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")

_HEADING = re.compile(r"(#{1,6})\s+(.*)")
_TABLE_SEPARATOR = re.compile(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")

ImageUrl = Callable[[str], "str | None"]


def report_images(folder: Path) -> list[str]:
    """Return the PNG files directly in ``folder`` that may be served (no links, no hidden files)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if IMAGE_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()
    )


def markdown_to_html(markdown: str, image_url: ImageUrl) -> str:
    """Render the report subset of Markdown; ``image_url(name)`` gives an image's URL or None."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif heading := _HEADING.fullmatch(line):
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2), image_url)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            out.append(_table(rows, image_url))
        elif line.startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].strip().startswith(("- ", "* ")):
                items.append(f"<li>{_inline(lines[i].strip()[2:], image_url)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i].strip()):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph), image_url)}</p>")
    return "\n".join(out)


def _starts_block(line: str) -> bool:
    return bool(_HEADING.fullmatch(line)) or line.startswith(("|", "- ", "* "))


def _table(rows: list[str], image_url: ImageUrl) -> str:
    """Render pipe-table rows; the first is the header when a separator row follows it."""
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    head: list[str] | None = None
    if len(rows) >= 2 and _TABLE_SEPARATOR.fullmatch(rows[1]):
        head, cells = cells[0], cells[2:]
    parts = ["<table>"]
    if head is not None:
        parts.append(
            "<thead><tr>" + "".join(f"<th>{_inline(c, image_url)}</th>" for c in head) + "</tr></thead>"
        )
    parts.append("<tbody>")
    for row in cells:
        parts.append("<tr>" + "".join(f"<td>{_inline(c, image_url)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _inline(text: str, image_url: ImageUrl) -> str:
    """Escape ``text``, then render code spans, bold and allowed images."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unmatched backtick stays a literal one
        pieces[-2:] = ["`".join(pieces[-2:])]
    out = []
    for k, piece in enumerate(pieces):
        if k % 2:
            out.append(f"<code>{html.escape(piece)}</code>")
        else:
            out.append(_images(piece, image_url))
    return "".join(out)


def _images(text: str, image_url: ImageUrl) -> str:
    """Escape ``text``, bold ``**x**``, and turn ``![alt](name.png)`` into an allowed image."""
    out, last = [], 0
    for match in _IMAGE.finditer(text):
        out.append(_text(text[last : match.start()]))
        alt, name = match.group(1), match.group(2)
        url = image_url(name) if IMAGE_NAME.fullmatch(name) else None
        if url is None:
            out.append(f"<em>{html.escape(alt or name)} (image not available)</em>")
        else:
            out.append(f'<img src="{html.escape(url)}" alt="{html.escape(alt)}" loading="lazy">')
        last = match.end()
    out.append(_text(text[last:]))
    return "".join(out)


def _text(text: str) -> str:
    """Escape plain text and render its ``**bold**`` runs."""
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))

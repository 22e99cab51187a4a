"""The report's markdown as HTML, so report.html carries every section of report.md (issue 23 point 5).

Only the subset benchmark.report.tables writes: `#`/`##` headings, pipe tables, `- ` lists, `> ` notes, paragraphs,
and inline `code` and **bold**. Text is escaped first; no script, no link.
"""

from __future__ import annotations

import html
import re

_NUMERIC = re.compile(r"^[-+–]?[\d,.]+(\s|$|%)|^[-+]?\d|^–$|^\[")


def inline(text: str) -> str:
    """Escape, then `code` -> <code> and **bold** -> <strong>."""
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table(lines: list[str]) -> str:
    """A pipe table (header, separator, rows) -> <table>; text cells left-aligned (class l), numbers right."""
    head, body = _cells(lines[0]), [_cells(ln) for ln in lines[2:]]
    th = "".join(f'<th class="{"" if i and all(_NUMERIC.match(r[i]) for r in body if i < len(r)) else "l"}">'
                 f"{inline(h)}</th>" for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f'<td class="{"" if _NUMERIC.match(c) else "l"}">{inline(c)}</td>' for c in r)
                  + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def to_html(md: str) -> str:
    """The markdown subset above -> HTML fragments, one block per paragraph, list, table, note or heading."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(table(lines[i:j]))
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif line.startswith("> "):
            out.append(f'<p class="note">{inline(line[2:])}</p>')
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "> ")):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def sections(md: str) -> list[tuple[str, str]]:
    """(heading, markdown body) of each `## ` section, in order; the text before the first is ("", ...)."""
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    out = [("", parts[0])]
    out += [(parts[k].strip(), parts[k + 1]) for k in range(1, len(parts) - 1, 2)]
    return out

"""Small HTML pieces for :mod:`leaderboard.html`: escaping, table cells with attributes, sortable-table keys, code
spans that wrap at a spec's separators, and the one-line Markdown of the study summaries read back as HTML.
Every piece of text goes through :func:`escape_html` on the way in."""

from __future__ import annotations

import html
import math
import re
from typing import Any

__all__ = ["escape_html", "sort_num", "attributes", "td", "th", "code_tag", "breakable", "inline_md", "md_to_html",
           "table_html"]


def escape_html(text: Any) -> str:
    return html.escape(str(text), quote=True)


def sort_num(x: float | None) -> str:
    """A sort key: a plain number, or empty (sorted last) for none."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def attributes(**kw: str | None) -> str:
    """` name="value"` for each keyword that is not None (``data_sort`` -> ``data-sort``, ``cls`` -> ``class``)."""
    out = ""
    for k, v in kw.items():
        if v is not None:
            name = "class" if k == "cls" else k.replace("_", "-")
            out += f' {name}="{escape_html(v)}"'
    return out


def td(text: str, **kw: str | None) -> str:
    return f"<td{attributes(**kw)}>{escape_html(text)}</td>"


def th(text: str, **kw: str | None) -> str:
    return f"<th{attributes(**kw)}>{escape_html(text)}</th>"


def code_tag(name: str) -> str:
    return f"<code>{escape_html(name)}</code>"


def breakable(name: str) -> str:
    """A column's name as <code> that may wrap after a chain's ``>`` and before a configuration's ``[``."""
    body = escape_html(name).replace("&gt;", "&gt;<wbr>").replace("[", "<wbr>[").replace(",", ",<wbr>")
    return f"<code>{body}</code>"


def inline_md(text: str) -> str:
    """Notes written for Markdown use `code` spans only: escape the text, then make those spans <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape_html(text))


MD_ESCAPED = "\\`*_[]|"


def md_to_html(text: str) -> str:
    """One line of the Markdown the study summaries are written in (:func:`leaderboard.markdown.escape_md` text
    and :func:`leaderboard.markdown.code` spans) as HTML: backslash escapes and ``&lt;``/``&gt;`` read back,
    code spans (of any fence) made <code>, everything escaped."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in MD_ESCAPED:
            out.append(escape_html(text[i + 1]))
            i += 2
        elif ch == "`":
            fence = re.match(r"`+", text[i:]).group(0)
            end = text.find(fence, i + len(fence))
            while end >= 0 and text[end + len(fence):end + len(fence) + 1] == "`":  # a longer run is not the fence
                end = text.find(fence, end + len(fence) + 1)
            if end < 0:
                out.append(escape_html(fence))
                i += len(fence)
                continue
            body = text[i + len(fence):end]
            if len(body) > 1 and body[0] == body[-1] == " ":
                body = body[1:-1]
            out.append(code_tag(body.replace("\\|", "|")))
            i = end + len(fence)
        elif text.startswith("&lt;", i) or text.startswith("&gt;", i):
            out.append(escape_html("<" if text[i + 1] == "l" else ">"))
            i += 4
        else:
            out.append(escape_html(ch))
            i += 1
    return "".join(out)


def table_html(head: list[str], rows: list[str], cls: str, foot: list[str] = (), scroll: bool = True) -> str:
    parts = [f'<table class="{cls}">', "<thead><tr>" + "".join(head) + "</tr></thead>", "<tbody>", *rows, "</tbody>"]
    if foot:
        parts += ["<tfoot>", *foot, "</tfoot>"]
    parts.append("</table>")
    body = "\n".join(parts)
    return f'<div class="scroll">\n{body}\n</div>' if scroll else body

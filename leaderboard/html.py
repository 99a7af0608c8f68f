"""The HTML page, ``index.html`` (:func:`render_html`): the tables of the Markdown page with every cell coloured
by its WSR and its per-seed detail as a tooltip, filled into ``leaderboard/templates/page.html`` with
:class:`string.Template`. Every piece of text is HTML-escaped on the way in.
"""

from __future__ import annotations

import html
import re
from importlib import resources
from string import Template
from typing import Any

from leaderboard.plots import COST_NAME, COST_NOTE, HEATMAP_NAME, HEATMAP_NOTE, sweep_figure_name, sweep_section
from leaderboard.studies import QUERIES_FIELD, Sweep, sweep_axis, sweep_fields
from leaderboard.summary import CONTROL_DEFENSE, NOT_RUN, CellSummary, Group
from leaderboard.text import (
    ATTACK_HEAD,
    CONTROL_NOTE,
    COST_HEAD,
    COST_SUB,
    DEFENSE_HEAD,
    DETAIL_HEAD,
    GATE_NOTE,
    LEGEND,
    RULES_NOTE,
    TAIL_HEAD,
    attack_values,
    cell_detail,
    cell_text,
    defense_values,
    detail_rows,
    meta_items,
    sweep_rows,
    sweep_title,
)

_STATUS_CLASS = {"ok": "cell-ok", "error": "cell-error", "n/a": "cell-na", NOT_RUN: "cell-notrun"}
_RED, _YELLOW, _GREEN = (0xF4, 0xA6, 0xA6), (0xFA, 0xE3, 0x9C), (0x9E, 0xD9, 0xA3)


def wsr_colour(x: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1), as #rrggbb."""
    x = min(1.0, max(0.0, x))
    lo, hi, t = (_RED, _YELLOW, x * 2) if x < 0.5 else (_YELLOW, _GREEN, (x - 0.5) * 2)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(lo, hi, strict=True))


def escape_html(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _data_cell(text: str, cls: str = "", style: str = "", title: str = "") -> str:
    attrs = ""
    if cls:
        attrs += f' class="{escape_html(cls)}"'
    if style:
        attrs += f' style="{escape_html(style)}"'
    if title:
        attrs += f' title="{escape_html(title)}"'
    return f"<td{attrs}>{escape_html(text)}</td>"


def _html_cell(cell: CellSummary, has_watermark: bool) -> str:
    cls = [_STATUS_CLASS[cell.status]]
    style = ""
    if cell.status == "ok":
        if not cell.complete:
            cls.append("partial")
        if cell.kind == "detection" and has_watermark and cell.survived is not None:
            style = f"background-color: {wsr_colour(1.0 if cell.survived else 0.0)}"
        elif has_watermark and (wsr := cell.stat("wsr_suspect")) is not None:
            style = f"background-color: {wsr_colour(wsr.mean)}"
        else:
            cls.append("neutral")
    return _data_cell(cell_text(cell, has_watermark), " ".join(cls), style, cell_detail(cell))


def _html_table(head_cells: list[str], rows: list[str], cls: str) -> str:
    head = "<tr>" + "".join(head_cells) + "</tr>"
    body = "\n".join(rows)
    return (
        f'<div class="scroll"><table class="{cls}">\n<thead>{head}</thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _header_cell(text: str, sub: str = "", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<th{c}>{escape_html(text)}" + (f"<br><small>{escape_html(sub)}</small>" if sub else "") + "</th>"


def _defense_html(g: Group) -> str:
    head = [_header_cell(DEFENSE_HEAD[0], cls="name")] + [_header_cell(h) for h in DEFENSE_HEAD[1:]]
    head += [_header_cell(h) for h in TAIL_HEAD] + [_header_cell(a, g.kinds[a], cls="attack") for a in g.attacks]
    rows = []
    for r in g.defense_rows:
        h, t = defense_values(r)
        name = f'<td class="name"><code>{escape_html(r.name)}</code>'
        if r.name == CONTROL_DEFENSE:
            name += ' <span class="tag">control</span>'
        if r.name in g.gate:
            name += f' <span class="tag" title="{escape_html(GATE_NOTE)}">⚠ {escape_html(g.gate[r.name])}</span>'
        name += "</td>"
        cells = "".join(_html_cell(g.cells[(r.name, a)], r.has_watermark) for a in g.attacks)
        score = ""
        if r.robustness is not None:
            score = f"background-color: {wsr_colour(r.robustness)}"
        tail = _data_cell(t[0], "score", score) + "".join(_data_cell(v, "worst") for v in t[1:])
        tr_cls = ' class="control"' if r.name == CONTROL_DEFENSE else ""
        rows.append(f"<tr{tr_cls}>{name}{''.join(_data_cell(v) for v in h)}{tail}{cells}</tr>")
    return _html_table(head, rows, "defenses")


def _attack_html(g: Group) -> str:
    plain = len(ATTACK_HEAD) - len(COST_HEAD)
    head = [_header_cell(ATTACK_HEAD[0], cls="name")] + [_header_cell(h) for h in ATTACK_HEAD[1:plain]]
    head += [_header_cell(h, COST_SUB) for h in COST_HEAD]
    rows = []
    for r in g.attack_rows:
        vals = attack_values(r)
        rows.append(
            f'<tr><td class="name"><code>{escape_html(r.name)}</code></td>{_data_cell(vals[0], "kind kind-" + r.kind)}'
            + "".join(_data_cell(v) for v in vals[1:])
            + "</tr>"
        )
    return _html_table(head, rows, "attacks")


def _detail_html(g: Group) -> str:
    head = [_header_cell(h, cls="name" if i in (0, 1, 13) else "") for i, h in enumerate(DETAIL_HEAD)]
    rows = []
    for status, vals, err in detail_rows(g):
        cls = _STATUS_CLASS[status]
        tds = (
            f'<td class="name"><code>{escape_html(vals[0])}</code></td>'
            f'<td class="name"><code>{escape_html(vals[1])}</code></td>'
            + _data_cell(vals[2])
            + _data_cell(vals[3], f"{cls} status")
            + "".join(_data_cell(v) for v in vals[4:13])
            + _data_cell(vals[13], "name error-text", title=err if err != vals[13] else "")
        )
        rows.append(f'<tr class="row-{cls[5:]}">{tds}</tr>')
    return _html_table(head, rows, "detail")


def _md_inline_to_html(text: str) -> str:
    """The notes use `code` spans only; escape, then turn those into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape_html(text))


def _sweeps_html(sweeps: list[Sweep]) -> str:
    return "".join(_sweep_html(fld, [s for s in sweeps if s.field == fld]) for fld in sweep_fields(sweeps))


_SWEEP_ALT = {QUERIES_FIELD: "WSR and stolen accuracy of each scheme versus the query budget"}


def _sweep_html(fld: str, sweeps: list[Sweep]) -> str:
    heading, _alt, note = sweep_section(fld)
    alt = _SWEEP_ALT.get(fld, f"WSR and suspect accuracy of each scheme versus the {sweep_axis(fld)}")
    parts = [
        f"<section>\n<h2>{escape_html(heading)}</h2>\n<figure>",
        f'<img src="{escape_html(sweep_figure_name(fld))}" alt="{escape_html(alt)}">',
        f"<figcaption>{escape_html(note)}</figcaption>\n</figure>",
    ]
    for sw in sweeps:
        head, rows = sweep_rows(sw)
        cells = [_header_cell("Scheme", sw.axis, cls="name")] + [_header_cell(h) for h in head]
        body = [
            f'<tr><td class="name"><code>{escape_html(d)}</code></td>' + "".join(_data_cell(v) for v in vals) + "</tr>"
            for d, vals in rows
        ]
        parts += [f"<h3>{escape_html(sweep_title(sw))}</h3>", _html_table(cells, body, "sweep")]
    return "\n".join(parts) + "\n</section>\n"


def _cost_html(cost: bool) -> str:
    if not cost:
        return ""
    return (
        "<section>\n<h2>Attack cost versus WSR</h2>\n<figure>\n"
        f'<img src="{escape_html(COST_NAME)}" alt="WSR of each watermarked scheme after each attack versus the '
        'attack\'s wall seconds">\n'
        f"<figcaption>{escape_html(COST_NOTE)}</figcaption>\n</figure>\n</section>\n"
    )


def _groups_html(groups: list[Group], title: str, sweeps: list[Sweep] | None = None, cost: bool = False) -> str:
    meta = "\n".join(f"<dt>{escape_html(k)}</dt><dd>{escape_html(v)}</dd>" for k, v in meta_items(groups))
    legend = "\n".join(
        f'<li><span class="swatch {c}">{escape_html(m)}</span> {escape_html(t)}</li>'
        for (m, t), c in zip(
            LEGEND,
            ("cell-ok mark-ok", "cell-ok mark-bad", "cell-error", "cell-na", "cell-notrun"),
            strict=True,
        )
    )
    sections = []
    for g in groups:
        sections.append(
            f"<section>\n<h2>{escape_html(g.label)}</h2>\n<h3>Defenses</h3>\n{_defense_html(g)}\n"
            f"<h3>Attacks</h3>\n{_attack_html(g)}\n</section>"
        )
    details = [
        f"<section>\n<h2>Per-cell detail: {escape_html(g.label)}</h2>\n{_detail_html(g)}\n</section>" for g in groups
    ]
    template = Template(resources.files("leaderboard").joinpath("templates/page.html").read_text("utf-8"))
    return template.substitute(
        title=escape_html(title),
        meta=meta,
        legend=legend,
        control_note=_md_inline_to_html(CONTROL_NOTE),
        rules_note=_md_inline_to_html(RULES_NOTE),
        sections="\n".join(sections),
        heatmap=escape_html(HEATMAP_NAME),
        heatmap_note=escape_html(HEATMAP_NOTE),
        details=_sweeps_html(sweeps or []) + _cost_html(cost) + "\n".join(details),
    )


def render_html(sec, title: str, cost: bool = False) -> str:
    return _groups_html(sec.boards, title, [], cost)

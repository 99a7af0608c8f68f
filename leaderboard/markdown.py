"""The Markdown page, ``LEADERBOARD.md`` (:func:`render_markdown`): the meta list and notes, each group's
defense and attack tables, the figures with their captions and sweep tables, and the per-cell detail. Free
text is escaped for table cells; names are code spans that nothing in them can leave.
"""

from __future__ import annotations

import re

from leaderboard.plots import COST_NAME, COST_NOTE, HEATMAP_NAME, HEATMAP_NOTE, sweep_figure_name, sweep_section
from leaderboard.studies import Sweep, sweep_fields
from leaderboard.summary import CONTROL_DEFENSE, Group
from leaderboard.text import (
    ATTACK_HEAD,
    CONTROL_NOTE,
    DEFENSE_HEAD,
    DETAIL_HEAD,
    GATE_NOTE,
    LEGEND,
    RULES_NOTE,
    TAIL_HEAD,
    attack_values,
    cell_text,
    defense_values,
    detail_rows,
    meta_items,
    sweep_rows,
    sweep_title,
)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def escape_md(text: str) -> str:
    """Escape free text for a Markdown table cell."""
    text = _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", text))
    return text.replace("<", "&lt;").replace(">", "&gt;")


def code(name: str) -> str:
    """A name as a Markdown code span; a name with backticks gets a longer fence, so nothing in it (raw
    HTML included) leaves the span."""
    name = name.replace("|", "\\|")
    ticks = max((len(run) for run in re.findall(r"`+", name)), default=0)
    if not ticks:
        return f"`{name}`"
    fence = "`" * (ticks + 1)
    return f"{fence} {name} {fence}"


def _md_table(head, rows, align) -> list[str]:
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def render_markdown(groups: list[Group], title: str, sweeps: list[Sweep] | None = None, cost: bool = False) -> str:
    lines = [
        f"# {escape_md(title)}",
        "",
        "Rendered by `wmbench leaderboard` from the result cards alone; do not edit.",
        "",
    ]
    lines += [f"- **{k}:** {escape_md(v)}" for k, v in meta_items(groups)] + [""]
    lines += ["**Legend:** " + ", ".join(f"`{m}` {t}" for m, t in LEGEND), ""]
    lines += [CONTROL_NOTE, "", RULES_NOTE, ""]
    for g in groups:
        lines += [f"## {escape_md(g.label)}", "", "### Defenses", ""]
        head = list(DEFENSE_HEAD) + list(TAIL_HEAD) + [f"{code(a)} ({g.kinds[a]})" for a in g.attacks]
        rows = []
        for r in g.defense_rows:
            h, t = defense_values(r)
            name = code(r.name) + (" (control)" if r.name == CONTROL_DEFENSE else "")
            name += f" ⚠ ({escape_md(g.gate[r.name])})" if r.name in g.gate else ""
            cells = [escape_md(cell_text(g.cells[(r.name, a)], r.has_watermark)) for a in g.attacks]
            rows.append([name] + [escape_md(v) for v in h + t] + cells)
        lines += _md_table(head, rows, "l" + "r" * (len(head) - 1))
        if g.gate:
            lines += [escape_md(GATE_NOTE), ""]
        lines += ["### Attacks", ""]
        rows = [[code(r.name)] + [escape_md(v) for v in attack_values(r)] for r in g.attack_rows]
        lines += _md_table(ATTACK_HEAD, rows, "ll" + "r" * (len(ATTACK_HEAD) - 2))
    lines += ["## WSR after attack", "", f"![WSR heatmap]({HEATMAP_NAME})", "", HEATMAP_NOTE, ""]
    lines += [
        "Mean WSR of the suspect model after each attack (watermarked schemes; detection attacks, which "
        "produce no suspect model, are left out). Masked cells: ERR error, n/a not applicable, · not run.",
        "",
    ]
    for fld in sweep_fields(sweeps or []):
        heading, alt, note = sweep_section(fld)
        lines += [f"## {escape_md(heading)}", "", f"![{escape_md(alt)}]({sweep_figure_name(fld)})", "",
                  escape_md(note), ""]
        for sw in (s for s in sweeps if s.field == fld):
            head, rows = sweep_rows(sw)
            lines += [f"### {escape_md(sweep_title(sw))}", ""]
            table = [[code(d)] + [escape_md(v) for v in vals] for d, vals in rows]
            lines += _md_table(["Scheme"] + head, table, "l" + "r" * len(head))
    if cost:
        lines += ["## Attack cost versus WSR", "", f"![Attack cost versus WSR]({COST_NAME})", "",
                  escape_md(COST_NOTE), ""]
    for g in groups:
        lines += [f"## Per-cell detail: {escape_md(g.label)}", ""]
        rows = []
        for _status, vals, _err in detail_rows(g):
            rows.append([code(vals[0]), code(vals[1])] + [escape_md(v) for v in vals[2:]])
        lines += _md_table(DETAIL_HEAD, rows, "lll" + "l" * 2 + "r" * 8 + "l")
    return "\n".join(lines).rstrip("\n") + "\n"

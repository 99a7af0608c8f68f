"""The HTML page, ``index.html`` (:func:`render_html`): what ``LEADERBOARD.md`` says, in the same order (the ranked
summary first, the rank rule and the notes, one table per threat class, the attacks, the heatmap, the cost figure,
the study index), with what a browser adds:

* every table of the board is sortable by any column: the static table is complete and in rank order, and a small
  inline script (no external resource) makes each header a sort button (``aria-sort`` and an arrow say which);
  where a cell's text is not its sort key (a rank, a percentage, a share), the key is in ``data-sort``;
* a threat-table cell is coloured by :func:`leaderboard.plots.evidence` (what its verdict rests on) on a red →
  yellow → green scale, a rejected one never above yellow; detection cells by the share of seeds that did not
  find the watermark; errors, n/a and cells not run each have their own look;
* each cell's tooltip gives its seeds (WSR, null WSR, p-value, accuracy) and its interval with the method, and
  below each threat table one collapsed ``<details>`` per scheme lists every seed of every cell with a link to
  its card (``card_base``: the results folder relative to the output folder).

The page is filled into ``leaderboard/templates/page.html`` with :class:`string.Template`; every piece of text is
HTML-escaped on the way in, and nothing depends on the clock or the host.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from string import Template

from leaderboard.htmlkit import (
    attributes,
    breakable,
    code_tag,
    escape_html,
    inline_md,
    md_to_html,
    sort_num,
    table_html,
    td,
    th,
)
from leaderboard.summary import CONTROL_DEFENSE, NOT_RUN, CellSummary, Group, Stat
from leaderboard.text import (
    DASH,
    MARK_BAD,
    MARK_OK,
    NOT_RUN_MARK,
    label_rate,
    pct,
    scientific,
    truncate,
    verdict_text,
)

__all__ = ["escape_html", "wsr_colour", "cell_colour", "cell_title", "md_to_html", "render_html"]

_RED, _YELLOW, _GREEN = (0xF4, 0xA6, 0xA6), (0xFA, 0xE3, 0x9C), (0x9E, 0xD9, 0xA3)
NEVER_GREEN = 0.5  # a rejected cell is coloured at most this far up the scale: yellow, never green
THREAT_KINDS = ("extraction", "removal", "detection")  # the board's threat tables, as in LEADERBOARD.md
_STATUS_CLASS = {"error": "err", "n/a": "na", NOT_RUN: "nr"}


def wsr_colour(x: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1), as #rrggbb."""
    x = min(1.0, max(0.0, x))
    lo, hi, t = (_RED, _YELLOW, x * 2) if x < 0.5 else (_YELLOW, _GREEN, (x - 0.5) * 2)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(lo, hi, strict=True))


def _scale_value(cell: CellSummary, has_watermark: bool) -> float | None:
    """Where an ok cell of a watermarked scheme sits on the red -> green scale, or None (no colour): the heatmap's
    :func:`leaderboard.plots.evidence`, a rejected cell held at most at :data:`NEVER_GREEN`; for detection, the
    share of its seeds that did not find the watermark (detected = red, undetected = green)."""
    from leaderboard.plots import evidence

    if cell.status != "ok" or not has_watermark:
        return None
    if cell.kind == "detection":
        v = cell.votes()
        if v is None or not v.n:
            return None
        x = v.agree / v.n if v.survived else 1.0 - v.agree / v.n
    else:
        x = evidence(cell)
        if math.isnan(x):
            return None
    return min(x, NEVER_GREEN) if cell.survived is False else x


def cell_colour(cell: CellSummary, has_watermark: bool) -> str | None:
    """The background of a threat-table cell (#rrggbb), or None for a cell without one."""
    x = _scale_value(cell, has_watermark)
    return None if x is None else wsr_colour(x)


# -------------------------------------------------------------------------------------------------- pieces
def _pct_key(s: Stat | None) -> str:
    return "" if s is None else sort_num(100.0 * s.mean)


def _warn(g: Group, d: str) -> str:
    """The ⚠ after a scheme that missed the tuning gate, its reason as the tooltip."""
    return f' <span class="warn" title="missed the victim-side tuning gate: {escape_html(g.gate[d])}">⚠</span>'


# ---------------------------------------------------------------------------------------------- ranked
def _ranked_html(g: Group) -> str:
    from leaderboard.ranking import RANKED_HEAD, provisional_text, ranked_rows, why_unranked

    head = [th(h, aria_sort="ascending" if h == "Rank" else None) for h in RANKED_HEAD]
    rows, ranked = [], ranked_rows(g)
    for rank, s, vals in ranked:
        r = s.row
        worst = [r.worst.get(k) for k in ("extraction", "removal")]
        worst_keys = [None if c is None else c.stat("wsr_suspect") for c in worst]
        keys = [None, sort_num(r.acc_cost.mean) if r.acc_cost else "", _pct_key(r.victim_wsr), sort_num(s.survived),
                *(_pct_key(w) for w in worst_keys), sort_num(len(r.detected_by)) if r.det_total else "",
                sort_num(r.embed_ratio.median) if r.embed_ratio else "", None]
        name = code_tag(r.name)
        if r.name in g.gate:
            name += _warn(g, r.name)
        cls = ("t", "n", "n", "n", "t", "t", "t", "n", "n")
        cells = "".join(td(v, data_sort=k, cls=c) for v, k, c in zip(vals, keys, cls, strict=True))
        rows.append(f'<tr><td{attributes(data_sort=rank if rank != DASH else "")}>{escape_html(rank)}</td>'
                    f'<td class="name">{name}</td>{cells}</tr>')
    out = [table_html(head, rows, "sortable ranked")]
    unranked = [s for rank, s, _ in ranked if rank == DASH]
    if unranked:
        out.append('<p class="note">Not ranked: ' + ", ".join(
            f"{code_tag(s.row.name)} ({escape_html(why_unranked(s))})" for s in unranked) + ".</p>")
    provisional = provisional_text(g)
    if provisional:
        out.append(f'<p class="note">{escape_html(provisional)}</p>')
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- threats
_BREAK = re.compile(rf" (?=[{MARK_OK}{MARK_BAD}] )")  # a WSR cell reads on two lines: the numbers, the verdict


def _cell_sort_key(cell: CellSummary, has_watermark: bool) -> str:
    if cell.status != "ok":
        return ""
    if not has_watermark:
        return _pct_key(cell.stat("clean_acc_suspect"))
    if cell.kind == "detection":
        x = _scale_value(cell, has_watermark)
        return "" if x is None else sort_num(100.0 * x)
    return _pct_key(cell.stat("wsr_suspect"))


def cell_title(g: Group, cell: CellSummary) -> str:
    """A cell's tooltip: the scheme and column, one line per seed (:func:`leaderboard.text.cell_detail`) and its
    95% interval with the method."""
    from leaderboard.text import cell_detail

    lines = [f"{cell.defense} × {cell.attack}", cell_detail(cell)]
    iv = cell.interval() if g.has_watermark[cell.defense] and cell.kind != "detection" else None
    if iv is not None:
        span = f"95% interval [{100 * iv.low:.1f}, {100 * iv.high:.1f}]%"
        lines.append(f"{span}: Student-t over {iv.n} seeds" if iv.method == "t" else
                     f"{span}: Wilson on one model's verification hits (one seed: omits the spread between "
                     "training runs)")
    return "\n".join(x for x in lines if x)


def _threat_cell(g: Group, cell: CellSummary) -> str:
    from leaderboard.text import board_cell_text

    wm = g.has_watermark[cell.defense]
    text = board_cell_text(cell, wm)
    parts = _BREAK.split(text)
    body = escape_html(text) if len(parts) == 1 else " ".join(f"<span>{escape_html(p)}</span>" for p in parts)
    colour = cell_colour(cell, wm)
    cls = _STATUS_CLASS.get(cell.status) or ("ctl" if not wm else None)
    attrs = attributes(cls=cls, style=f"background:{colour}" if colour else None,
                   data_sort=_cell_sort_key(cell, wm), title=cell_title(g, cell))
    return f"<td{attrs}>{body}</td>"


def _scheme_cell(g: Group, d: str) -> str:
    name = code_tag(d)
    if d == CONTROL_DEFENSE:
        name += " (control)"
    if d in g.gate:
        name += _warn(g, d)
    return f'<th scope="row" class="name">{name}</th>'


def _threat_html(g: Group, kind: str, rows: list[str], card_base: str) -> str:
    cols = [a for a in g.attacks if g.kinds[a] == kind]
    head = [th("Scheme", cls="name")] + [f"<th>{breakable(a)}</th>" for a in cols]
    body, foot = [], []
    for d in rows:
        tr = "<tr>" + _scheme_cell(g, d) + "".join(_threat_cell(g, g.cells[(d, a)]) for a in cols) + "</tr>"
        (foot if d == CONTROL_DEFENSE else body).append(tr)  # the control stays below whatever the sort
    out = [f"<h3>{escape_html(kind.capitalize())}</h3>", table_html(head, body, "sortable threat", foot)]
    details = [_seed_details(g, d, cols, card_base) for d in rows]
    out.append(f'<div class="seeds"><span>Per-seed detail ({escape_html(kind)}; p-values, cards):</span>\n'
               + "\n".join(details) + "\n</div>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ seed detail
SEED_HEAD = ("Column", "Seed", "Verdict", "WSR", "Label rate", "Null WSR", "p-value", "Suspect acc", "Card")


def _seed_verdict(c: dict) -> str:
    return "ERR" if c["status"] == "error" else verdict_text(c)


def _card_href(card_base: str, c: dict) -> str:
    from bench.results import card_path

    return card_path(card_base, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"],
                     c.get("precision")).as_posix()


def _seed_details(g: Group, d: str, cols: list[str], card_base: str) -> str:
    rows, n_cards, n_missing = [], 0, 0
    for a in cols:
        cell = g.cells[(d, a)]
        for c in cell.cards:
            n_cards += 1
            note = truncate(c["error"], 120) if c["status"] != "ok" and c["error"] else ""
            verdict = td(_seed_verdict(c), title=c["error"] if note and note != c["error"] else None)
            rows.append(f"<tr><td>{escape_html(a)}</td><td>{c['seed']}</td>{verdict}"
                        f"<td>{pct(c['wsr_suspect'])}</td><td>{pct(label_rate(c))}</td><td>{pct(c['wsr_null'])}</td>"
                        f"<td>{scientific(c['p_value'])}</td><td>{pct(c['clean_acc_suspect'])}</td>"
                        f'<td><a href="{escape_html(_card_href(card_base, c))}">card</a>'
                        + (f" {escape_html(note)}" if note else "") + "</td></tr>")
        if cell.missing_seeds:
            n_missing += len(cell.missing_seeds)
            rows.append(f'<tr class="nr"><td>{escape_html(a)}</td><td>{", ".join(map(str, cell.missing_seeds))}</td>'
                        f'<td colspan="{len(SEED_HEAD) - 2}">{NOT_RUN_MARK} not run</td></tr>')
    summary = f"{code_tag(d)}: {n_cards} card{'s' * (n_cards != 1)}" + (f", {n_missing} not run" if n_missing else "")
    table = table_html([th(h) for h in SEED_HEAD], rows, "detail", scroll=False)
    return f"<details><summary>{summary}</summary>\n{table}\n</details>"


# -------------------------------------------------------------------------------------------- attacks
def _attacks_html(g: Group) -> str:
    from leaderboard.text import ATTACK_HEAD, ATTACK_NOTE, attack_values

    rows = []
    for r in g.attack_rows:  # already in class order, as g.attacks
        vals = attack_values(r)
        keys = [None] * len(vals)
        for i, (k, n) in ((2, r.removed_cheaply), (3, r.detected)):
            keys[i] = sort_num(100.0 * k / n) if n else ""
        cells = "".join(td(v, data_sort=key, cls="t" if i == 0 else None)
                        for i, (v, key) in enumerate(zip(vals, keys, strict=True)))
        rows.append(f'<tr><td class="name">{code_tag(r.name)}</td>{cells}</tr>')
    head = [th(h, cls="name" if i < 2 else None) for i, h in enumerate(ATTACK_HEAD)]
    return ("<h3>Attacks</h3>\n" + table_html(head, rows, "sortable attacks")
            + f'\n<p class="note">{inline_md(ATTACK_NOTE)}</p>')


# ---------------------------------------------------------------------------------------------- figures
def _heatmap_html(g: Group) -> str:
    from leaderboard.plots import HEATMAP_NOTE, heatmap_name

    name = escape_html(heatmap_name(g))
    return (f"<h3>WSR after attack ({escape_html(g.label)})</h3>\n"
            f'<div class="scroll figure"><a href="{name}"><img src="{name}" '
            'alt="WSR after attack, rows in rank order"></a></div>\n'
            f'<p class="note">{escape_html(HEATMAP_NOTE)} Shown at full size; the image links to itself.</p>')


def _cost_html() -> str:
    from leaderboard.plots import COST_NAME, COST_NOTE

    name = escape_html(COST_NAME)
    return ('<section>\n<h2>Attack cost versus WSR</h2>\n'
            f'<div class="scroll figure"><a href="{name}"><img src="{name}" alt="Attack cost versus WSR"></a></div>\n'
            f'<p class="note">{escape_html(COST_NOTE)}</p>\n</section>')


def _studies_html(sec) -> str:
    from leaderboard.plots import sweep_section
    from leaderboard.studypages import (
        OTHER_NAME,
        study_figure_name,
        study_name,
        study_scheme_sweeps,
        study_settings_figure_name,
        study_summary,
        study_sweeps,
    )

    out = ["<section>", "<h2>Studies</h2>",
           "<p>Every sweep and ablation, each on its own page (declared in <code>bench/boards.py</code>):</p>"]
    for view in sec.studies:
        st = view.study
        out.append(f'<div class="study">\n<h3><a href="{escape_html(study_name(st.name))}">'
                   f"{escape_html(st.title)}</a></h3>")
        out.append(f"<p>{escape_html(st.question)} ({view.n_cards} cards)</p>")
        bullets = [md_to_html(line[2:] if line.startswith("- ") else line) for line in study_summary(view)]
        out.append("<ul>\n" + "\n".join(f"<li>{b}</li>" for b in bullets) + "\n</ul>")
        figs = []
        for fld in study_sweeps(view):
            _heading, alt, _note = sweep_section(fld)
            name = escape_html(study_figure_name(st.name, fld))
            figs.append(f'<a href="{name}"><img src="{name}" alt="{escape_html(alt)}" loading="lazy"></a>')
        if study_scheme_sweeps(view):
            name = escape_html(study_settings_figure_name(st.name))
            figs.append(f'<a href="{name}"><img src="{name}" alt="Victim and suspect WSR versus the schemes\' '
                        'settings" loading="lazy"></a>')
        if figs:
            out.append('<div class="thumbs">' + "".join(figs) + "</div>")
        out.append("</div>")
    out.append(f'<p><a href="{escape_html(OTHER_NAME)}">Other runs</a>: cards on no board and in no study '
               f"({len(sec.other)}).</p>")
    out.append("</section>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- page
def _board_html(g: Group, card_base: str) -> str:
    from leaderboard.markdown import board_notes, board_rows
    from leaderboard.ranking import RANK_RULE
    from leaderboard.text import CELL_NOTE, CONTROL_NOTE, GATE_NOTE, board_line

    out = ["<section>", f"<h2>{escape_html(board_line(g))}</h2>", "<h3>Ranked summary</h3>", _ranked_html(g),
           f'<p class="note">{inline_md(RANK_RULE)}</p>']
    if g.gate:
        out.append(f'<p class="note">{inline_md(GATE_NOTE)}</p>')
        out.append('<ul class="note">' + "".join(f"<li>{code_tag(d)}: {escape_html(why)}</li>"
                                                for d, why in sorted(g.gate.items())) + "</ul>")
    out += [f'<p class="note">{inline_md(note)}</p>' for note in board_notes(g)]
    out += [f'<p class="note">{inline_md(CELL_NOTE)}</p>', _LEGEND, f'<p class="note">{inline_md(CONTROL_NOTE)}</p>']
    rows = board_rows(g)
    out += [_threat_html(g, kind, rows, card_base) for kind in THREAT_KINDS if kind in g.kinds.values()]
    out += [_attacks_html(g), _heatmap_html(g), "</section>"]
    return "\n".join(out)


_LEGEND = (f'<p class="legend"><span style="background:{wsr_colour(1.0)}">{MARK_OK} retained</span> '
           f'<span style="background:{wsr_colour(0.0)}">{MARK_BAD} removed</span> <span class="err">ERR error</span> '
           f'<span class="na">n/a not applicable</span> <span class="nr">{NOT_RUN_MARK} not run</span> '
           '<span class="ctl">control (no watermark)</span> Colour: red → yellow → green = the WSR above the '
           "suspect's own label rate (a ✗ is never green); detection: red detected, green undetected. Hover a cell "
           "for its seeds; the per-seed detail with each card's link is under each table.</p>")


def render_html(sec, title: str, cost: bool = False, card_base: str = "results") -> str:
    """``index.html`` of a :class:`leaderboard.sections.Sections`; ``card_base`` is the results folder relative to
    the output folder (forward slashes), the base of every card link."""
    from leaderboard.export import CSV_NAME

    body = ["<p>Rendered by <code>wmbench leaderboard</code> from the result cards alone; do not edit.</p>"]
    if not sec.declared:
        body.append("<p>No declared board's cells are among these cards (<code>bench/boards.py</code>), so this page "
                    "shows every scheme run, under the attacks at their default configuration, per data set, "
                    "architecture and profile (configured schemes are shown, not ranked; configured attacks are on "
                    "the study pages).</p>")
    body += [_board_html(g, card_base) for g in sec.boards]
    if cost:
        body.append(_cost_html())
    body.append(_studies_html(sec))
    body.append(f'<section>\n<h2>Per-seed detail</h2>\n<p>Every card\'s WSR with its own interval, p-value, '
                f'accuracies, cost and path: <a href="{escape_html(CSV_NAME)}">{escape_html(CSV_NAME)}</a> (one row '
                "per card, for pandas) and the per-scheme detail under each threat table above.</p>\n</section>")
    template = Template(resources.files("leaderboard").joinpath("templates/page.html").read_text("utf-8"))
    return template.substitute(title=escape_html(title), body="\n".join(body))

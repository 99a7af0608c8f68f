"""The Markdown pages: ``LEADERBOARD.md`` (:func:`render_markdown`) reads in a terminal: the ranked summary of
the board first, then one table per threat class (at most :data:`MAX_COLUMNS` columns each), the attacks' costs,
the figures and the index of the study pages; ``studies/<study>.md`` and ``studies/other-runs.md``
(:mod:`leaderboard.studypages`). Per-seed numbers (p-values included) are in ``cells.csv`` and the HTML page's
detail rows. Free text is escaped for table cells; names are code spans that nothing in them can leave.
"""

from __future__ import annotations

import re

from leaderboard.summary import CONTROL_DEFENSE, Group

MAX_COLUMNS = 12  # no table wider than this: the page must read in a terminal

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


def md_table(head, rows, align) -> list[str]:
    """A Markdown table; ``align`` is one ``l`` or ``r`` per column. Refuses to be wider than MAX_COLUMNS."""
    if len(head) > MAX_COLUMNS:
        raise ValueError(f"a table of {len(head)} columns; split it (at most {MAX_COLUMNS})")
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def chunks(items: list, size: int) -> list[list]:
    """``items`` in runs of at most ``size``, as even as possible (9 + 8, not 11 + 6)."""
    if not items:
        return []
    n = -(-len(items) // size)
    step = -(-len(items) // n)
    return [items[i:i + step] for i in range(0, len(items), step)]


def kind_tables(g: Group, rows: list[str], kinds=("extraction", "removal", "detection"), *, head_cols=(),
                link=None) -> list[str]:
    """One table per threat class: a row per scheme in ``rows`` (the control last, as clean accuracy), a column
    per attack of the class (split so that no table passes MAX_COLUMNS); ``head_cols`` are (heading, function of
    the scheme's name) columns put after the scheme's name."""
    from leaderboard.text import board_cell_text

    lines = []
    for kind in kinds:
        cols = [a for a in g.attacks if g.kinds[a] == kind]
        if not cols:
            continue
        lines += [f"### {kind.capitalize()}", ""]
        parts = chunks(cols, MAX_COLUMNS - 1 - len(head_cols))
        for part in parts:
            head = ["Scheme", *(h for h, _ in head_cols), *(code(a) for a in part)]
            body = []
            for d in rows:
                name = code(d) + (" (control)" if d == CONTROL_DEFENSE else "") + (" ⚠" if d in g.gate else "")
                body.append([name, *(escape_md(f(d)) for _, f in head_cols),
                             *(escape_md(board_cell_text(g.cells[(d, a)], g.has_watermark[d])) for a in part)])
            lines += md_table(head, body, "l" + "r" * (len(head) - 1))
    return lines


def board_rows(g: Group) -> list[str]:
    """The rows of a board's tables: the watermarked schemes in rank order, then the control."""
    from leaderboard.ranking import rank_order

    order = rank_order(g)
    rest = [d for d in g.defenses if d not in order and d != CONTROL_DEFENSE]
    return order + rest + ([CONTROL_DEFENSE] if CONTROL_DEFENSE in g.defenses else [])


def board_notes(g: Group) -> list[str]:
    """The notes under a board's ranking, in page order (seed flips, retrained victims, devices, schemes that
    mark the API's answers), each only where it has something to say: one list for the Markdown and HTML pages."""
    from leaderboard.ranking import flips_text
    from leaderboard.text import api_text, devices_text, retrained_text

    return [note for note in (flips_text(g), retrained_text(g), devices_text(g), api_text(g)) if note]


def render_markdown(sections, title: str, cost: bool = False) -> str:
    """``LEADERBOARD.md`` of a :class:`leaderboard.sections.Sections`."""
    from leaderboard.plots import COST_NAME, COST_NOTE, HEATMAP_NOTE, heatmap_name
    from leaderboard.ranking import RANK_RULE, ranked_table
    from leaderboard.studypages import OTHER_NAME, study_name
    from leaderboard.text import (
        ATTACK_HEAD,
        ATTACK_NOTE,
        CELL_NOTE,
        CONTROL_NOTE,
        GATE_NOTE,
        attack_values,
        board_line,
    )

    lines = [f"# {escape_md(title)}", "", "Rendered by `wmbench leaderboard` from the result cards alone; do not edit.",
             ""]
    if not sections.declared:
        lines += ["No declared board's cells are among these cards (`bench/boards.py`), so this page shows every "
                  "scheme run, under the attacks at their default configuration, per data set, architecture and "
                  "profile (configured schemes are shown, not ranked; configured attacks are on the study pages).", ""]
    for g in sections.boards:
        lines += [f"## {escape_md(board_line(g))}", "", "### Ranked summary", "", *ranked_table(g), "",
                  escape_md(RANK_RULE), ""]
        if g.gate:
            lines += [escape_md(GATE_NOTE), ""]
            lines += [f"- {code(d)}: {escape_md(why)}" for d, why in sorted(g.gate.items())] + [""]
        lines += [line for note in board_notes(g) for line in (escape_md(note), "")]
        lines += [escape_md(CELL_NOTE), "", escape_md(CONTROL_NOTE), ""]
        lines += kind_tables(g, board_rows(g))
        lines += ["### Attacks", ""]
        rows = [[code(r.name)] + [escape_md(v) for v in attack_values(r)] for r in g.attack_rows]  # in class order
        lines += md_table(ATTACK_HEAD, rows, "ll" + "r" * (len(ATTACK_HEAD) - 2))
        lines += [escape_md(ATTACK_NOTE), ""]
        lines += [f"### WSR after attack ({escape_md(g.label)})", "",
                  f"[![WSR after attack, rows in rank order]({heatmap_name(g)})]({heatmap_name(g)})", "",
                  escape_md(HEATMAP_NOTE), ""]
    if cost:
        lines += ["## Attack cost versus WSR", "", f"[![Attack cost versus WSR]({COST_NAME})]({COST_NAME})", "",
                  escape_md(COST_NOTE), ""]
    lines += ["## Studies", "", "Every sweep and ablation, each on its own page (declared in `bench/boards.py`):", ""]
    for view in sections.studies:
        lines.append(f"- [{escape_md(view.study.title)}]({study_name(view.study.name)}): "
                     f"{escape_md(view.study.question)} ({view.n_cards} cards)")
    lines += [f"- [Other runs]({OTHER_NAME}): cards on no board and in no study ({len(sections.other)}).", ""]
    lines += ["## Per-seed detail", "",
              "Every card's WSR with its own interval, p-value, accuracies, cost and path: `cells.csv` (one row per "
              "card, for pandas) and the detail rows of `index.html`.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"

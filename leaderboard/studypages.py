"""The study pages, ``studies/<study>.md``, and the page of cards on no board and in no study,
``studies/other-runs.md``.

A study page states the declared study (:data:`bench.boards.STUDIES`: its question, scheme and column
patterns, seeds), a summary whose every number is computed here from the cards, its figures (one per swept
field, :func:`leaderboard.plots.render_sweeps`) and its tables (one per threat class, a cell as on the board:
mean WSR over seeds, 95% interval, majority verdict with its votes).
"""

from __future__ import annotations

from bench.spec import is_configured
from leaderboard.markdown import MAX_COLUMNS, chunks, code, escape_md, kind_tables, md_table
from leaderboard.summary import CONTROL_DEFENSE, KIND_ORDER, ROBUSTNESS_KINDS, Group, Stat
from leaderboard.sweeps import Sweep, find_sweeps, sweep_fields
from leaderboard.text import (
    DASH,
    detected_by_text,
    pct,
    pct_stat,
    point_text,
    pts_stat,
    share,
    sweep_rows,
    sweep_title,
    verdict_text,
)

__all__ = ["OTHER_NAME", "study_name", "study_figure_name", "study_sweeps", "render_study", "render_other",
           "study_summary"]

OTHER_NAME = "studies/other-runs.md"


def study_name(name: str) -> str:
    """``studies/<name>.md``, relative to the output folder."""
    return f"studies/{name}.md"


def study_figure_name(name: str, field: str) -> str:
    """``figures/study-<name>-wsr_vs_<field>.png``, relative to the output folder."""
    return f"figures/study-{name}-wsr_vs_{field}.png"


def study_sweeps(view) -> dict[str, list[Sweep]]:
    """{swept field: the sweeps of that field} of one study, in figure order."""
    sweeps = find_sweeps(view.groups)
    return {f: [s for s in sweeps if s.field == f] for f in sweep_fields(sweeps)}


def _rows(g: Group) -> list[str]:
    wm = [d for d in g.defenses if g.has_watermark[d]]
    return wm + ([CONTROL_DEFENSE] if CONTROL_DEFENSE in g.defenses else [])


def _scheme_line(g: Group, d: str) -> str:
    row = next(r for r in g.defense_rows if r.name == d)
    parts = [f"victim accuracy {pct_stat(row.victim_acc)}"]
    if row.acc_cost is not None:
        parts[0] += f" ({pts_stat(row.acc_cost)} against none)"
    if row.victim_wsr is not None:
        parts.append(f"victim WSR {pct_stat(row.victim_wsr)}")
    judged = [c for c in g.cells.values() if c.defense == d and c.kind in ROBUSTNESS_KINDS
              and not is_configured(c.attack) and c.status == "ok" and c.survived is not None]
    if judged:
        parts.append(f"ownership provable after {share(sum(1 for c in judged if c.survived), len(judged))} of its "
                     "extraction and removal columns at their default configuration")
    if row.det_total:
        parts.append(f"detected by {detected_by_text(row)}")
    seeds = sorted({c["seed"] for cell in g.cells.values() if cell.defense == d for c in cell.ok})
    return f"{code(d)} (seeds {', '.join(map(str, seeds)) or DASH}): " + "; ".join(parts)


def _sweep_line(sw: Sweep) -> str | None:
    """How the WSR of the watermarked schemes run at both ends of the sweep moves from its first point to its
    last (the same schemes at both ends, so that the two means compare); None when no scheme has both."""
    g = sw.group
    (_, first), (_, last) = sw.points[0], sw.points[-1]

    def ok(d: str, a: str) -> bool:
        return g.cells[(d, a)].status == "ok" and g.cells[(d, a)].stat("wsr_suspect") is not None

    both = [d for d in g.defenses if g.has_watermark[d] and ok(d, first) and ok(d, last)]
    if not both:
        return None
    ends = []
    for a in (first, last):
        cells = [g.cells[(d, a)] for d in both]
        kept = [c.survived for c in cells if c.survived is not None]
        ends.append((Stat.of(c.stat("wsr_suspect").mean for c in cells), sum(kept), len(kept)))
    (w0, k0, n0), (w1, k1, n1) = ends
    who = code(both[0]) if len(both) == 1 else f"the {len(both)} watermarked schemes run at both ends"
    return (f"{code(sw.family)} ({sw.kind}), {sw.axis} {point_text(sw.points[0][0], sw, first)} → "
            f"{point_text(sw.points[-1][0], sw, last)}: mean WSR of {who} {pct(w0.mean)} → {pct(w1.mean)}; "
            f"ownership provable for {k0}/{n0} → {k1}/{n1}")


def study_summary(view) -> list[str]:
    """The summary's bullet lines, every number from the cards."""
    lines = []
    for g in view.groups:
        ok = sum(len(c.ok) for c in g.cells.values())
        lines.append(f"- {escape_md(g.label)}: {g.n_cards} cards ({ok} ok), profiles {', '.join(g.profiles)}, "
                     f"seeds {', '.join(map(str, g.seeds))}.")
        lines += [f"- {_scheme_line(g, d)}." for d in g.defenses if g.has_watermark[d]]
    for sweeps in study_sweeps(view).values():
        lines += [f"- {line}." for sw in sweeps if (line := _sweep_line(sw))]
    return lines


def render_study(view) -> str:
    """One study's page (it lives in ``studies/``; links go up one folder)."""
    from leaderboard.plots import sweep_section

    st = view.study
    lines = [f"# {escape_md(st.title)}", "", "Rendered by `wmbench leaderboard` from the result cards alone; do "
             "not edit. [Back to the leaderboard](../LEADERBOARD.md)", "", f"**Question.** {escape_md(st.question)}",
             "", "**Declared** (`bench/boards.py`, study " + code(st.name) + "): schemes "
             + ", ".join(code(p) for p in st.defenses) + "; columns " + ", ".join(code(p) for p in st.attacks)
             + "; seeds " + (", ".join(map(str, st.seeds)) if st.seeds else "any")
             + "".join(f"; {k} {code(v)}" for k, v in (("data set", st.dataset), ("architecture", st.arch),
                                                         ("profile", st.profile)) if v) + ".", ""]
    if st.see_also:
        lines += ["See also: " + ", ".join(f"[{escape_md(p)}](../../{p})" for p in st.see_also) + ".", ""]
    lines += ["## Summary", "", *study_summary(view), ""]
    for fld, sweeps in study_sweeps(view).items():
        heading, alt, note = sweep_section(fld)
        name = study_figure_name(st.name, fld)
        lines += [f"## {escape_md(heading)}", "", f"[![{escape_md(alt)}](../{name})](../{name})", "",
                  escape_md(note), ""]
        for sw in sweeps:
            head, rows = sweep_rows(sw)
            lines += [f"### {escape_md(sweep_title(sw))}", ""]
            for part in chunks(list(range(len(head))), MAX_COLUMNS - 1):
                table = [[code(d)] + [escape_md(vals[i]) for i in part] for d, vals in rows]
                lines += md_table([f"Scheme ({escape_md(sw.axis)})"] + [head[i] for i in part], table,
                                  "l" + "r" * len(part))
    for g in view.groups:
        lines += [f"## {escape_md(g.label)}", ""]
        head_cols = (("Victim acc", lambda d, g=g: _row_text(g, d, "victim_acc")),
                     ("Victim WSR", lambda d, g=g: _row_text(g, d, "victim_wsr")))
        kinds = [k for k in KIND_ORDER if k != "control"] + sorted({*g.kinds.values()} - set(KIND_ORDER))
        if all(g.kinds[a] == "control" for a in g.attacks):
            kinds = ["control"]
        lines += kind_tables(g, _rows(g), kinds, head_cols=head_cols)
    return "\n".join(lines).rstrip("\n") + "\n"


def _row_text(g: Group, d: str, name: str) -> str:
    row = next(r for r in g.defense_rows if r.name == d)
    return pct_stat(getattr(row, name))


def render_other(cards: list[dict]) -> str:
    """The cards on no board and in no study, one row each."""
    from bench.results import card_path

    lines = ["# Other runs", "", "Rendered by `wmbench leaderboard` from the result cards alone; do not edit. "
             "[Back to the leaderboard](../LEADERBOARD.md)", "",
             "Cards on no declared board and in no declared study (`bench/boards.py`): listed here so that nothing "
             "run is dropped. Declare a study for them to get their own page.", ""]
    if not cards:
        return "\n".join(lines + ["None: every card is on the board or in a study."]) + "\n"
    rows = []
    for c in cards:
        verdict = verdict_text(c)
        rows.append([escape_md(f"{c['dataset']} / {c['arch']}"), escape_md(c["profile"]), code(c["defense"]),
                     code(c["attack"]), str(c["seed"]), pct(c.get("clean_acc_victim")), pct(c.get("wsr_suspect")),
                     verdict, code(str(card_path("results", c["dataset"], c["arch"], c["defense"], c["attack"],
                                                                   c["seed"])))])
    head = ["Data / arch", "Profile", "Scheme", "Column", "Seed", "Victim acc", "WSR", "Verdict", "Card"]
    return "\n".join(lines + md_table(head, rows, "lllllrrll")).rstrip("\n") + "\n"

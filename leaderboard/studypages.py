"""The study pages, ``studies/<study>.md``, and the page of cards on no board and in no study,
``studies/other-runs.md``.

A study page states the declared study (:data:`bench.boards.STUDIES`: its question, scheme and column
patterns, seeds), a summary whose every number is computed here from the cards, its figures (one per swept
field, :func:`leaderboard.plots.render_sweeps`) and its tables (one per threat class, a cell as on the board:
mean WSR over seeds, 95% interval, majority verdict with its votes).
"""

from __future__ import annotations

from bench.spec import is_configured
from bench.tuning import TUNING_SEEDS
from leaderboard.markdown import MAX_COLUMNS, chunks, code, escape_md, kind_tables, md_table
from leaderboard.summary import CONTROL_DEFENSE, KIND_ORDER, ROBUSTNESS_KINDS, Group
from leaderboard.sweeps import SchemeSweep, Sweep, find_scheme_sweeps, find_sweeps, sweep_fields
from leaderboard.text import (
    DASH,
    MARK_BAD,
    MARK_OK,
    api_embedded,
    detected_by_text,
    devices_text,
    pct,
    pct_stat,
    point_text,
    pts_stat,
    retrained_text,
    share,
    sweep_rows,
    sweep_title,
    tick_text,
    verdict_text,
    victim_wsr_text,
)

__all__ = ["OTHER_NAME", "study_name", "study_figure_name", "study_settings_figure_name", "study_sweeps",
           "study_scheme_sweeps", "render_study", "render_other", "study_summary"]

OTHER_NAME = "studies/other-runs.md"


def study_name(name: str) -> str:
    """``studies/<name>.md``, relative to the output folder."""
    return f"studies/{name}.md"


def study_figure_name(name: str, field: str) -> str:
    """``figures/study-<name>-wsr_vs_<field>.png``, relative to the output folder."""
    return f"figures/study-{name}-wsr_vs_{field}.png"


def study_settings_figure_name(name: str) -> str:
    """``figures/study-<name>-settings.png``: the figure of a study's scheme sweeps, relative to the output folder."""
    return f"figures/study-{name}-settings.png"


def study_scheme_sweeps(view) -> list[SchemeSweep]:
    """The sweeps over the schemes' own settings in one study (:func:`leaderboard.sweeps.find_scheme_sweeps`)."""
    return find_scheme_sweeps(view.groups)


def _scheme_sweep_line(sw: SchemeSweep) -> str:
    """How the victim's WSR and accuracy move from the first setting to the last."""
    (x0, d0), (x1, d1) = sw.points[0], sw.points[-1]

    def move(name: str) -> str:
        a, b = sw.victim(d0, name), sw.victim(d1, name)
        return f"{pct(a.mean if a else None)} → {pct(b.mean if b else None)}"

    seeds = ", ".join(map(str, sw.seeds)) or "each setting's own"
    wsr = "the model's WSR (the API serves the watermark)" if api_embedded(sw.family) else "victim WSR"
    return (f"{code(sw.family)} by {escape_md(sw.field)} {tick_text(x0)} → {tick_text(x1)} (seeds {seeds}): "
            f"{wsr} {move('wsr_victim')}, victim accuracy {move('clean_acc_victim')}")


def _scheme_sweep_table(sw: SchemeSweep) -> list[str]:
    """The rows of one scheme sweep: the victim's accuracy and WSR, then each column's cell, per setting."""
    from leaderboard.text import board_cell_text

    rows = [("Victim acc", [pct_stat(sw.victim(d, "clean_acc_victim")) for _, d in sw.points]),
            ("Victim WSR", [victim_wsr_text(d, sw.victim(d, "wsr_victim")) for _, d in sw.points])]
    rows += [(code(a), [board_cell_text(sw.cell(d, a), True) for _, d in sw.points])
             for a in sw.columns(detection=True)]
    head = [tick_text(x) for x, _ in sw.points]
    lines = [f"### {code(sw.family)} by {escape_md(sw.axis)}", ""]
    for part in chunks(list(range(len(head))), MAX_COLUMNS - 1):
        lines += md_table([escape_md(sw.field)] + [head[i] for i in part],
                          [[name] + [escape_md(vals[i]) for i in part] for name, vals in rows], "l" + "r" * len(part))
    return lines


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
        parts.append(f"victim WSR {victim_wsr_text(d, row.victim_wsr)}")
    judged = [c for c in g.cells.values() if c.defense == d and c.kind in ROBUSTNESS_KINDS
              and not is_configured(c.attack) and c.status == "ok" and c.survived is not None]
    if judged:
        parts.append(f"ownership provable after {share(sum(1 for c in judged if c.survived), len(judged))} of its "
                     "extraction and removal columns at their default configuration")
    if row.det_total:
        parts.append(f"detected by {detected_by_text(row)}")
    return f"{code(d)} (seeds {_seeds_text(g, d)}): " + "; ".join(parts)


def _seeds_text(g: Group, d: str) -> str:
    """The seeds of a scheme's ok cards in the group: ``0, 1, 2``."""
    return ", ".join(map(str, sorted(g.ok_seeds(d)))) or DASH


def _sweep_line(sw: Sweep) -> str | None:
    """How the WSR and verdict of each watermarked scheme run at both ends of the sweep move from its first
    point to its last (a mean over schemes would average a watermark that holds with one that never took);
    None when no scheme has both ends."""
    g = sw.group
    (_, first), (_, last) = sw.points[0], sw.points[-1]

    def ok(d: str, a: str) -> bool:
        return g.cells[(d, a)].status == "ok" and g.cells[(d, a)].stat("wsr_suspect") is not None

    both = [d for d in g.defenses if g.has_watermark[d] and ok(d, first) and ok(d, last)]
    if not both:
        return None

    def end(d: str, a: str) -> str:
        cell = g.cells[(d, a)]
        mark = "" if cell.survived is None else f" {MARK_OK if cell.survived else MARK_BAD}"
        return pct(cell.stat("wsr_suspect").mean) + mark

    moves = ", ".join(f"{code(d)} {end(d, first)} → {end(d, last)}" for d in both)
    return (f"{code(sw.family)} ({sw.kind}), {sw.axis} {point_text(sw.points[0][0], sw, first)} → "
            f"{point_text(sw.points[-1][0], sw, last)}: mean WSR over seeds {moves}")


def study_summary(view) -> list[str]:
    """The summary's bullet lines, every number from the cards."""
    lines = []
    for g in view.groups:
        ok = sum(len(c.ok) for c in g.cells.values())
        lines.append(f"- {escape_md(g.label)}: {g.n_cards} cards ({ok} ok), profiles {', '.join(g.profiles)}, "
                     f"seeds {', '.join(map(str, g.seeds))}.")
        tuning = [s for s in g.seeds if s in TUNING_SEEDS]
        if tuning:
            lines.append(f"- Seeds {', '.join(map(str, tuning))} are the tuning seeds (`bench/tuning.py`), which "
                         "the main board never shows; each row's numbers are over the seeds in its Seeds column, "
                         "so rows on different seeds compare only roughly.")
        lines += [f"- {_scheme_line(g, d)}." for d in g.defenses if g.has_watermark[d]]
    for sweeps in study_sweeps(view).values():
        lines += [f"- {line}." for sw in sweeps if (line := _sweep_line(sw))]
    lines += [f"- {_scheme_sweep_line(sw)}." for sw in study_scheme_sweeps(view)]
    return lines


def render_study(view) -> str:
    """One study's page (it lives in ``studies/``; links go up one folder)."""
    from leaderboard.plots import SCHEME_SWEEP_NOTE, sweep_section

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
    notes = (text for g in view.groups for text in (retrained_text(g), devices_text(g, embedding=False)))
    lines += [escape_md(text) + "\n" for text in notes if text]
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
    scheme_sweeps = study_scheme_sweeps(view)
    if scheme_sweeps:
        name = study_settings_figure_name(st.name)
        alt = "Victim and suspect WSR versus the schemes' settings"
        lines += ["## The schemes' own settings", "", f"[![{alt}](../{name})](../{name})", "",
                  escape_md(SCHEME_SWEEP_NOTE), ""]
        for sw in scheme_sweeps:
            lines += _scheme_sweep_table(sw)
    for g in view.groups:
        lines += [f"## {escape_md(g.label)}", ""]
        head_cols = (("Seeds", lambda d, g=g: _seeds_text(g, d)),
                     ("Victim acc", lambda d, g=g: _row_text(g, d, "victim_acc")),
                     ("Victim WSR", lambda d, g=g: _row_text(g, d, "victim_wsr")))
        kinds = [k for k in KIND_ORDER if k != "control"] + sorted({*g.kinds.values()} - set(KIND_ORDER))
        if all(g.kinds[a] == "control" for a in g.attacks):
            kinds = ["control"]
        lines += kind_tables(g, _rows(g), kinds, head_cols=head_cols)
    return "\n".join(lines).rstrip("\n") + "\n"


def _row_text(g: Group, d: str, name: str) -> str:
    row = next(r for r in g.defense_rows if r.name == d)
    return victim_wsr_text(d, row.victim_wsr) if name == "victim_wsr" else pct_stat(getattr(row, name))


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
        rows.append([escape_md(f"{c['dataset']} / {c['arch']}"), escape_md(_profile(c)), code(c["defense"]),
                     code(c["attack"]), str(c["seed"]), pct(c.get("clean_acc_victim")), pct(c.get("wsr_suspect")),
                     verdict, code(str(card_path("results", c["dataset"], c["arch"], c["defense"], c["attack"],
                                                                   c["seed"], c.get("precision"))))])
    head = ["Data / arch", "Profile", "Scheme", "Column", "Seed", "Victim acc", "WSR", "Verdict", "Card"]
    return "\n".join(lines + md_table(head, rows, "lllllrrll")).rstrip("\n") + "\n"


def _profile(card: dict) -> str:
    """A card's profile, with its training precision when that is not fp32 (``quick, bf16``)."""
    precision = card.get("precision") or "fp32"
    return card["profile"] if precision == "fp32" else f"{card['profile']}, {precision}"

"""The figures, drawn with matplotlib: WSR after attack as a heatmap (:func:`render_heatmap`), WSR and the
suspect's accuracy versus each swept field (:func:`render_sweeps`), the victim and its copies versus a scheme's
own swept setting (:func:`render_scheme_sweeps`) and attack cost versus WSR
(:func:`render_cost`), with their file names under the output folder and the captions the pages print with
them. Named ``plots`` so that it does not read as the ``figures/`` folder of PNGs it writes. Each PNG is saved
without a Software entry, so the same cards give the same bytes under a given matplotlib version, and with a
record of what it draws beside it (:mod:`leaderboard.drawn`), which is what ``--check`` compares across
matplotlib versions.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import WmbenchError
from bench.spec import is_configured
from leaderboard.drawn import save_figure
from leaderboard.summary import KIND_ORDER, NOT_RUN, Group, defense_sort_key
from leaderboard.sweeps import QUERIES_FIELD, SchemeSweep, Sweep, cost_clock, cost_points, sweep_axis, sweep_fields
from leaderboard.text import (
    DASH,
    MARK_BAD,
    MARK_OK,
    NOT_RUN_MARK,
    api_embedded,
    label_rate,
    point_text,
    rounded,
    sweep_title,
    tick_text,
)

HEATMAP_DPI = 100
HEATMAP_NOTE = ("Text: the suspect's WSR (mean over ok seeds) and the verdict. Colour: what the verdict rests on, "
                "the WSR above the suspect's own label rate (how often it gives the watermark's labels to clean "
                "inputs of other classes); a rejected cell is never coloured above the threshold, so a copy that "
                "answers the target to everything is red, not green.")
HEATMAP_NAME = "figures/wsr_heatmap.png"
QUERIES_DPI = 110
COST_NAME = "figures/cost_vs_wsr.png"
COST_DPI = 110
COST_MIN_WALL_S = 0.01  # a cell faster than this sits at this floor of the log axis
COST_LABEL_MAX = 40  # panels with at most this many points name the attack next to each point
COST_MAX_SCHEMES = 20  # more schemes than tab20 has colours: the configured variants are left to the tables
COST_MARKERS = {"control": "D", "extraction": "o", "removal": "s"}
COST_KIND_LABEL = {"control": "control (no attack)", "other": "other attack"}
CLAIM_THRESHOLD = 0.3  # drawn when no plotted card records its scheme's threshold (bench.api.Defense's default)


# ---------------------------------------------------------------------------------------------- captions
QUERIES_NOTE = (
    "WSR (watermarked schemes) and the stolen model's clean accuracy (every scheme) for each attack whose "
    "cards differ only in their query budget; one line per scheme, mean over ok seeds. Filled markers: "
    "ownership still provable (✓); hollow: removed (✗); dashed: the scheme's WSR threshold. \"all\" = the "
    "whole attacker pool."
)
SWEEP_NOTE = (
    "WSR (watermarked schemes) and the suspect model's clean accuracy (every scheme, the clean control "
    "included) for each attack whose cards differ only in their {what}; one line per scheme, mean over ok seeds. "
    "Filled markers: ownership still provable (✓); hollow: removed (✗); dashed: the scheme's WSR threshold."
)
COST_NOTE = (
    "Each point is one watermarked scheme under one attack that leaves a suspect model (mean over its ok "
    "seeds): x = the attack's wall seconds on a log scale (the attack alone, not the victim's training; "
    f"under {COST_MIN_WALL_S} s is drawn at {COST_MIN_WALL_S} s), y = the WSR left in the suspect model. "
    "Colour = scheme, marker = attack kind; filled = ownership still provable (✓), hollow = removed (✗); "
    "dashed line = the 30% claim threshold. How to read it: a point under the line is an attack that removes "
    "the watermark, and the further left it lies, the cheaper that removal; a robust scheme keeps all its "
    "points above the line, and the leftmost of its points under the line is the cheapest way to defeat it."
)


def sweep_section(field: str) -> tuple[str, str, str]:
    """(heading, figure alt text, note) of the figure and tables of one swept field."""
    if field == QUERIES_FIELD:
        return "WSR versus queries", "WSR and stolen accuracy versus queries", QUERIES_NOTE
    axis = sweep_axis(field)
    what = axis if axis == field else f"{axis} ({field})"
    return f"WSR versus {axis}", f"WSR and suspect accuracy versus {axis}", SWEEP_NOTE.format(what=what)


# ----------------------------------------------------------------------------------------------- heatmap
def evidence(cell) -> float:
    """The heatmap's colour for an ok cell: the mean over its ok seeds of the WSR above the suspect's own label rate
    (the share of clean inputs of other classes it gives the watermark's labels), which is what the verdict's
    threshold applies to; a rejected cell (✗) is held just under the lowest threshold of its cards, so a copy that
    answers the target to everything (WSR 100%, label rate 100%) is red, and no ✗ is ever green."""
    excess = [max(0.0, c["wsr_suspect"] - (label_rate(c) or 0.0))
              for c in cell.ok if c["wsr_suspect"] is not None]
    value = sum(excess) / len(excess) if excess else float("nan")
    if cell.survived is False:
        thresholds = [c["threshold"] for c in cell.ok if c["threshold"] is not None] or [CLAIM_THRESHOLD]
        value = min(value, min(thresholds) - 0.01)
    return value


def heatmap_name(g: Group) -> str:
    """Where a board's heatmap goes, relative to the output folder (:func:`leaderboard.sections.sections` names
    it: ``figures/wsr_heatmap.png`` for the main board or a lone ad-hoc one)."""
    return g.heatmap


HEATMAP_PANELS = (("control", "extraction"), ("removal",))  # columns grouped by threat class, one panel each


def render_heatmap(g: Group, path: Path) -> Path:
    """A board's suspect WSR after each attack: one row per watermarked scheme in rank order, one panel per
    threat class (:data:`HEATMAP_PANELS`; detection leaves no suspect model); each cell says the mean WSR and the
    verdict with its votes, its colour is :func:`evidence`; cells without a number are masked and labelled."""
    import matplotlib
    import matplotlib.ticker
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from leaderboard.ranking import rank_order

    rows = rank_order(g) or [d for d in g.defenses if g.has_watermark[d]]
    panels = [(kinds, cols) for kinds in HEATMAP_PANELS if (cols := [a for a in g.attacks if g.kinds[a] in kinds])]
    if not panels:
        panels = [((), [])]
    width_cols = max(len(cols) for _, cols in panels)
    height = [0.5 * max(1, len(rows)) + 1.7 for _ in panels]
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(max(6.0, 1.05 * width_cols + 3.4), sum(height)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": height})[:, 0]
        for ax, (kinds, cols) in zip(axes, panels, strict=True):
            ax.set_title(f"{g.label}, {' and '.join(kinds) or 'no'} attacks: suspect WSR, mean over seeds; "
                         "verdict, seeds that gave it", loc="left")
            if not rows or not cols:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no watermarked scheme or no attack with a suspect model", ha="center")
                continue
            data = np.full((len(rows), len(cols)), np.nan)
            annot = np.full((len(rows), len(cols)), "", dtype=object)
            masked: dict[tuple[int, int], str] = {}
            for i, d in enumerate(rows):
                for j, a in enumerate(cols):
                    cell = g.cells[(d, a)]
                    wsr = cell.stat("wsr_suspect") if cell.status == "ok" else None
                    if wsr is None:
                        masked[(i, j)] = cell.status
                        continue
                    data[i, j] = evidence(cell)
                    v = cell.votes()
                    verdict = "" if v is None else f"{MARK_OK if v.survived else MARK_BAD} {v.agree}/{v.n}"
                    annot[i, j] = f"{rounded(100.0 * wsr.mean):.1f}%\n{verdict}".rstrip()
            sns.heatmap(data, mask=np.isnan(data), annot=annot, fmt="", cmap="RdYlGn", vmin=0.0, vmax=1.0,
                        linewidths=1.0, linecolor="white", xticklabels=cols, yticklabels=rows,
                        cbar_kws={"label": "WSR above the suspect's own label rate",
                                  "format": matplotlib.ticker.PercentFormatter(1.0, decimals=0)}, ax=ax)
            for (i, j), status in sorted(masked.items()):
                face, hatch, edge, style, label = {
                    "error": ("#f8d7da", "///", "#d9534f", "-", "ERR"),
                    "n/a": ("#d9d9d9", None, "#d9d9d9", "-", "n/a"),
                    NOT_RUN: ("#ffffff", None, "#8c959f", ":", f"{NOT_RUN_MARK} not run"),
                }.get(status, ("#eeeeee", None, "#eeeeee", "-", DASH))
                ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, facecolor=face, hatch=hatch, edgecolor=edge,
                                       linestyle=style, linewidth=1.0))
                ax.text(j + 0.5, i + 0.5, label, ha="center", va="center",
                        color="#842029" if status == "error" else "#57606a",
                        fontweight="bold" if status == "error" else "normal",
                        bbox={"facecolor": face, "edgecolor": "none", "pad": 1.5} if hatch else None)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelrotation=0)
            if max(len(a) for a in cols) > 12:  # chain and configured names would run into each other
                for label in ax.get_xticklabels():
                    label.set(rotation=30, ha="right", rotation_mode="anchor")
            else:
                ax.tick_params(axis="x", labelrotation=0)
        save_figure(fig, path, HEATMAP_DPI)
    return path


# ---------------------------------------------------------------------------------------------- sweeps
def sweep_colours(sw: Sweep) -> dict[str, tuple]:
    """The schemes a sweep figure draws, each with a distinct colour, in the group's order: those with ok
    cards at two or more of the sweep's points (a scheme run at one setting only is not swept; if no scheme
    has two, those with one). tab10 for up to 10 schemes, tab20 beyond."""
    points = {d: sum(sw.cell(d, a).status == "ok" for _, a in sw.points) for d in sw.group.defenses}
    least = 2 if any(n >= 2 for n in points.values()) else 1
    return _palette([d for d, n in points.items() if n >= least])


def _palette(names: list[str]) -> dict[str, tuple]:
    """A colour per name in order: tab10 for up to 10 names, tab20 beyond (cycling past 20)."""
    import matplotlib

    colours = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {d: colours[i % len(colours)] for i, d in enumerate(names)}


def _verdict_line(ax, pts: list[tuple[float, float, bool | None]], colour, label: str) -> None:
    """One scheme's or column's WSR line: (x, mean WSR, verdict) points, a hollow marker where removed."""
    ax.plot([x for x, _, _ in pts], [w for _, w, _ in pts], marker="o", color=colour, label=label)
    removed = [(x, w) for x, w, kept in pts if kept is False]
    if removed:
        ax.plot(*zip(*removed, strict=True), linestyle="none", marker="o", color=colour, markerfacecolor="white")


def _share_axes(ax, xs: list[float], ticks: list[str], xlabel: str, ylabel: str, log: bool) -> None:
    """A panel whose y axis is a share (0-100%) over the sweep's points ``xs``, log-scaled or padded linear."""
    import matplotlib.ticker

    ax.set_ylabel(ylabel)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
    else:
        pad = 0.06 * (max(xs) - min(xs))
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_xticks(xs, ticks)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(xlabel)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.grid(True, color="#e5e5e5", linewidth=0.8)


def render_sweeps(sweeps: list[Sweep], path: Path) -> Path:
    """One row per sweep of one field: WSR (watermarked schemes) and the suspect's clean accuracy (every
    scheme) versus the field, one line per scheme; filled markers = retained, hollow = removed, dashed = the
    scheme's threshold. Query budgets are log-scaled (the stolen model's accuracy), any other field linear."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fields = sweep_fields(sweeps)
    if len(fields) != 1:
        raise ValueError(f"one figure draws the sweeps of one field, not {fields}")
    log = fields[0] == QUERIES_FIELD
    model = "stolen model" if log else "suspect model"
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(12.5, 3.6 * len(sweeps)), layout="constrained")
        axes = fig.subplots(len(sweeps), 2, squeeze=False)
        for (ax_wsr, ax_acc), sw in zip(axes, sweeps, strict=True):
            g = sw.group
            xs = [q for q, _ in sw.points]
            thresholds = set()
            colours = sweep_colours(sw)
            for d, colour in colours.items():
                cells = [(q, sw.cell(d, a)) for q, a in sw.points]
                acc = [(q, c.stat("clean_acc_suspect")) for q, c in cells if c.status == "ok"]
                acc = [(q, st.mean) for q, st in acc if st is not None]
                if acc:
                    ax_acc.plot(*zip(*acc, strict=True), marker="o", color=colour, label=d)
                if not g.has_watermark[d]:
                    continue
                wsr = [(q, c.stat("wsr_suspect"), c.survived) for q, c in cells if c.status == "ok"]
                wsr = [(q, st.mean, kept) for q, st, kept in wsr if st is not None]
                if not wsr:
                    continue
                _verdict_line(ax_wsr, wsr, colour, d)
                thresholds.update(t for c in g.cells.values() if c.defense == d for t in
                                  [card["threshold"] for card in c.ok] if t is not None)
            if not thresholds and ax_wsr.get_lines():
                thresholds.add(CLAIM_THRESHOLD)  # no plotted card records its threshold: the default one
            for t in sorted(thresholds):
                ax_wsr.axhline(t, color="#57606a", linestyle="--", linewidth=1.0)
            ax_wsr.set_title(sweep_title(sw), loc="left")
            for ax, what, empty in ((ax_wsr, f"WSR of the {model}", "no watermarked scheme"),
                                    (ax_acc, f"clean accuracy of the {model}", "no ok card")):
                _share_axes(ax, xs, [point_text(x, sw, a) for x, a in sw.points], sw.axis, what, log)
                if not ax.get_lines():
                    ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes)
            if colours:  # one key per row, beside it: every scheme drawn in either panel, none over the data
                handles = [Line2D([], [], marker="o", color=c, label=d) for d, c in colours.items()]
                ax_acc.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                              frameon=False)
        save_figure(fig, path, QUERIES_DPI)
    return path


# ------------------------------------------------------------------------------------------ scheme sweeps
SCHEME_SWEEP_NOTE = (
    "One row per scheme whose own settings were swept (all else equal): left, the victim's clean accuracy and "
    "WSR; right, the WSR the suspect model keeps under each attack column run at two or more of the settings. "
    "Means over the seeds every setting was run at (named in each row's title). Filled markers: ownership "
    "still provable (✓); hollow: removed (✗); dashed: the WSR threshold."
)


def render_scheme_sweeps(sweeps: list[SchemeSweep], path: Path) -> Path:
    """One row per scheme sweep of a study (:class:`leaderboard.sweeps.SchemeSweep`): the victim's accuracy and
    WSR versus the setting, and the WSR each attack column leaves in the suspect model versus the setting."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(12.5, 3.4 * len(sweeps)), layout="constrained")
        axes = fig.subplots(len(sweeps), 2, squeeze=False)
        for (ax_victim, ax_copy), sw in zip(axes, sweeps, strict=True):
            xs = [x for x, _ in sw.points]
            seeds = ", ".join(map(str, sw.seeds)) or "each setting's own"
            ax_victim.set_title(f"{sw.group.label}: {sw.family} by {sw.field} (seeds {seeds})", loc="left")
            wsr_label = "model WSR (the API serves the mark)" if api_embedded(sw.family) else "victim WSR"
            for name, label, colour in (("clean_acc_victim", "victim clean accuracy", "#24292f"),
                                        ("wsr_victim", wsr_label, "#0969da")):
                pts = [(x, st.mean) for x, d in sw.points if (st := sw.victim(d, name)) is not None]
                if pts:
                    ax_victim.plot(*zip(*pts, strict=True), marker="o", color=colour, label=label)
            columns = [a for a in sw.columns() if sum(bool(sw.cell(d, a).ok) for _, d in sw.points) >= 2]
            colours = _palette(columns)
            thresholds = set()
            for a in columns:
                pts = []
                for x, d in sw.points:
                    cell = sw.cell(d, a)
                    wsr = cell.stat("wsr_suspect")
                    if wsr is not None:
                        pts.append((x, wsr.mean, cell.survived))
                        thresholds.update(c["threshold"] for c in cell.ok if c["threshold"] is not None)
                _verdict_line(ax_copy, pts, colours[a], a)
            for t in sorted(thresholds):
                ax_copy.axhline(t, color="#57606a", linestyle="--", linewidth=1.0)
            log = min(xs) > 0 and max(xs) / min(xs) >= 10  # 0.02 to 0.5 would crowd the left of a linear axis
            for ax, what, empty in ((ax_victim, "victim: accuracy and WSR", "no victim card"),
                                    (ax_copy, "WSR of the suspect model", "no attack column at two settings")):
                _share_axes(ax, xs, [tick_text(x) for x in xs], sw.axis, what, log)
                if not ax.get_lines():
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes, color="#57606a")
            if ax_victim.get_lines():  # beside the panel, never over a line
                ax_victim.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
            if columns:
                handles = [Line2D([], [], marker="o", color=c, label=a) for a, c in colours.items()]
                ax_copy.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                               frameon=False, ncols=2 if len(columns) > 12 else 1)
        save_figure(fig, path, QUERIES_DPI)
    return path


# ------------------------------------------------------------------------------------------ cost vs WSR
def cost_schemes(defenses: list[str]) -> list[str]:
    """The schemes the cost figure draws: all of them while they fit :data:`COST_MAX_SCHEMES` distinct
    colours; beyond, the registered schemes as registered (no ``[...]`` configuration), which are what the
    leaderboard compares (every configured variant stays in the tables)."""
    unique = list(dict.fromkeys(defenses))
    if len(unique) <= COST_MAX_SCHEMES:
        return unique
    plain = [d for d in unique if not is_configured(d)]
    return plain or unique


def render_cost(groups: list[Group], path: Path) -> Path:
    """One panel per dataset/arch group with a point (:func:`cost_points`): the suspect's WSR versus the
    attack's CPU seconds, or wall seconds for cards made before CPU time was recorded (log-scaled), colour per
    scheme, marker per attack kind, filled = retained, hollow = removed, dashed = the claim threshold; small
    panels name the attack of each point."""
    import matplotlib
    import matplotlib.ticker
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [(g, pts) for g in groups if (pts := cost_points(g))]
    if not panels:
        raise WmbenchError("no ok card of a watermarked scheme with a suspect model: nothing to plot")
    keep = cost_schemes([p.defense for _, pts in panels for p in pts])
    left_out = sorted({p.defense for _, pts in panels for p in pts} - set(keep))
    panels = [(g, [p for p in pts if p.defense in keep]) for g, pts in panels]
    panels = [(g, pts) for g, pts in panels if pts]
    schemes = sorted(keep, key=defense_sort_key)
    colour = _palette(schemes)
    grey = "#57606a"
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(9.5, 4.4 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (g, pts) in zip(axes, panels, strict=True):
            xs = [max(p.wall_s, COST_MIN_WALL_S) for p in pts]
            for p, x in zip(pts, xs, strict=True):
                c = colour[p.defense]
                ax.plot([x], [p.wsr], linestyle="none", marker=COST_MARKERS.get(p.kind, "X"), markersize=7,
                        color=c, markeredgecolor=c, markeredgewidth=1.4,
                        markerfacecolor="white" if p.survived is False else c, zorder=3)
                if len(pts) <= COST_LABEL_MAX:
                    ax.annotate(p.attack, (x, p.wsr), xytext=(5, 3), textcoords="offset points", fontsize=7,
                                color=grey)
            thresholds = sorted({t for p in pts for t in p.thresholds}) or [CLAIM_THRESHOLD]
            for t in thresholds:
                ax.axhline(t, color=grey, linestyle="--", linewidth=1.0, zorder=1)
            ax.set_title(f"{g.label}: attack cost versus WSR (mean over ok seeds)"
                         + (f"; {len(left_out)} configured variant(s) not drawn, see the tables" if left_out else ""),
                         loc="left")
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 3.3, max(xs) * 3.3)  # a span of more than a decade always has a labelled tick
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(f"attack {'CPU' if cost_clock(g) == 'cpu' else 'wall'} seconds (log scale)")
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
            ax.set_ylabel("WSR of the suspect model")
            ax.grid(True, color="#e5e5e5", linewidth=0.8)
            shown = [d for d in schemes if any(p.defense == d for p in pts)]
            kinds = [k for k in (*KIND_ORDER, "other") if any(_cost_kind(p.kind) == k for p in pts)]
            handles = [Line2D([], [], linestyle="none", marker="o", markersize=7, color=colour[d], label=d)
                       for d in shown]
            handles += [Line2D([], [], linestyle="none", marker=COST_MARKERS.get(k, "X"), markersize=7, color=grey,
                               label=COST_KIND_LABEL.get(k, f"{k} attack")) for k in kinds]
            handles += [
                Line2D([], [], color=grey, linestyle="--", linewidth=1.0, label="claim threshold"),
                Line2D([], [], linestyle="none", label=f"filled: {MARK_OK} retained"),
                Line2D([], [], linestyle="none", label=f"hollow: {MARK_BAD} removed"),
            ]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        save_figure(fig, path, COST_DPI)
    return path


def _cost_kind(kind: str) -> str:
    return kind if kind in COST_MARKERS else "other"

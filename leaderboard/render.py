"""Render the leaderboard from the result cards alone: ``LEADERBOARD.md``, ``index.html``, a heatmap, an
attack-cost-versus-WSR scatter and, for every field the cards sweep, WSR and the suspect's clean accuracy
versus that field: versus queries (MEA-Defender's Fig. 2) when they hold a query-budget sweep, versus the
pruning rate when they hold a pruning sweep, and so on (``figures/wsr_vs_<field>.png``).

Everything here is a pure function of the cards (no clock, no host, no randomness), so the same cards give
byte-identical Markdown and HTML, and a byte-identical PNG for a given matplotlib version.

This module only orchestrates and publishes: :mod:`leaderboard.summary` aggregates the cards (and states the
aggregation rules), :mod:`leaderboard.studies` finds the sweeps and the cost points, :mod:`leaderboard.text`
formats, :mod:`leaderboard.markdown` and :mod:`leaderboard.html` write the pages and :mod:`leaderboard.plots`
draws the figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.errors import WmbenchError
from bench.results import load_results
from leaderboard.drawn import sidecar
from leaderboard.export import CSV_NAME, cells_csv
from leaderboard.html import render_html
from leaderboard.markdown import render_markdown
from leaderboard.plots import COST_NAME, HEATMAP_NAME, render_cost, render_heatmap, render_sweeps, sweep_figure_name
from leaderboard.ranking import sync_readme
from leaderboard.studies import QUERIES_FIELD, cost_points, find_sweeps, sweep_fields
from leaderboard.summary import summarize

__all__ = ["render"]

DEFAULT_TITLE = "wmbench leaderboard"


def render(results_dir: str | Path, out_dir: str | Path, *, title: str | None = None,
           readme: str | Path | None = None) -> dict[str, Path]:
    """Write ``LEADERBOARD.md``, ``index.html`` and ``figures/wsr_heatmap.png`` under ``out_dir``;
    ``figures/cost_vs_wsr.png`` when some ok card of a watermarked scheme has a suspect model
    (:func:`cost_points`), and ``figures/wsr_vs_<field>.png`` for each field the cards sweep
    (:func:`find_sweeps`): ``wsr_vs_queries.png`` for a query sweep, ``wsr_vs_rate.png`` for a pruning sweep.
    A figure these cards do not call for is removed if an earlier render left it.

    With ``readme``, the ranked board between that README's markers is brought up to date
    (:func:`leaderboard.ranking.sync_readme`; a README without the markers is left alone).
    Also ``cells.csv`` (:mod:`leaderboard.export`), one row per card.
    Returns their paths under the keys ``markdown``, ``html``, ``csv``, ``heatmap``, ``cost`` (when drawn),
    ``queries`` (with a query sweep) and ``wsr_vs_<field>`` (with a sweep of any other field).
    Raises :class:`bench.errors.CardError` for a missing directory or an invalid card, and
    :class:`bench.errors.WmbenchError` when there is no card at all.
    """
    df = load_results(results_dir)
    if df.empty:
        raise WmbenchError(f"no result cards under {results_dir}; run `wmbench run` first")
    groups = summarize(df)
    cards = df.drop(columns="path").to_dict("records")
    title = title or DEFAULT_TITLE
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise WmbenchError(f"--out {str(out)!r} is a file, not a folder; pass a folder for the leaderboard")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(".tmp-render-*"):  # left by a render that was killed
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=".tmp-render-", dir=out))
    except OSError as exc:
        raise WmbenchError(f"cannot write the leaderboard into {str(out)!r}: {exc.strerror or exc}; pass a "
                           "writable --out") from None
    try:  # everything is drawn into a staging folder first: a failure leaves the published pages as they were
        made = _render_into(groups, title, stage)
        made["csv"] = stage / CSV_NAME
        made["csv"].write_text(cells_csv(cards), encoding="utf-8", newline="\n")
        (out / "figures").mkdir(exist_ok=True)
        managed = {out / COST_NAME, *(out / "figures").glob(Path(sweep_figure_name("*")).name)}
        managed |= {sidecar(p) for p in managed}
        pages = ("markdown", "html", "csv")  # figures first, pages last: a page never points at a figure not yet there
        for key in sorted(made, key=lambda k: k in pages):
            if key not in pages:  # a figure's record of what it draws goes with it
                os.replace(sidecar(made[key]), sidecar(out / made[key].relative_to(stage)))
            os.replace(made[key], out / made[key].relative_to(stage))
            made[key] = out / made[key].relative_to(stage)
        kept = set(made.values()) | {sidecar(p) for p in made.values()}
        for stale in managed - kept:  # a figure these cards no longer call for
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise WmbenchError(f"cannot write the leaderboard into {str(out)!r}: {exc.strerror or exc}; pass a "
                           "writable --out") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if readme is not None:
        sync_readme(readme, groups)
    return made


def _render_into(groups, title: str, out: Path) -> dict[str, Path]:
    """Draw every page and figure of ``groups`` into the empty folder ``out``."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / "LEADERBOARD.md",
        "html": out / "index.html",
        "heatmap": out / HEATMAP_NAME,
    }
    sweeps = find_sweeps(groups)
    cost = any(cost_points(g) for g in groups)
    paths["markdown"].write_text(render_markdown(groups, title, sweeps, cost), encoding="utf-8", newline="\n")
    paths["html"].write_text(render_html(groups, title, sweeps, cost), encoding="utf-8", newline="\n")
    render_heatmap(groups, paths["heatmap"])
    if cost:
        paths["cost"] = render_cost(groups, out / COST_NAME)
    for fld in sweep_fields(sweeps):
        key = fld if fld == QUERIES_FIELD else Path(sweep_figure_name(fld)).stem
        paths[key] = render_sweeps([s for s in sweeps if s.field == fld], out / sweep_figure_name(fld))
    return paths

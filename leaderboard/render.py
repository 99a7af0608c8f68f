"""Render the leaderboard from the result cards alone: the declared board (``LEADERBOARD.md``, ``index.html``,
its heatmap and the attack-cost-versus-WSR scatter), one page per declared study with its figures
(``studies/<study>.md``), the cards on no board and in no study (``studies/other-runs.md``) and ``cells.csv``.

Everything here is a pure function of the cards (no clock, no host, no randomness), so the same cards give
byte-identical Markdown and HTML, and a byte-identical PNG for a given matplotlib version.

This module only orchestrates and publishes: :mod:`leaderboard.sections` sorts the cards onto the board and
the studies, :mod:`leaderboard.summary` aggregates them (and states the aggregation rules),
:mod:`leaderboard.sweeps` finds the sweeps and the cost points, :mod:`leaderboard.text` formats,
:mod:`leaderboard.markdown`, :mod:`leaderboard.studypages` and :mod:`leaderboard.html` write the pages and
:mod:`leaderboard.plots` draws the figures.
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
from leaderboard.plots import (
    COST_NAME,
    heatmap_name,
    render_cost,
    render_heatmap,
    render_scheme_sweeps,
    render_sweeps,
)
from leaderboard.ranking import sync_readme
from leaderboard.sections import sections
from leaderboard.studypages import (
    OTHER_NAME,
    render_other,
    render_study,
    study_figure_name,
    study_name,
    study_scheme_sweeps,
    study_settings_figure_name,
    study_sweeps,
)
from leaderboard.sweeps import cost_points

__all__ = ["render", "card_base_of"]

DEFAULT_TITLE = "wmbench leaderboard"


def render(results_dir: str | Path, out_dir: str | Path, *, title: str | None = None,
           readme: str | Path | None = None, card_base: str | None = None) -> dict[str, Path]:
    """Write the leaderboard of the cards under ``results_dir`` into ``out_dir``: ``LEADERBOARD.md`` and
    ``index.html`` (the board: ranked summary, one table per threat class, attack costs, figures, the study
    index), ``figures/wsr_heatmap.png`` (one per board), ``figures/cost_vs_wsr.png`` when some board cell has a
    suspect model, ``studies/<study>.md`` for every declared study with a card and its figures
    (``figures/study-<study>-wsr_vs_<field>.png`` per swept attack field, ``figures/study-<study>-settings.png``
    for the schemes' own swept settings), ``studies/other-runs.md`` and ``cells.csv``. A figure or
    page these cards no longer call for is removed if an earlier render left it.

    ``index.html`` links every card relative to itself: by ``card_base`` when given (the results folder relative
    to the folder the page is published in, forward slashes; ``--check`` renders into a temporary folder and passes
    the published one's), else :func:`card_base_of` ``results_dir`` and ``out_dir``.
    With ``readme``, the ranked board between that README's markers is brought up to date
    (:func:`leaderboard.ranking.sync_readme`; a README without the markers is left alone).
    Returns the paths written, under the keys ``markdown``, ``html``, ``csv``, ``other``, ``heatmap`` (the first
    board's), ``heatmap:<file>`` (any other board's), ``cost`` (when drawn), ``study:<name>`` and
    ``study:<name>:<field>`` and ``study:<name>:settings`` (a study's page and figures).
    Raises :class:`bench.errors.CardError` for a missing directory or an invalid card, and
    :class:`bench.errors.WmbenchError` when there is no card at all.
    """
    df = load_results(results_dir)
    if df.empty:
        raise WmbenchError(f"no result cards under {results_dir}; run `wmbench run` first")
    sec = sections(df)
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
        base = card_base if card_base is not None else card_base_of(results_dir, out)
        made = _render_into(sec, title, stage, card_base=base)
        made["csv"] = stage / CSV_NAME
        made["csv"].write_text(cells_csv(cards), encoding="utf-8", newline="\n")
        for sub in MANAGED_DIRS:
            (out / sub).mkdir(exist_ok=True)
        managed = {p for sub, pattern in MANAGED for p in (out / sub).glob(pattern)}
        pages = ("markdown", "html", "csv")  # figures and study pages first: a page never points at one not there
        for key in sorted(made, key=lambda k: k in pages):
            if made[key].suffix == ".png":  # a figure's record of what it draws goes with it
                os.replace(sidecar(made[key]), sidecar(out / made[key].relative_to(stage)))
            os.replace(made[key], out / made[key].relative_to(stage))
            made[key] = out / made[key].relative_to(stage)
        kept = set(made.values()) | {sidecar(p) for p in made.values() if p.suffix == ".png"}
        for stale in managed - kept:  # a figure or page these cards no longer call for
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise WmbenchError(f"cannot write the leaderboard into {str(out)!r}: {exc.strerror or exc}; pass a "
                           "writable --out") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if readme is not None:
        sync_readme(readme, sec.boards)
    return made


MANAGED_DIRS = ("figures", "studies")
MANAGED = (("figures", "*.png"), ("figures", "*.json"), ("studies", "*.md"), ("studies", "*.html"))


def card_base_of(results_dir: str | Path, out_dir: str | Path) -> str:
    """The results folder relative to the output folder, with forward slashes (``../results``): the base of the
    page's card links, the same wherever the two folders sit together. Where no relative path exists (another
    drive), the results folder's ``file:`` URI."""
    try:
        return Path(os.path.relpath(results_dir, out_dir)).as_posix()
    except ValueError:
        return Path(results_dir).resolve().as_uri()


def _render_into(sec, title: str, out: Path, *, card_base: str) -> dict[str, Path]:
    """Draw every page and figure of the sections into the empty folder ``out``; ``card_base`` as in
    :func:`render`."""
    for sub in MANAGED_DIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for i, g in enumerate(sec.boards):
        name = heatmap_name(g)
        paths["heatmap" if i == 0 else f"heatmap:{Path(name).name}"] = render_heatmap(g, out / name)
    cost = any(cost_points(g) for g in sec.boards)
    if cost:
        paths["cost"] = render_cost(sec.boards, out / COST_NAME)
    for view in sec.studies:
        name = view.study.name
        for fld, sweeps in study_sweeps(view).items():
            paths[f"study:{name}:{fld}"] = render_sweeps(sweeps, out / study_figure_name(name, fld))
        scheme_sweeps = study_scheme_sweeps(view)
        if scheme_sweeps:
            paths[f"study:{name}:settings"] = render_scheme_sweeps(scheme_sweeps,
                                                                   out / study_settings_figure_name(name))
        paths[f"study:{name}"] = out / study_name(name)
        paths[f"study:{name}"].write_text(render_study(view), encoding="utf-8", newline="\n")
    paths["other"] = out / OTHER_NAME
    paths["other"].write_text(render_other(sec.other), encoding="utf-8", newline="\n")
    paths["markdown"] = out / "LEADERBOARD.md"
    paths["markdown"].write_text(render_markdown(sec, title, cost), encoding="utf-8", newline="\n")
    paths["html"] = out / "index.html"
    paths["html"].write_text(render_html(sec, title, cost, card_base=card_base), encoding="utf-8", newline="\n")
    return paths

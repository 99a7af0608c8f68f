"""Pinned published results, re-run at this machine's scale and printed side by side with the paper.

A reproduction is data: the data set, the scheme, and for each paper row the attack that plays its part
and the paper's (accuracy, WSR). ``wmbench reproduce NAME`` runs the needed cells through the ordinary
runner (so everything is cached and carded like any sweep) and writes a Markdown table.

This module is the machinery only: the dataclasses, a registry and :func:`run_reproduction`. The concrete
reproductions are declared in a package above ``bench`` that registers them on import
(:func:`register_reproduction`); the command line imports it before listing or running one. A reproduction's
``explain`` hook, the analysis printed after its table, is a callable declared there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import UnknownNameError, shorten, suggest
from bench.registry import ATTACKS, DuplicateNameError

__all__ = [
    "Reproduction",
    "Ablation",
    "Row",
    "SchemeRow",
    "REPRODUCTIONS",
    "register_reproduction",
    "list_reproductions",
    "get_reproduction",
    "run_reproduction",
]


@dataclass(frozen=True)
class Row:
    label: str  # the paper's name for the setting
    attack: str  # our attack spec playing that part
    paper_acc: float
    paper_wsr: float


@dataclass(frozen=True)
class Reproduction:
    name: str
    title: str
    source: str
    dataset: str
    defense: str
    rows: tuple[Row, ...]
    # returns extra Markdown lines from (plan, matrix, seeds, name, every card as a DataFrame), printed after
    # the table; it may write files named after the reproduction beside its table
    explain: Callable[[Any, Any, list[int], str, Any], list[str]] | None = None


@dataclass(frozen=True)
class SchemeRow:
    label: str  # the paper's name for the row
    defense: str  # our scheme playing it
    paper_victim: tuple[float, float] | None  # (accuracy, WSR) as the paper prints them, fractions
    paper_extracted: tuple[float, float] | None


@dataclass(frozen=True)
class Ablation:
    """A reproduction whose rows are schemes (a loss ablation): each scheme's victim and its copies by
    ``attacks``, over the seeds, beside the paper's numbers."""

    name: str
    title: str
    source: str
    dataset: str
    rows: tuple[SchemeRow, ...]
    attacks: tuple[str, ...]
    note: str = ""


R = TypeVar("R", Reproduction, Ablation)

#: name -> reproduction, in the order they were registered (``wmbench reproduce --list`` prints them so)
REPRODUCTIONS: dict[str, Reproduction | Ablation] = {}


def register_reproduction(rep: R) -> R:
    """Add ``rep`` under its name and return it; the packages above ``bench`` declare theirs this way on import.
    Registering the same reproduction again is a no-op; another one under a taken name is an error."""
    old = REPRODUCTIONS.get(rep.name)
    if old is not None and old != rep:
        raise DuplicateNameError(f"reproduction {rep.name!r} is already registered ({old.title!r}); choose "
                                 f"another name for {rep.title!r}")
    REPRODUCTIONS[rep.name] = rep
    return rep


def list_reproductions() -> list[Reproduction | Ablation]:
    """Every registered reproduction, in the order they were registered."""
    return list(REPRODUCTIONS.values())


def get_reproduction(name: str) -> Reproduction | Ablation:
    try:
        return REPRODUCTIONS[name]
    except KeyError:
        hint = suggest(name, REPRODUCTIONS, n=1)
        known = f"choose one of {', '.join(REPRODUCTIONS)}" if REPRODUCTIONS else "none is registered"
        raise UnknownNameError(f"unknown reproduction {shorten(name)!r}; {hint}{known}") from None


def _pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.2f}%"


def run_reproduction(name: str, plan, seeds: list[int], **run_options) -> tuple[str, Path]:
    """Run the reproduction's cells (``run_options`` go to :func:`bench.runner.run`) and return (Markdown
    table, where it was written)."""
    from bench.planning import plan_matrix
    from bench.results import load_results
    from bench.runner import run

    rep = get_reproduction(name)
    if isinstance(rep, Ablation):
        return _run_ablation(rep, plan, seeds, run_options)
    available = [r for r in rep.rows if r.attack in ATTACKS]
    missing = [r for r in rep.rows if r.attack not in ATTACKS]
    run(plan, f"none,{rep.defense}", ",".join(r.attack for r in available), seeds, **run_options)
    cards = load_results(plan.results_dir)
    df = cards[(cards.dataset == rep.dataset) & (cards.arch == plan.arch) & (cards.defense == rep.defense)
               & (cards.profile == plan.profile.name) & (cards.seed.isin(seeds)) & (cards.status == "ok")]
    lines = [
        f"# Reproduction: {rep.title}",
        "",
        f"Source: {rep.source}. Measured: `wmbench reproduce {rep.name} --profile {plan.profile.name} "
        f"--seeds {','.join(map(str, seeds))}` on {plan.dataset}/{plan.arch}; budgets: owner's training set "
        f"{plan.profile.victim_train} images, attacker pool {plan.profile.attacker_pool}, "
        f"{plan.profile.epochs} training epochs, {plan.profile.attack_epochs} attack epochs.",
        "",
        "| setting | our attack | paper acc | measured acc | paper WSR | measured WSR | null WSR | p-value |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rep.rows:
        cells = df[df.attack == r.attack]
        if r in missing:
            lines.append(f"| {r.label} | {r.attack} (not implemented yet) | {_pct(r.paper_acc)} | — | "
                         f"{_pct(r.paper_wsr)} | — | — | — |")
            continue
        acc = cells.clean_acc_suspect.mean() if len(cells) else None
        wsr = cells.wsr_suspect.mean() if len(cells) else None
        null = cells.wsr_null.max() if len(cells) else None
        p = cells.p_value.max() if len(cells) else None
        sd = f" ± {100 * cells.wsr_suspect.std():.2f}" if len(cells) > 1 else ""
        lines.append(f"| {r.label} | {r.attack} | {_pct(r.paper_acc)} | {_pct(acc)} | {_pct(r.paper_wsr)} | "
                     f"{_pct(wsr)}{sd} | {_pct(null)} | {'—' if p is None or p != p else f'{p:.1e}'} |")
    if rep.explain is not None:
        matrix = plan_matrix(plan, f"none,{rep.defense}", ",".join(r.attack for r in available), seeds)
        lines += rep.explain(plan, matrix, seeds, rep.name, cards)
    text = "\n".join(lines) + "\n"
    out = Path(plan.results_dir) / "reproductions" / f"{rep.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text, out


def _stats(values) -> str:
    vals = [float(v) for v in values if v == v]
    if not vals:
        return "—"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{100 * mean:.2f}%"
    sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{100 * mean:.2f} ± {100 * sd:.2f}%"


def _paper(pair: tuple[float, float] | None) -> str:
    return "—" if pair is None else f"{100 * pair[0]:.2f}% / {100 * pair[1]:.2f}%"


def _run_ablation(rep: Ablation, plan, seeds: list[int], run_options: dict) -> tuple[str, Path]:
    from bench.results import load_results
    from bench.runner import run

    defenses = ",".join(dict.fromkeys(r.defense for r in rep.rows))
    run(plan, defenses, ",".join(("identity", *rep.attacks)), seeds, **run_options)
    cards = load_results(plan.results_dir)
    df = cards[(cards.dataset == rep.dataset) & (cards.arch == plan.arch) & (cards.profile == plan.profile.name)
               & cards.seed.isin(seeds) & (cards.status == "ok")]
    seed_text = ",".join(map(str, seeds))
    lines = [f"# Reproduction: {rep.title}", "",
             f"Source: {rep.source}. Measured: `wmbench reproduce {rep.name} --profile {plan.profile.name} --seeds "
             f"{seed_text}` on {rep.dataset}/{plan.arch}. Each cell: accuracy / WSR; ours are the mean ± sd over "
             f"seeds {seed_text}, and a copy's ✓ count is the seeds whose card says ownership is retained "
             f"(WSR >= threshold and p < 0.01 against the null models).", "", rep.note, "",
             "| paper's row | our scheme | paper victim | victim acc | victim WSR | paper extracted | "
             + " | ".join(f"{a} copy acc | {a} copy WSR | retained" for a in rep.attacks) + " |",
             "|---|---|---:|---:|---:|---:|" + "---:|---:|---:|" * len(rep.attacks)]
    for row in rep.rows:
        mine = df[df.defense == row.defense]
        ident = mine[mine.attack == "identity"]
        cells = [f"{row.label}", f"`{row.defense}`", _paper(row.paper_victim),
                 _stats(ident.clean_acc_victim), _stats(ident.wsr_victim), _paper(row.paper_extracted)]
        for attack in rep.attacks:
            copies = mine[mine.attack == attack]
            kept = int(copies.retained.fillna(False).astype(bool).sum())
            cells += [_stats(copies.clean_acc_suspect), _stats(copies.wsr_suspect),
                      f"{kept}/{len(copies)}" if len(copies) else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(plan.results_dir) / "reproductions" / f"{rep.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text, out

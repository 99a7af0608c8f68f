"""Pinned published results, re-run at this machine's scale and printed side by side with the paper.

A reproduction is data: the data set, the scheme, and for each paper row the attack that plays its part
and the paper's (accuracy, WSR). ``wmbench reproduce NAME`` runs the needed cells through the ordinary
runner (so everything is cached and carded like any sweep) and writes a Markdown table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UnknownNameError
from bench.registry import ATTACKS

__all__ = ["Reproduction", "REPRODUCTIONS", "get_reproduction", "run_reproduction"]


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
    # "module:function" returning extra Markdown lines from (plan, matrix, seeds, name, every card as a
    # DataFrame), after the table; it may write files named after the reproduction beside its table
    explain: str | None = None


REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r
    for r in (
        Reproduction(
            name="mea-defender-fmnist",
            title="MEA-Defender, Table I, supervised Fashion-MNIST row",
            source="Lv et al., MEA-Defender, IEEE S&P 2024 (arXiv:2401.15239), Table I of the repository's PDF",
            dataset="fashion-mnist",
            defense="mea_defender",
            rows=(
                Row("victim", "identity", 0.8977, 1.0),
                Row("Hinton KD (soft labels)", "soft_label", 0.8946, 0.7075),
                Row("Papernot (Jacobian augmentation)", "jacobian", 0.8939, 0.8230),
                Row("Knockoff Nets", "knockoff", 0.8957, 0.8550),
            ),
            explain="defenses.mea_defender:explain_reproduction",
        ),
    )
}


def get_reproduction(name: str) -> Reproduction:
    try:
        return REPRODUCTIONS[name]
    except KeyError:
        raise UnknownNameError(f"unknown reproduction {name!r}; choose one of {', '.join(REPRODUCTIONS)}") from None


def _pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.2f}%"


def run_reproduction(name: str, plan, seeds: list[int], progress: bool = True,
                     backend: str | None = None) -> tuple[str, Path]:
    """Run the reproduction's cells and return (Markdown table, where it was written)."""
    from bench.results import load_results
    from bench.runner import execute, plan_run

    rep = get_reproduction(name)
    available = [r for r in rep.rows if r.attack in ATTACKS]
    missing = [r for r in rep.rows if r.attack not in ATTACKS]
    matrix = plan_run(plan, f"none,{rep.defense}", ",".join(r.attack for r in available), seeds)
    execute(plan, matrix, progress=progress, backend=backend)
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
    if rep.explain:
        module, _, func = rep.explain.partition(":")
        lines += getattr(importlib.import_module(module), func)(plan, matrix, seeds, rep.name, cards)
    text = "\n".join(lines) + "\n"
    out = Path(plan.results_dir) / "reproductions" / f"{rep.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text, out

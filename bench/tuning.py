"""The tuning protocol (``docs/protocol.md``): every scheme gets the same declared, victim-side chance.

* **Gate** (victim side only, on the tuning seeds, means over those seeds): clean-accuracy cost against the
  ``none`` control of the same profile and seed <= ``MAX_ACC_COST``; the victim's WSR on the scheme's own
  verification set >= ``MIN_WSR``. False triggering is reported where the scheme records it.
* **Tuning seeds** ``TUNING_SEEDS``: the board never shows them, so its seeds stay out-of-sample.
* A scheme whose registered defaults pass keeps them. A scheme that declares a :class:`Grid`
  (``tuning_grid`` on its class: one documented knob, its values, fixed before it is run) is tuned over it
  by :func:`select`: the **strongest** point that passes the gate (for ``kl_weight``: the largest KL weight,
  a word such as ``auto`` placed by the mean weight it applied, read from its cards; a tie goes to the
  number). If no point passes, the accuracy gate gives way first (the smallest accuracy cost among the
  points that embed, WSR >= ``MIN_WSR``), then the WSR gate (the highest WSR); the pick is marked ⚠.

Selection never reads an attack's result: :func:`gate` looks at ``identity`` cards only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["TUNING_SEEDS", "MAX_ACC_COST", "MIN_WSR", "Grid", "GateResult", "gate", "select", "strength"]

TUNING_SEEDS = (100, 101)
MAX_ACC_COST = 0.02  # clean-accuracy points (as a fraction) a watermark may cost against ``none``
MIN_WSR = 0.90  # victim WSR on the scheme's own verification set
CONTROL = "none"


@dataclass(frozen=True)
class Grid:
    """A declared tuning grid: one knob of the scheme's config and its values, in any order. ``strength``
    names the ``victim_info`` stage field that measures a word value's strength (its mean applied value)."""

    knob: str
    values: tuple
    strength: str | None = None


@dataclass(frozen=True)
class GateResult:
    """One scheme (or grid point) against the gate, over the tuning seeds."""

    label: str
    seeds: tuple[int, ...]
    acc: float | None = None  # victim clean accuracy, mean over seeds
    acc_control: float | None = None
    wsr: float | None = None  # victim WSR, mean over seeds
    wfpr_seen: float | None = None
    wfpr_heldout: float | None = None
    strength: float | None = None  # the knob's value (or the mean value a word applied)
    missing: tuple[int, ...] = ()  # tuning seeds with no ok identity card (scheme or control)
    word: bool = False  # the point stands for a word value (``auto``), not a number
    api: bool = False  # embedding by the scheme's own rule: served answers (DAWN), 1 by construction
    per_seed: dict = field(default_factory=dict, compare=False)  # seed -> (acc, acc_control, wsr)

    @property
    def cost(self) -> float | None:
        return None if self.acc is None or self.acc_control is None else self.acc_control - self.acc

    @property
    def complete(self) -> bool:
        return not self.missing and self.cost is not None and self.wsr is not None

    @property
    def passes_cost(self) -> bool:
        return self.complete and self.cost <= MAX_ACC_COST + 1e-12

    @property
    def passes_wsr(self) -> bool:
        return self.complete and self.wsr >= MIN_WSR - 1e-12

    @property
    def passes(self) -> bool:
        return self.passes_cost and self.passes_wsr


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def strength(info: dict, field_name: str) -> float | None:
    """The mean of a per-stage field of ``victim_info`` over every training step of both stages."""
    total, steps = 0.0, 0
    for stage in ("stage1", "stage2"):
        st = info.get(stage) or {}
        if field_name in st and st.get("steps"):
            total += float(st[field_name]) * st["steps"]
            steps += st["steps"]
    return total / steps if steps else None


def _identity(cards, label: str, seeds, profile: str | None, dataset: str | None, arch: str | None):
    sel = (cards.attack == "identity") & (cards.status == "ok") & (cards.defense == label) & cards.seed.isin(seeds)
    for col, want in (("profile", profile), ("dataset", dataset), ("arch", arch)):
        if want is not None:
            sel &= cards[col] == want
    return {int(r.seed): r for r in cards[sel].itertuples()}


def gate(cards, label: str, seeds=TUNING_SEEDS, *, value=None, strength_field: str | None = None,
         embedding: str = "model", profile: str | None = "quick", dataset: str | None = None,
         arch: str | None = None) -> GateResult:
    """``label`` against the gate from its ``identity`` cards and the control's at ``seeds``. ``value`` is
    the grid value this point stands for (its strength when a number; when a word, the mean of
    ``strength_field`` over its runs). ``embedding="api"`` (the scheme's class says so: DAWN) takes the
    scheme's own rule: the API serves the watermark answers by construction, so the embedding gate reads 1."""
    seeds = tuple(int(s) for s in seeds)
    mine = _identity(cards, label, seeds, profile, dataset, arch)
    ctrl = _identity(cards, CONTROL, seeds, profile, dataset, arch)
    missing = tuple(s for s in seeds if s not in mine or s not in ctrl)
    per_seed, infos = {}, []
    for s in seeds:
        if s in mine:
            info = (mine[s].extras or {}).get("victim_info", {}) or {}
            infos.append(info)
            per_seed[s] = (mine[s].clean_acc_victim, ctrl[s].clean_acc_victim if s in ctrl else None,
                           mine[s].wsr_victim)
    have = [s for s in seeds if s in mine and s in ctrl]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        power = float(value)
    elif strength_field is not None:
        power = _mean([strength(i, strength_field) for i in infos])
    else:
        power = None
    return GateResult(
        label=label, seeds=seeds,
        acc=_mean([mine[s].clean_acc_victim for s in have]),
        acc_control=_mean([ctrl[s].clean_acc_victim for s in have]),
        wsr=(1.0 if have else None) if embedding == "api" else _mean([mine[s].wsr_victim for s in have]),
        wfpr_seen=_mean([i.get("wfpr_seen") for i in infos]),
        wfpr_heldout=_mean([i.get("wfpr_heldout") for i in infos]),
        strength=power, missing=missing, word=isinstance(value, str), api=embedding == "api",
        per_seed=per_seed)


def select(points: list[GateResult]) -> tuple[GateResult, str]:
    """The declared selection rule over a grid's points (module docstring). Returns (pick, why); ``why``
    starts with ⚠ when no point passes the gate. Raises ValueError when no point has complete cards."""
    complete = [p for p in points if p.complete]
    if not complete:
        raise ValueError("no grid point has ok identity cards at every tuning seed (and the control's); run "
                         "`wmbench tune` first")

    def key(p: GateResult) -> tuple[float, int]:  # strongest first; a tie goes to the number over the word
        return (p.strength if p.strength is not None else -math.inf, 0 if p.word else 1)

    passing = [p for p in complete if p.passes]
    if passing:
        return max(passing, key=key), "the strongest point that passes the gate"
    embedded = [p for p in complete if p.passes_wsr]
    if embedded:
        return (min(embedded, key=lambda p: p.cost),
                "⚠ no point passes the gate: the accuracy gate gave way (smallest cost among WSR >= "
                f"{MIN_WSR:.0%})")
    return max(complete, key=lambda p: p.wsr), "⚠ no point passes the gate, none embeds: the highest victim WSR"



# --------------------------------------------------------------------------------- running and reporting


def grid_labels(name: str, grid: Grid, registry) -> list[tuple[object, str]]:
    """(value, spec label) of every point of ``name``'s grid; the registered default's point is ``name``."""
    from bench.spec import expand_specs

    return [(v, expand_specs(f"{name}[{grid.knob}={v}]", registry)[0].label) for v in grid.values]


def tuning_specs(registry) -> str:
    """Every registered defense at its defaults, and every point of every declared grid, as one spec list."""
    parts: list[str] = []
    for name in registry.list("*"):
        cls = registry.get(name)
        parts.append(name)
        if cls.tuning_grid is not None:
            parts += [label for _, label in grid_labels(name, cls.tuning_grid, registry) if label != name]
    return ",".join(parts)


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}%"


def _verdict(r: GateResult) -> str:
    if not r.complete:
        return f"incomplete (no card at seed {', '.join(map(str, r.missing))})" if r.missing else "incomplete"
    if r.passes:
        return "✓ passes"
    fails = [w for w, ok in (("accuracy cost", r.passes_cost), ("WSR", r.passes_wsr)) if not ok]
    return "✗ " + " and ".join(fails)


def _row(r: GateResult, first: str) -> str:
    wsr = f"{_pct(r.wsr)} (API, by construction)" if r.api else _pct(r.wsr)
    # an API scheme's model carries nothing (its own WSR is shown as such); the served answers carry the mark
    per_seed = "; ".join(f"{s}: {_pct(a)} / {f'API (model {_pct(w)})' if r.api else _pct(w)}"
                         for s, (a, _, w) in sorted(r.per_seed.items()))
    return (f"| {first} | {_pct(r.acc)} | {_pct(r.cost, signed=True)} | {wsr} | {_pct(r.wfpr_seen)} / "
            f"{_pct(r.wfpr_heldout)} | {_verdict(r)} | {per_seed} |")


def tuning_report(cards, registry, seeds=TUNING_SEEDS, profile: str = "quick") -> tuple[str, dict]:
    """The tuning study page (Markdown) from the cards, and {scheme: (selected label, why)} for the grids."""
    head = ("| {} | victim acc | cost (points) | victim WSR | false triggering seen / held-out | gate | "
            "per seed: acc / WSR |")
    rule = "|---|---:|---:|---:|---:|---|---|"
    lines = ["# Tuning study: every scheme against the victim-side gate", "",
             f"The protocol is `docs/protocol.md`. Seeds {', '.join(map(str, seeds))} (never shown on the board), "
             f"profile `{profile}`; gate: accuracy cost against `none` <= {100 * MAX_ACC_COST:.1f} points and "
             f"victim WSR >= {MIN_WSR:.0%}, both as the mean over the seeds. Only `identity` cards are read. "
             f"Produced by `wmbench tune --profile {profile} --seeds {','.join(map(str, seeds))}`.", "",
             "## Registered defaults", "", head.format("scheme"), rule]
    for name in registry.list("*"):
        if name == CONTROL:
            continue
        cls = registry.get(name)
        lines.append(_row(gate(cards, name, seeds, embedding=cls.embedding, profile=profile), f"`{name}`"))
    picks: dict = {}
    for name in registry.list("*"):
        cls = registry.get(name)
        grid = cls.tuning_grid
        if grid is None:
            continue
        default = getattr(cls.Config(), grid.knob)
        labelled = grid_labels(name, grid, registry)
        points = [gate(cards, label, seeds, value=v, strength_field=grid.strength, embedding=cls.embedding,
                       profile=profile) for v, label in labelled]
        lines += ["", f"## Grid: `{name}` over `{grid.knob}`", "",
                  f"Declared values: {', '.join(map(str, grid.values))}. Strength of a word value: the mean "
                  f"`{grid.strength}` over every training step, shown beside it.", "",
                  head.format(f"{grid.knob} (strength)").replace("| victim acc", "| card | victim acc"),
                  rule.replace("|---|", "|---|---|", 1)]
        for (v, label), r in zip(labelled, points, strict=True):
            shown = f"{v} ({r.strength:.4f})" if isinstance(v, str) and r.strength is not None else str(v)
            lines.append(_row(r, f"{shown} | `{label}`"))
        try:
            pick, why = select(points)
        except ValueError as exc:
            lines += ["", f"Selection: not yet ({exc})."]
            continue
        value = next(v for (v, label) in labelled if label == pick.label)
        picks[name] = (value, why)
        agree = ("the registered default is this point" if value == default else
                 f"⚠ the registered default is {grid.knob}={default}, not the selection: update it")
        lines += ["", f"Selection ({why}): **{grid.knob}={value}**; {agree}."]
    return "\n".join(lines) + "\n", picks


def run_tuning(settings, seeds=TUNING_SEEDS, **run_options) -> tuple[str, object]:
    """Run the ``identity`` cells of every registered scheme and grid point at ``seeds`` (missing ones only;
    ``run_options`` go to :func:`bench.runner.run`), write the tuning study page beside the reproductions, and
    return (its text, its path)."""
    from pathlib import Path

    from bench.registry import DEFENSES
    from bench.results import load_results
    from bench.runner import run

    run(settings, tuning_specs(DEFENSES), "identity", list(seeds), **run_options)
    cards = load_results(settings.results_dir)
    cards = cards[(cards.dataset == settings.dataset) & (cards.arch == settings.arch)]
    text, _ = tuning_report(cards, DEFENSES, seeds, settings.profile.name)
    out = Path(settings.results_dir) / "reproductions" / "tuning.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text, out

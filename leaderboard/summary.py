"""Summarise the result cards for the pages and figures: a :class:`Group` (a board, a study, or all the cards of
one dataset/arch) with a :class:`CellSummary` per defense x attack pair (its cards over the seeds), a
:class:`DefenseRow` per scheme and an :class:`AttackRow` per attack. :mod:`leaderboard.sections` decides which
cards go into which group and marks the schemes whose registered defaults missed the tuning gate. Nothing here
formats or draws.

Aggregation rules (one *cell* = one defense x attack pair, over the seeds of its group):

* a declared board expects every cell at each of its seeds; any other group expects a cell at the seeds that
  both its scheme and its attack were run with (its scheme's seeds if they share none); an expected seed with
  no card is "not run"; a cell's WSR is the mean over its ``ok`` seeds with a 95% interval
  (:mod:`leaderboard.intervals`);
* a cell is *retained* (✓) when more than half of its ``ok`` seeds are retained, else removed (✗; a tie is not
  a majority), and says how many seeds gave its verdict (:class:`Votes`); a detection cell *survives* when
  more than half of its ``ok`` seeds did not find the watermark (a tie counts as detected: no tie counts in the
  scheme's favour);
* a scheme's robustness = extraction and removal attacks it survives / those with an ``ok`` cell
  (``n/a``, errors and missing cells are left out of the denominator, which is shown);
* accuracy cost = the scheme's victim clean accuracy minus that of ``none``, seed by seed, in points; a seed's
  victim numbers are those most of its cards report (:func:`seed_victims`);
* an attack's cost (wall seconds of the attack alone, oracle queries, training epochs, peak memory) is the
  median and the mean over its ``ok`` cards, every scheme and seed.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from leaderboard.model import (  # noqa: F401 - the pages import these from here
    CONTROL_DEFENSE,
    KIND_ORDER,
    NOT_RUN,
    ROBUSTNESS_KINDS,
    AttackRow,
    CellSummary,
    DefenseRow,
    Group,
    Stat,
    Votes,
    card_verdict,
    flag_found,
)
from leaderboard.victims import (
    device_use,
    main_victim_device,
    per_seed,
    retrained_of,
    seed_victims,
    victim_choice,
    victim_clock,
    victim_devices,
    victim_id,
    victim_seconds,
)


def defense_sort_key(name: str):
    return (name != CONTROL_DEFENSE, name)


def _attack_key(kinds: dict[str, str]):
    def key(name: str):
        kind = kinds[name]
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), name)

    return key


def _clean(v: Any) -> Any:
    """pandas NaN -> None, numpy scalars -> Python."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (dict, list, str)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _records(df) -> list[dict]:
    cards = [{k: _clean(v) for k, v in row.items()} for row in df.to_dict("records")]
    for c in cards:
        c["seed"] = int(c["seed"])
    return cards


def _summarize(df) -> list[Group]:
    cards = _records(df)
    by_group: dict[tuple[str, str], list[dict]] = {}
    for c in cards:
        by_group.setdefault((c["dataset"], c["arch"]), []).append(c)
    return [_group(ds, arch, by_group[(ds, arch)]) for ds, arch in sorted(by_group)]


def _group(dataset: str, arch: str, cards: list[dict], *, defenses: tuple[str, ...] | None = None,
           columns: list[tuple[str, str]] | None = None, seeds: tuple[int, ...] | None = None,
           has_watermark: dict[str, bool] | None = None, profiles: tuple[str, ...] | None = None,
           reference: list[dict] | None = None) -> Group:
    """One group of cards. Without the keywords its rows, columns and seeds are those the cards have; a declared
    board passes its own (``columns`` as (label, kind)), and then every cell is expected at every seed.
    ``reference``: every card of the results (the group's are a part), from which the victim standing for each
    seed is chosen (:func:`victim_choice`)."""
    cards = sorted(cards, key=lambda c: (c["defense"], c["attack"], c["seed"]))
    kinds: dict[str, str] = dict(columns or [])
    has_wm: dict[str, bool] = dict(has_watermark or {})
    for c in cards:
        kinds.setdefault(c["attack"], c["attack_kind"])
        has_wm[c["defense"]] = has_wm.get(c["defense"], False) or bool(c["has_watermark"])
    defenses = defenses or tuple(sorted(has_wm, key=defense_sort_key))
    attacks = tuple(sorted(kinds, key=_attack_key(kinds)))
    declared = seeds
    seeds = declared or tuple(sorted({c["seed"] for c in cards}))
    profiles = profiles or tuple(sorted({c["profile"] for c in cards}))
    row_seeds = {d: {c["seed"] for c in cards if c["defense"] == d} for d in defenses}
    col_seeds = {a: {c["seed"] for c in cards if c["attack"] == a} for a in attacks}

    def expected(d: str, a: str) -> tuple[int, ...]:
        """The seeds a cell is expected at: a board's seeds; else those its scheme and its attack both were run
        with (a sweep run at one seed is not 'missing' two seeds because the central ablation used three)."""
        if declared:
            return declared
        return tuple(sorted(row_seeds[d] & col_seeds[a] or row_seeds[d]))

    cells = {
        (d, a): CellSummary(d, a, kinds[a], expected(d, a),
                            [c for c in cards if c["defense"] == d and c["attack"] == a])
        for d in defenses
        for a in attacks
    }
    g = Group(dataset, arch, seeds, profiles, defenses, attacks, kinds, has_wm, cells, [], [], len(cards))
    every = reference if reference is not None else cards
    choice = victim_choice(every)
    trained_on = victim_devices(every)
    victims = {d: seed_victims(cards, d, choice) for d in defenses}
    g.victims = {d: {seed: rep for seed, (rep, _) in v.items()} for d, v in victims.items()}
    g.retrained = {(d, seed): retrained_of(rep, odd) for d in defenses for seed, (rep, odd) in victims[d].items()
                   if odd}
    g.device_cards, g.devices = device_use(cards)
    g.victim_device = {(d, seed): trained_on[victim_id(rep)]
                       for d in defenses for seed, (rep, _) in victims[d].items()}
    g.main_device = main_victim_device(choice, trained_on)
    g.defense_rows = [_defense_row(g, d, cards, victims) for d in defenses]
    g.attack_rows = [_attack_row(g, a) for a in attacks]
    return g


def _defense_row(g: Group, d: str, cards: list[dict], victims: dict[str, dict]) -> DefenseRow:
    acc = per_seed(victims[d], "clean_acc_victim")
    cost = None
    if d != CONTROL_DEFENSE and CONTROL_DEFENSE in victims:
        base = per_seed(victims[CONTROL_DEFENSE], "clean_acc_victim")
        cost = Stat.of(100.0 * (acc[s] - base[s]) for s in sorted(acc) if s in base)
    thresholds = [c["threshold"] for c in cards if c["defense"] == d and c["threshold"] is not None]
    identity = [a for a in g.attacks if g.kinds[a] == "control"]
    null = None
    for a in identity:
        null = g.cells[(d, a)].stat("wsr_null")
        if null is not None:
            break
    def trained_on(name: str) -> dict[int, str]:
        return {seed: dev for (scheme, seed), dev in g.victim_device.items() if scheme == name}

    clock = victim_clock(victims[d], victims.get(CONTROL_DEFENSE, {}))
    embed = victim_seconds(victims[d], trained_on(d), g.main_device, clock)
    base_embed = victim_seconds(victims.get(CONTROL_DEFENSE, {}), trained_on(CONTROL_DEFENSE), g.main_device,
                                 clock)
    row = DefenseRow(
        name=d,
        has_watermark=g.has_watermark[d],
        victim_acc=Stat.of(acc.values()),
        acc_cost=cost,
        victim_wsr=Stat.of(per_seed(victims[d], "wsr_victim").values()),
        null_wsr=null,
        threshold=(min(thresholds), max(thresholds)) if thresholds else None,
        embed_s=Stat.of(embed.values()),
        embed_ratio=Stat.of(embed[s] / base_embed[s] for s in sorted(embed) if base_embed.get(s)),
        embed_clock=clock,
    )
    if not row.has_watermark:
        return row
    for kind in ROBUSTNESS_KINDS:
        judged = [
            g.cells[(d, a)]
            for a in g.attacks
            if g.kinds[a] == kind and g.cells[(d, a)].status == "ok" and g.cells[(d, a)].survived is not None
        ]
        row.total += len(judged)
        row.survived += sum(1 for c in judged if c.survived)
        row.worst[kind] = min(judged, key=_worst_key) if judged else None
    det = [
        g.cells[(d, a)]
        for a in g.attacks
        if g.kinds[a] == "detection"
        and g.cells[(d, a)].status == "ok"
        and g.cells[(d, a)].survived is not None
    ]
    row.det_total = len(det)
    row.det_undetected = sum(1 for c in det if c.survived)
    row.detected_by = tuple(c.attack for c in det if not c.survived)
    return row


def _worst_key(cell: CellSummary):
    """Removed before retained, then the lowest mean WSR, then by name."""
    wsr = cell.stat("wsr_suspect")
    return (bool(cell.survived), wsr.mean if wsr else math.inf, cell.attack)


def _cheaply(cell: CellSummary) -> bool | None:
    """Removed cheaply: the cell is removed (✗) and at least half of its ok seeds say removed cheaply (a tie
    counts against the scheme, as everywhere); None without a verdict or outside extraction and removal."""
    if cell.survived is None or cell.kind not in ROBUSTNESS_KINDS:
        return None
    votes = [bool(c["removed_cheaply"]) for c in cell.ok if c["removed_cheaply"] is not None]
    return cell.survived is False and bool(votes) and 2 * sum(votes) >= len(votes)


def _attack_row(g: Group, a: str) -> AttackRow:
    cells = [g.cells[(d, a)] for d in g.defenses]
    counts = Counter()
    for c in cells:
        counts.update(card["status"] for card in c.cards)
        counts[NOT_RUN] += len(c.missing_seeds)
    wm_ok = [c for c in cells if g.has_watermark[c.defense] and c.status == "ok"]
    cheap = [_cheaply(c) for c in wm_ok]
    cheap = [v for v in cheap if v is not None]
    det = [c.found() for c in wm_ok]
    det = [v for v in det if v is not None]
    ok_cards = [card for c in cells for card in c.ok]
    return AttackRow(
        name=a,
        kind=g.kinds[a],
        counts={s: counts.get(s, 0) for s in ("ok", "error", "n/a", NOT_RUN)},
        removed_cheaply=(sum(cheap), len(cheap)),
        detected=(sum(det), len(det)),
        suspect_acc=Stat.of(card["clean_acc_suspect"] for card in ok_cards),
        fidelity=Stat.of(card["fidelity"] for card in ok_cards),
        queries=Stat.of(card["queries"] for card in ok_cards),
        wall_s=Stat.of(card["wall_s"] for card in ok_cards),
        epochs=Stat.of(card["epochs"] for card in ok_cards),
        peak_mem_mb=Stat.of(card["peak_mem_mb"] for card in ok_cards),
        cpu_s=Stat.of(card["cpu_s"] for card in ok_cards)
        if all(card.get("cpu_s") is not None for card in ok_cards) else None,
    )

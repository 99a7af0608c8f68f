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
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KIND_ORDER = ("control", "extraction", "removal", "detection")
CONTROL_DEFENSE = "none"
NOT_RUN = "not run"
ROBUSTNESS_KINDS = ("extraction", "removal")


@dataclass(frozen=True)
class Stat:
    """Mean, sample sd (None for one value), count and median of some finite numbers."""

    mean: float
    sd: float | None
    n: int
    median: float | None = None

    @classmethod
    def of(cls, values) -> Stat | None:
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        mean = math.fsum(vals) / len(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else None
        return cls(mean, sd, len(vals), statistics.median(vals))


def flag_found(card: dict) -> bool:
    """A detection card flagged the model *and* named the watermark (the scorer's ``detection_correct``; a card
    without that judgement counts a flag as found)."""
    return bool(card["detected"]) and (card.get("extras") or {}).get("detection_correct", True) is not False


def card_verdict(card: dict) -> str:
    """One card's verdict in words, the one spelling every page and the CSV use: its status when not ``ok``;
    ``retained``, ``removed`` or ``removed cheaply``; ``undetected``, ``detected`` or ``wrong class flagged``;
    empty when the card judges nothing (the control's ``none`` row, a detector that gave no answer)."""
    if card["status"] != "ok":
        return card["status"]
    if card["attack_kind"] == "detection":
        if card["detected"] is None:
            return ""
        if not card["detected"]:
            return "undetected"
        return "detected" if flag_found(card) else "wrong class flagged"
    if card["retained"] is None:
        return ""
    if card["retained"]:
        return "retained"
    return "removed cheaply" if card["removed_cheaply"] else "removed"


def _majority(votes) -> bool | None:
    """True when more than half of the votes are True; None when there is no vote. A tie is not a majority:
    ownership that half the seeds cannot prove is not provable (the conservative reading for an owner)."""
    vals = list(votes)
    return sum(vals) * 2 > len(vals) if vals else None


@dataclass(frozen=True)
class Votes:
    """The seeds behind a majority verdict: ``agree`` of ``n`` ok seeds gave the cell's verdict ``survived``;
    ``tie`` when exactly half did each (the verdict is then the one against the scheme, :func:`_majority`)."""

    agree: int
    n: int
    survived: bool
    tie: bool = False


@dataclass
class CellSummary:
    """One defense x attack pair of a dataset/arch group, over the group's seeds."""

    defense: str
    attack: str
    kind: str
    seeds: tuple[int, ...]
    cards: list[dict]  # sorted by seed

    def with_status(self, status: str) -> list[dict]:
        return [c for c in self.cards if c["status"] == status]

    @property
    def ok(self) -> list[dict]:
        return self.with_status("ok")

    @property
    def missing_seeds(self) -> tuple[int, ...]:
        have = {c["seed"] for c in self.cards}
        return tuple(s for s in self.seeds if s not in have)

    @property
    def status(self) -> str:
        """ok if any seed is ok; else error if any failed; else n/a if any is n/a; else not run."""
        for status in ("ok", "error", "n/a"):
            if self.with_status(status):
                return status
        return NOT_RUN

    @property
    def complete(self) -> bool:
        return len(self.ok) == len(self.seeds)

    def stat(self, name: str) -> Stat | None:
        return Stat.of(c[name] for c in self.ok)

    def majority(self, name: str) -> bool | None:
        """True when more than half of the ok seeds that report ``name`` say True."""
        return _majority(bool(c[name]) for c in self.ok if c[name] is not None)

    def found(self) -> bool | None:
        """Detection: True unless more than half of the ok seeds did not find the watermark (flagged the model
        *and* named it, :func:`flag_found`): a tie counts as found, as a tie counts as removed elsewhere, so no
        tie ever counts in the scheme's favour."""
        unfound = _majority(not flag_found(c) for c in self.ok if c["detected"] is not None)
        return None if unfound is None else not unfound

    def interval(self):
        """The 95% interval of the mean suspect WSR (:func:`leaderboard.intervals.wsr_interval`)."""
        from leaderboard.intervals import wsr_interval

        return wsr_interval(self.ok)

    def votes(self) -> Votes | None:
        """How many ok seeds agree with the cell's verdict (:attr:`survived`), or None without a verdict."""
        survived = self.survived
        if survived is None:
            return None
        if self.kind == "detection":
            each = [not flag_found(c) for c in self.ok if c["detected"] is not None]
        else:
            each = [bool(c["retained"]) for c in self.ok if c["retained"] is not None]
        agree = sum(1 for v in each if v == survived)
        return Votes(agree, len(each), survived, tie=2 * agree == len(each))

    @property
    def survived(self) -> bool | None:
        """Ownership still provable (removal/extraction/control) or not found by the detector (detection)."""
        if self.kind == "detection":
            found = self.found()
            return None if found is None else not found
        return self.majority("retained")


@dataclass
class DefenseRow:
    name: str
    has_watermark: bool
    victim_acc: Stat | None
    acc_cost: Stat | None  # in points; None for the control itself or without a `none` baseline
    victim_wsr: Stat | None
    null_wsr: Stat | None  # the identity (control attack) cell's null WSR
    threshold: tuple[float, float] | None  # (min, max) over cards
    embed_s: Stat | None = None  # seconds of the victim's training (the embedding), per seed, on embed_clock
    embed_ratio: Stat | None = None  # that, divided by the clean control's on the same seed
    embed_clock: str = "wall"  # "cpu" when the cards of the row's and the control's victims all record CPU time
    survived: int = 0
    total: int = 0  # extraction + removal attacks with an ok cell and a verdict
    worst: dict[str, CellSummary | None] = field(default_factory=dict)  # per kind in ROBUSTNESS_KINDS
    det_undetected: int = 0
    det_total: int = 0
    detected_by: tuple[str, ...] = ()

    @property
    def robustness(self) -> float | None:
        return self.survived / self.total if self.total else None


@dataclass
class AttackRow:
    name: str
    kind: str
    counts: dict[str, int]  # ok / error / n/a / not run over the cell x seed grid
    removed_cheaply: tuple[int, int]  # (schemes removed cheaply, watermarked schemes with a verdict)
    detected: tuple[int, int]  # (schemes detected, watermarked schemes with a verdict)
    suspect_acc: Stat | None
    fidelity: Stat | None
    # cost, over the attack's ok cards (every scheme and seed)
    queries: Stat | None
    wall_s: Stat | None
    epochs: Stat | None = None
    peak_mem_mb: Stat | None = None
    cpu_s: Stat | None = None  # only when every ok card records its CPU seconds (cards before them record none)


@dataclass(frozen=True)
class Retrained:
    """The cards of one scheme and seed scored against a retrained victim whose numbers differ from the victim
    standing for the seed (:func:`seed_victims`): how many, and the largest differences (fractions)."""

    cards: int
    acc_gap: float | None
    wsr_gap: float | None


@dataclass
class Group:
    dataset: str
    arch: str
    seeds: tuple[int, ...]
    profiles: tuple[str, ...]
    defenses: tuple[str, ...]
    attacks: tuple[str, ...]
    kinds: dict[str, str]
    has_watermark: dict[str, bool]
    cells: dict[tuple[str, str], CellSummary]
    defense_rows: list[DefenseRow]
    attack_rows: list[AttackRow]
    n_cards: int
    gate: dict[str, str] = field(default_factory=dict)  # scheme -> why it did not meet the tuning gate
    board: str | None = None  # the declared board this group shows (bench/boards.py), if it is one
    heatmap: str = "figures/wsr_heatmap.png"  # where a board's heatmap goes (leaderboard.sections names it)
    # (scheme, seed) -> its cards scored against a victim whose numbers differ from the seed's (seed_victims)
    retrained: dict[tuple[str, int], Retrained] = field(default_factory=dict)
    # scheme -> seed -> the card standing for that seed's victim (seed_victims)
    victims: dict[str, dict[int, dict]] = field(default_factory=dict)
    # device recorded on the cards -> seed -> the schemes with a card made there (device_use), most cards first
    devices: dict[str, dict[int, tuple[str, ...]]] = field(default_factory=dict)
    device_cards: dict[str, int] = field(default_factory=dict)  # device -> how many of the group's cards
    # (scheme, seed) -> where the victim standing for it was trained (victim_devices), and the device most of
    # the results' victims were trained on when they were trained on more than one (else None)
    victim_device: dict[tuple[str, int], str] = field(default_factory=dict)
    main_device: str | None = None

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.arch}"

    @property
    def not_run(self) -> int:
        return sum(len(c.missing_seeds) for c in self.cells.values())

    def ok_seeds(self, defense: str) -> set[int]:
        """The seeds at which ``defense`` has an ok card in some column of the group."""
        return {card["seed"] for cell in self.cells.values() if cell.defense == defense for card in cell.ok}


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
    g.retrained = {(d, seed): _retrained(rep, odd) for d in defenses for seed, (rep, odd) in victims[d].items()
                   if odd}
    g.device_cards, g.devices = device_use(cards)
    g.victim_device = {(d, seed): trained_on[_victim_id(rep)]
                       for d in defenses for seed, (rep, _) in victims[d].items()}
    g.main_device = main_victim_device(choice, trained_on)
    g.defense_rows = [_defense_row(g, d, cards, victims) for d in defenses]
    g.attack_rows = [_attack_row(g, a) for a in attacks]
    return g


def device_use(cards: list[dict]) -> tuple[dict[str, int], dict[str, dict[int, tuple[str, ...]]]]:
    """How many of ``cards`` each recorded device made (most first; a card without one counts as
    ``unrecorded``), and per device, per seed, the schemes with a card made there."""
    counts = Counter(c.get("device") or "unrecorded" for c in cards)
    order = sorted(counts, key=lambda dev: (-counts[dev], dev))
    where: dict[str, dict[int, set[str]]] = {}
    for c in cards:
        where.setdefault(c.get("device") or "unrecorded", {}).setdefault(c["seed"], set()).add(c["defense"])
    return ({dev: counts[dev] for dev in order},
            {dev: {seed: tuple(sorted(where[dev][seed])) for seed in sorted(where[dev])} for dev in order})


def _victim_signature(card: dict) -> tuple:
    return (card["clean_acc_victim"], card["wsr_victim"])


def _victim_key(card: dict) -> tuple:
    return (card["dataset"], card["arch"], card["profile"], card["defense"], card["seed"])


def victim_choice(cards: list[dict]) -> dict[tuple, dict]:
    """For each (dataset, arch, profile, scheme, seed), the card standing for its victim: the earliest card
    with the victim numbers (accuracy, WSR) most of its cards report. Every card of a seed is normally scored
    against one victim; a card whose victim was retrained (the cached model was gone) can differ from the rest
    by numerics (thread count, device). Chosen once over all the cards, so a page showing some of them stands
    on the same victim as the board."""
    by_key: dict[tuple, list[dict]] = {}
    for c in cards:
        if c["clean_acc_victim"] is not None:
            by_key.setdefault(_victim_key(c), []).append(c)
    out = {}
    for key, group in by_key.items():
        group = sorted(group, key=_written)
        counts = Counter(_victim_signature(c) for c in group)
        top = max(counts.values())
        out[key] = next(c for c in group if counts[_victim_signature(c)] == top)
    return out


def seed_victims(cards: list[dict], defense: str, choice: dict[tuple, dict]) -> dict[int, tuple[dict, list[dict]]]:
    """Per seed of ``defense`` in ``cards``, (the card standing for the seed's victim in ``choice``, the
    :func:`victim_choice` over every card, ``cards`` among them; those of ``cards`` whose victim numbers differ
    from it), so a scheme's accuracy cost, victim WSR and embedding time do not depend on which cards a page
    shows."""
    by_seed: dict[int, list[dict]] = {}
    for c in cards:
        if c["defense"] == defense and c["clean_acc_victim"] is not None:
            by_seed.setdefault(c["seed"], []).append(c)
    out = {}
    for seed, group in sorted(by_seed.items()):
        rep = choice[_victim_key(group[0])]
        out[seed] = (rep, [c for c in group if _victim_signature(c) != _victim_signature(rep)])
    return out


def _retrained(rep: dict, odd: list[dict]) -> Retrained:
    def gap(name: str) -> float | None:
        diffs = [abs(c[name] - rep[name]) for c in odd if c[name] is not None and rep[name] is not None]
        return max(diffs) if diffs else None

    return Retrained(len(odd), gap("clean_acc_victim"), gap("wsr_victim"))


def _per_seed(victims: dict[int, tuple[dict, list[dict]]], name: str) -> dict[int, float]:
    """Per seed, a victim-level field of the card standing for the seed's victim (:func:`seed_victims`)."""
    return {s: float(c[name]) for s, (c, _) in victims.items() if c[name] is not None}


def _written(card: dict) -> tuple:
    """The order cards were written in (ties by column), which finds the earliest card scored against a victim."""
    return (card.get("created_utc") or "", card["attack"])


def _victim_id(card: dict) -> tuple:
    """One victim: its scheme, seed and setting, and the numbers it was scored with (a retrained one differs)."""
    return (_victim_key(card), _victim_signature(card))


def victim_devices(cards: list[dict]) -> dict[tuple, str]:
    """Where each victim among ``cards`` was trained (by :func:`_victim_id`): the ``extras.victim_device`` any
    card scored against it records; where none does (cards written before it was recorded), the device of the
    earliest such card, which is the run that trained it unless that run wrote no card for it."""
    recorded: dict[tuple, Counter] = {}
    first: dict[tuple, dict] = {}
    for c in cards:
        if c["clean_acc_victim"] is None:
            continue
        vid = _victim_id(c)
        dev = (c.get("extras") or {}).get("victim_device")
        if dev:
            recorded.setdefault(vid, Counter())[dev] += 1
        if vid not in first or _written(c) < _written(first[vid]):
            first[vid] = c
    return {vid: (recorded[vid].most_common(1)[0][0] if vid in recorded else first[vid].get("device") or
                  "unrecorded") for vid in first}


def main_victim_device(choice: dict[tuple, dict], trained_on: dict[tuple, str]) -> str | None:
    """The device most of the victims in ``choice`` were trained on, or None when all were trained on one."""
    counts = Counter(trained_on[_victim_id(rep)] for rep in choice.values())
    if len(counts) < 2:
        return None
    return min(counts, key=lambda dev: (-counts[dev], dev))


def _victim_clock(*victims: dict[int, tuple[dict, list[dict]]]) -> str:
    """``cpu`` when the card standing for every victim of ``victims`` records the victim's CPU seconds, else
    ``wall`` (cards made before CPU time was recorded): one clock for a ratio, never a mix."""
    cards = [c for group in victims for c, _ in group.values()]
    return "cpu" if cards and all((c.get("extras") or {}).get("victim_cpu_s") is not None for c in cards) else "wall"


def _victim_seconds(victims: dict[int, tuple[dict, list[dict]]], trained_on: dict[int, str],
                    device: str | None, clock: str = "wall") -> dict[int, float]:
    """Per seed, the victim's training seconds on ``clock`` (``extras.victim_cpu_s`` or ``victim_wall_s``) of
    the card standing for it, for the victims trained on ``device`` only (seconds from two devices do not
    compare; None: any)."""
    out: dict[int, float] = {}
    for s, (c, _) in victims.items():
        wall = (c.get("extras") or {}).get(f"victim_{clock}_s")
        if wall is not None and device in (None, trained_on.get(s)):
            out[s] = float(wall)
    return out


def _defense_row(g: Group, d: str, cards: list[dict], victims: dict[str, dict]) -> DefenseRow:
    acc = _per_seed(victims[d], "clean_acc_victim")
    cost = None
    if d != CONTROL_DEFENSE and CONTROL_DEFENSE in victims:
        base = _per_seed(victims[CONTROL_DEFENSE], "clean_acc_victim")
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

    clock = _victim_clock(victims[d], victims.get(CONTROL_DEFENSE, {}))
    embed = _victim_seconds(victims[d], trained_on(d), g.main_device, clock)
    base_embed = _victim_seconds(victims.get(CONTROL_DEFENSE, {}), trained_on(CONTROL_DEFENSE), g.main_device,
                                 clock)
    row = DefenseRow(
        name=d,
        has_watermark=g.has_watermark[d],
        victim_acc=Stat.of(acc.values()),
        acc_cost=cost,
        victim_wsr=Stat.of(_per_seed(victims[d], "wsr_victim").values()),
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

"""The typed pieces the pages are made of: :class:`Stat` (a mean with its spread), :class:`Votes`, one
:class:`CellSummary` per defense x attack pair, :class:`DefenseRow`, :class:`AttackRow`, :class:`Group`, and the
verdict of one card (:func:`card_verdict`). :mod:`leaderboard.summary` builds them from the cards (its module
docstring gives the aggregation rules); nothing here reads cards from disk, formats or draws.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from leaderboard.victims import Retrained

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

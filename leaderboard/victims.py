"""The victim standing for each scheme and seed of a group, read from its cards: which card's victim numbers
stand for the seed (:func:`victim_choice`, :func:`seed_victims`), the cards scored against a retrained victim
(:class:`Retrained`), where each victim was trained (:func:`victim_devices`) and how long it took
(:func:`victim_seconds`, on one clock: :func:`victim_clock`). Used by :mod:`leaderboard.summary`; imports
nothing of the leaderboard.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Retrained:
    """The cards of one scheme and seed scored against a retrained victim whose numbers differ from the victim
    standing for the seed (:func:`seed_victims`): how many, and the largest differences (fractions)."""

    cards: int
    acc_gap: float | None
    wsr_gap: float | None


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


def retrained_of(rep: dict, odd: list[dict]) -> Retrained:
    def gap(name: str) -> float | None:
        diffs = [abs(c[name] - rep[name]) for c in odd if c[name] is not None and rep[name] is not None]
        return max(diffs) if diffs else None

    return Retrained(len(odd), gap("clean_acc_victim"), gap("wsr_victim"))


def per_seed(victims: dict[int, tuple[dict, list[dict]]], name: str) -> dict[int, float]:
    """Per seed, a victim-level field of the card standing for the seed's victim (:func:`seed_victims`)."""
    return {s: float(c[name]) for s, (c, _) in victims.items() if c[name] is not None}


def _written(card: dict) -> tuple:
    """The order cards were written in (ties by column), which finds the earliest card scored against a victim."""
    return (card.get("created_utc") or "", card["attack"])


def victim_id(card: dict) -> tuple:
    """One victim: its scheme, seed and setting, and the numbers it was scored with (a retrained one differs)."""
    return (_victim_key(card), _victim_signature(card))


def victim_devices(cards: list[dict]) -> dict[tuple, str]:
    """Where each victim among ``cards`` was trained (by :func:`victim_id`): the ``extras.victim_device`` any
    card scored against it records; where none does (cards written before it was recorded), the device of the
    earliest such card, which is the run that trained it unless that run wrote no card for it."""
    recorded: dict[tuple, Counter] = {}
    first: dict[tuple, dict] = {}
    for c in cards:
        if c["clean_acc_victim"] is None:
            continue
        vid = victim_id(c)
        dev = (c.get("extras") or {}).get("victim_device")
        if dev:
            recorded.setdefault(vid, Counter())[dev] += 1
        if vid not in first or _written(c) < _written(first[vid]):
            first[vid] = c
    return {vid: (recorded[vid].most_common(1)[0][0] if vid in recorded else first[vid].get("device") or
                  "unrecorded") for vid in first}


def main_victim_device(choice: dict[tuple, dict], trained_on: dict[tuple, str]) -> str | None:
    """The device most of the victims in ``choice`` were trained on, or None when all were trained on one."""
    counts = Counter(trained_on[victim_id(rep)] for rep in choice.values())
    if len(counts) < 2:
        return None
    return min(counts, key=lambda dev: (-counts[dev], dev))


def victim_clock(*victims: dict[int, tuple[dict, list[dict]]]) -> str:
    """``cpu`` when the card standing for every victim of ``victims`` records the victim's CPU seconds, else
    ``wall`` (cards made before CPU time was recorded): one clock for a ratio, never a mix."""
    cards = [c for group in victims for c, _ in group.values()]
    return "cpu" if cards and all((c.get("extras") or {}).get("victim_cpu_s") is not None for c in cards) else "wall"


def victim_seconds(victims: dict[int, tuple[dict, list[dict]]], trained_on: dict[int, str],
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

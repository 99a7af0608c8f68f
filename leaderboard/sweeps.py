"""The studies drawn beside the tables: the sweeps among the attack columns (:func:`find_sweeps`,
:class:`Sweep`), the sweeps among the schemes' own settings (:func:`find_scheme_sweeps`,
:class:`SchemeSweep`) and the points of the attack-cost-versus-WSR figure (:func:`cost_points`,
:class:`CostPoint`).

A *sweep* is a set of at least two attack columns of one dataset/arch group and one attack kind whose
``attack_config`` differ in exactly one numeric field (booleans are not numbers), and whose labels differ only
in that field's ``field=`` item (``prune`` and ``prune[rate=0.1]`` when the plain column's config has its
default rate). A *query sweep* sweeps ``queries``, where None = the whole attacker pool
(``profile_config["attacker_pool"]``), on a log axis; any other field is drawn on a linear axis, its None
values are left out, and chain columns (``a>b``, whose configs are per step) are left out too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from leaderboard.summary import CellSummary, Group, Stat

QUERIES_FIELD = "queries"
# readable axis names of swept attack_config fields; any other field is shown by its own name
SWEEP_AXIS = {
    QUERIES_FIELD: "queries",
    "rate": "pruning rate",
    "finetune_epochs": "fine-tuning epochs",
    "epochs": "epochs",
    "temperature": "temperature",
    "data_frac": "share of the attacker's data",
    "sigma": "input noise sigma",
}


@dataclass
class Sweep:
    """Attack columns of one group and kind whose configs differ only in one numeric ``field``: ``points`` is
    (the field's value, attack label) sorted by value; ``family`` is the label with its ``field=`` item
    removed."""

    group: Group
    family: str
    kind: str
    points: list[tuple[float, str]]
    whole: str | None = None  # queries only: the label whose budget is None (the whole attacker pool)
    field: str = QUERIES_FIELD

    def cell(self, defense: str, attack: str) -> CellSummary:
        return self.group.cells[(defense, attack)]

    @property
    def axis(self) -> str:
        """The field's readable name (``pruning rate``), else the field's own name."""
        return sweep_axis(self.field)


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # also what keeps wsr_vs_<field>.png a plain file name


def sweep_axis(field: str) -> str:
    return SWEEP_AXIS.get(field, field)


def sweep_fields(sweeps: list[Sweep]) -> list[str]:
    """The swept fields, queries first, then by name (the order of the figures and sections)."""
    return sorted({s.field for s in sweeps}, key=lambda f: (f != QUERIES_FIELD, f))


def family_label(label: str, field: str = QUERIES_FIELD) -> str:
    """``soft_label[output=label;queries=1000]`` -> ``soft_label[output=label]``; ``x[queries=5]`` -> ``x``;
    ``prune[rate=0.1]`` -> ``prune`` for ``field="rate"``."""
    item = re.compile(rf"(?<=[\[;]){re.escape(field)}=[^;\]>]*;?")
    return item.sub("", label).replace(";]", "]").replace("[]", "")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _swept_values(label: str, card: dict):
    """(field, value on the axis, whether it is the whole attacker pool) for each field of the card's
    attack_config that can be swept."""
    config = card["attack_config"] or {}
    for name, value in sorted(config.items()):
        if name == QUERIES_FIELD:
            if value is None:
                pool = (card["profile_config"] or {}).get("attacker_pool")
                if _is_number(pool):  # else "the whole pool" of an unknown size: no place on the axis
                    yield name, int(pool), True
            elif _is_number(value):
                yield name, int(value), False
        elif ">" not in label and _FIELD_NAME.match(name) and _is_number(value):
            yield name, value, False


def find_sweeps(groups: list[Group]) -> list[Sweep]:
    """Every sweep of every group (at least two distinct values of one field), in a stable order: query
    sweeps first, then by field name; within a field, by group, family, kind and the other fields."""
    sweeps = []
    for g in groups:
        families: dict[tuple[str, str, str, str], dict[float, str]] = {}
        wholes: dict[tuple[str, str, str, str], str] = {}
        for a in g.attacks:
            cards = [c for d in g.defenses for c in g.cells[(d, a)].cards]
            card = next((c for c in cards if c["attack_config"]), None)
            if card is None:
                continue
            for name, value, whole in _swept_values(a, card):
                rest = {k: v for k, v in card["attack_config"].items() if k != name}
                key = (name, family_label(a, name), g.kinds[a], json.dumps(rest, sort_keys=True, default=str))
                if families.setdefault(key, {}).setdefault(value, a) == a and whole:
                    wholes[key] = a
        for key in sorted(families, key=lambda k: (k[0] != QUERIES_FIELD, k)):
            points = sorted(families[key].items())
            if len(points) >= 2:
                sweeps.append(Sweep(g, key[1], key[2], points, wholes.get(key), key[0]))
    return sorted(sweeps, key=lambda s: (s.field != QUERIES_FIELD, s.field))  # stable: group order kept


# readable names of swept defense_config fields; any other field is shown by its own name
SCHEME_AXIS = {
    "kl_weight": "combination-loss weight (kl_weight)",
    "com_extra": "extra KL weight of the public code (com_extra)",
    "aux_weight": "auxiliary-loss weight (aux_weight)",
    "patch_frac": "patch side (share of the image side)",
    "epochs": "victim training epochs",
    "anchor_batch": "anchor watermarks per batch (anchor_batch)",
}


@dataclass
class SchemeSweep:
    """Schemes (rows) of one group whose ``defense_config`` differ only in one numeric ``field``: ``points`` is
    (the field's value, scheme label) sorted by value; ``family`` is the label with its ``field=`` item removed;
    ``seeds`` are the seeds every point has ok cards at (what :meth:`cards` compares on; all of a point's seeds
    when the points share none)."""

    group: Group
    family: str
    field: str
    points: list[tuple[float, str]]
    seeds: tuple[int, ...] = ()

    @property
    def axis(self) -> str:
        return SCHEME_AXIS.get(self.field, self.field)

    def cell(self, defense: str, attack: str) -> CellSummary:
        """The group's cell of ``defense`` and ``attack`` restricted to the sweep's common seeds."""
        cell = self.group.cells[(defense, attack)]
        if not self.seeds:
            return cell
        return CellSummary(defense, attack, cell.kind, tuple(s for s in cell.seeds if s in self.seeds),
                           [c for c in cell.cards if c["seed"] in self.seeds])

    def victim(self, defense: str, name: str) -> Stat | None:
        """A victim-level field (``clean_acc_victim``, ``wsr_victim``) over the common seeds, one value per seed:
        the group's victim for that seed (:func:`leaderboard.victims.seed_victims`)."""
        reps = self.group.victims.get(defense, {})
        return Stat.of(rep[name] for seed, rep in sorted(reps.items()) if not self.seeds or seed in self.seeds)

    def columns(self, detection: bool = False) -> list[str]:
        """The group's columns with an ok card at some point of the sweep: those that leave a suspect model,
        plus the detection columns when ``detection`` (never the control)."""
        skip = ("control",) if detection else ("control", "detection")
        return [a for a in self.group.attacks if self.group.kinds[a] not in skip
                and any(self.cell(d, a).ok for _, d in self.points)]


def find_scheme_sweeps(groups: list[Group]) -> list[SchemeSweep]:
    """Every scheme sweep of every group (watermarked schemes at two or more values of one numeric
    ``defense_config`` field, all else equal), by group, field and family."""
    sweeps = []
    for g in groups:
        families: dict[tuple[str, str, str], dict[float, str]] = {}
        for d in g.defenses:
            card = next((c for cell in g.cells.values() if cell.defense == d for c in cell.ok
                         if c["defense_config"]), None)
            if card is None or not g.has_watermark[d]:
                continue
            config = card["defense_config"]
            profile = card["profile_config"] or {}
            for name, value in sorted(config.items()):
                if value is None and _is_number(profile.get(name)):
                    value = profile[name]  # None = the profile's setting (``epochs``): the default point
                if not (_FIELD_NAME.match(name) and _is_number(value)):
                    continue
                rest = json.dumps({"profile": card["profile"], **{k: v for k, v in config.items() if k != name}},
                                  sort_keys=True, default=str)
                families.setdefault((name, family_label(d, name), rest), {}).setdefault(value, d)
        for (name, family, _rest), by_value in sorted(families.items()):
            if len(by_value) < 2:
                continue
            points = sorted(by_value.items())
            common = set.intersection(*(g.ok_seeds(d) for _, d in points))
            sweeps.append(SchemeSweep(g, family, name, points, tuple(sorted(common))))
    return sweeps


@dataclass(frozen=True)
class CostPoint:
    """One watermarked scheme under one attack that leaves a suspect model: the attack's mean seconds (CPU
    seconds where every card of its group records them, else wall seconds: :func:`cost_clock`; the field keeps
    its old name) and the suspect's mean WSR over the cell's ok seeds that report both."""

    defense: str
    attack: str
    kind: str
    wall_s: float
    wsr: float
    survived: bool | None
    thresholds: tuple[float, ...]


def cost_clock(g: Group) -> str:
    """``cpu`` when every ok card of the group records its CPU seconds, else ``wall`` (cards made before CPU
    time was recorded): one clock for the whole figure, never a mix."""
    cards = [c for cell in g.cells.values() for c in cell.ok]
    return "cpu" if cards and all(c.get("cpu_s") is not None for c in cards) else "wall"


def cost_points(g: Group) -> list[CostPoint]:
    """The points of the cost-versus-WSR figure for one group, in table order (detection attacks, which
    leave no suspect model, and schemes without a watermark have none), timed by :func:`cost_clock`."""
    field = "cpu_s" if cost_clock(g) == "cpu" else "wall_s"
    points = []
    for d in g.defenses:
        if not g.has_watermark[d]:
            continue
        for a in g.attacks:
            cell = g.cells[(d, a)]
            if cell.kind == "detection" or cell.status != "ok":
                continue
            cards = [c for c in cell.ok if c[field] is not None and c["wsr_suspect"] is not None]
            if not cards:
                continue
            wall = Stat.of(c[field] for c in cards)
            wsr = Stat.of(c["wsr_suspect"] for c in cards)
            thresholds = tuple(sorted({c["threshold"] for c in cards if c["threshold"] is not None}))
            points.append(CostPoint(d, a, cell.kind, wall.mean, wsr.mean, cell.survived, thresholds))
    return points

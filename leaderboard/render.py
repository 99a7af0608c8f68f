"""Render the leaderboard from the result cards alone: ``LEADERBOARD.md``, ``index.html``, a heatmap, an
attack-cost-versus-WSR scatter and, for every field the cards sweep, WSR and the suspect's clean accuracy
versus that field: versus queries (MEA-Defender's Fig. 2) when they hold a query-budget sweep, versus the
pruning rate when they hold a pruning sweep, and so on (``figures/wsr_vs_<field>.png``).

Everything here is a pure function of the cards (no clock, no host, no randomness), so the same cards give
byte-identical Markdown and HTML, and a byte-identical PNG for a given matplotlib version.

Aggregation rules (one *cell* = one defense x attack pair, over the seeds seen in its dataset/arch group):

* a cell is expected at the seeds that both its scheme and its attack were run with (its scheme's seeds if
  they share none); an expected seed with no card is "not run"; a cell shows its WSR as mean ± sd over its
  ``ok`` seeds and says how many of the expected seeds that is when some are missing or failed;
* a cell is *retained* (✓) when the majority of its ``ok`` seeds are retained, else removed (✗);
  a detection cell *survives* when the majority of its ``ok`` seeds are not detected;
* a scheme's robustness = extraction and removal attacks it survives / those with an ``ok`` cell
  (``n/a``, errors and missing cells are left out of the denominator, which is shown);
* accuracy cost = the scheme's victim clean accuracy minus that of ``none``, seed by seed, in points;
* an attack's cost (wall seconds of the attack alone, oracle queries, training epochs, peak memory) is the
  median and the mean over its ``ok`` cards, every scheme and seed;
* a *sweep* is a set of at least two attack columns of one dataset/arch group and one attack kind whose
  ``attack_config`` differ in exactly one numeric field (booleans are not numbers), and whose labels differ
  only in that field's ``field=`` item (``prune`` and ``prune[rate=0.1]`` when the plain column's config has
  its default rate). A *query sweep* sweeps ``queries``, where None = the whole attacker pool
  (``profile_config["attacker_pool"]``), on a log axis; any other field is drawn on a linear axis, its None
  values are left out, and chain columns (``a>b``, whose configs are per step) are left out too.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from bench.errors import WmbenchError
from bench.results import load_results

__all__ = ["render", "summarize", "find_sweeps", "cost_points", "Stat", "CellSummary", "DefenseRow", "AttackRow",
           "Group", "Sweep", "CostPoint", "KIND_ORDER", "sweep_colours", "cost_schemes"]

KIND_ORDER = ("control", "extraction", "removal", "detection")
CONTROL_DEFENSE = "none"
NOT_RUN = "not run"
ROBUSTNESS_KINDS = ("extraction", "removal")
ERROR_CHARS = 80
HEATMAP_DPI = 110
HEATMAP_NAME = "figures/wsr_heatmap.png"
QUERIES_FIELD = "queries"
SWEEP_NAME = "figures/wsr_vs_{field}.png"
QUERIES_DPI = 110
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
COST_NAME = "figures/cost_vs_wsr.png"
COST_DPI = 110
COST_MIN_WALL_S = 0.01  # a cell faster than this sits at this floor of the log axis
COST_LABEL_MAX = 40  # panels with at most this many points name the attack next to each point
COST_MAX_SCHEMES = 20  # more schemes than tab20 has colours: the configured variants are left to the tables
COST_MARKERS = {"control": "D", "extraction": "o", "removal": "s"}
COST_KIND_LABEL = {"control": "control (no attack)", "other": "other attack"}
CLAIM_THRESHOLD = 0.3  # drawn when no plotted card records its scheme's threshold (bench.api.Defense's default)
DEFAULT_TITLE = "wmbench leaderboard"

MARK_OK = "✓"
MARK_BAD = "✗"
DASH = "—"
NOT_RUN_MARK = "·"


# ----------------------------------------------------------------------------------------------- model
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


def _majority(votes) -> bool | None:
    """True when more than half of the votes are True; None when there is no vote."""
    vals = list(votes)
    return sum(vals) * 2 > len(vals) if vals else None


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
        """Detection: True when more than half of the ok seeds flagged the model *and* named the watermark (the
        scorer's ``detection_correct``; a card without that judgement counts a flag as found)."""
        return _majority(bool(c["detected"]) and (c.get("extras") or {}).get("detection_correct", True) is not False
                         for c in self.ok if c["detected"] is not None)

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

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.arch}"

    @property
    def not_run(self) -> int:
        return sum(len(c.missing_seeds) for c in self.cells.values())


def _defense_key(name: str):
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


GATE_NOTE = ("⚠ after a scheme's name: its registered defaults did not meet the victim-side gate on the "
             "tuning seeds (accuracy cost against none <= 2 points and victim WSR >= 90%, docs/protocol.md); the "
             "tuning seeds' cards are on the tuning study page, not on this board.")


def gate_marks(tuning) -> dict[tuple[str, str], dict[str, str]]:
    """{(dataset, arch): {scheme: why}} for every scheme whose identity cards on the tuning seeds are
    complete and fail the gate (:mod:`bench.tuning`); a registered scheme's own embedding rule is used."""
    from bench.registry import DEFENSES
    from bench.tuning import gate

    out: dict[tuple[str, str], dict[str, str]] = {}
    if tuning is None or tuning.empty:
        return out
    for (dataset, arch), part in tuning.groupby(["dataset", "arch"], sort=True):
        for name in sorted(set(part.defense[part.attack == "identity"]) - {CONTROL_DEFENSE}):
            base = name.split("[", 1)[0]
            embedding = DEFENSES.get(base).embedding if base in DEFENSES else "model"
            profile = part.profile[part.defense == name].iloc[0]
            r = gate(part, name, embedding=embedding, profile=profile)
            if r.complete and not r.passes:
                why = [w for w, ok in ((f"cost {100 * r.cost:+.2f} points", r.passes_cost),
                                       (f"victim WSR {100 * r.wsr:.2f}%", r.passes_wsr)) if not ok]
                out.setdefault((dataset, arch), {})[name] = "; ".join(why)
    return out


def summarize(df) -> list[Group]:
    """Aggregate a ``load_results`` DataFrame into one :class:`Group` per (dataset, arch). Cards of the
    tuning seeds (``bench.tuning.TUNING_SEEDS``) are not on the board; they mark the schemes that failed the
    tuning gate."""
    from bench.tuning import TUNING_SEEDS

    tuning = df[df.seed.isin(TUNING_SEEDS)]
    df = df[~df.seed.isin(TUNING_SEEDS)]
    marks = gate_marks(tuning) if len(tuning) else {}
    groups = _summarize(df)
    for g in groups:
        g.gate = {d: why for d, why in marks.get((g.dataset, g.arch), {}).items() if d in g.defenses}
    return groups


def _summarize(df) -> list[Group]:
    cards = _records(df)
    by_group: dict[tuple[str, str], list[dict]] = {}
    for c in cards:
        by_group.setdefault((c["dataset"], c["arch"]), []).append(c)
    return [_group(ds, arch, by_group[(ds, arch)]) for ds, arch in sorted(by_group)]


def _group(dataset: str, arch: str, cards: list[dict]) -> Group:
    cards = sorted(cards, key=lambda c: (c["defense"], c["attack"], c["seed"]))
    kinds: dict[str, str] = {}
    has_wm: dict[str, bool] = {}
    for c in cards:
        kinds.setdefault(c["attack"], c["attack_kind"])
        has_wm[c["defense"]] = has_wm.get(c["defense"], False) or bool(c["has_watermark"])
    defenses = tuple(sorted(has_wm, key=_defense_key))
    attacks = tuple(sorted(kinds, key=_attack_key(kinds)))
    seeds = tuple(sorted({c["seed"] for c in cards}))
    profiles = tuple(sorted({c["profile"] for c in cards}))
    row_seeds = {d: {c["seed"] for c in cards if c["defense"] == d} for d in defenses}
    col_seeds = {a: {c["seed"] for c in cards if c["attack"] == a} for a in attacks}

    def expected(d: str, a: str) -> tuple[int, ...]:
        """The seeds a cell is expected at: those its scheme and its attack both were run with (a sweep
        run at one seed is not 'missing' two seeds because the central ablation used three)."""
        return tuple(sorted(row_seeds[d] & col_seeds[a] or row_seeds[d]))

    cells = {
        (d, a): CellSummary(d, a, kinds[a], expected(d, a),
                            [c for c in cards if c["defense"] == d and c["attack"] == a])
        for d in defenses
        for a in attacks
    }
    g = Group(dataset, arch, seeds, profiles, defenses, attacks, kinds, has_wm, cells, [], [], len(cards))
    victim_acc = {d: _per_seed(cards, d, "clean_acc_victim") for d in defenses}
    g.defense_rows = [_defense_row(g, d, cards, victim_acc) for d in defenses]
    g.attack_rows = [_attack_row(g, a) for a in attacks]
    return g


def _per_seed(cards: list[dict], defense: str, name: str) -> dict[int, float]:
    """Per seed, the mean of a victim-level field over every card of the defense that reports it."""
    vals: dict[int, list[float]] = {}
    for c in cards:
        if c["defense"] == defense and c[name] is not None:
            vals.setdefault(c["seed"], []).append(float(c[name]))
    return {s: math.fsum(v) / len(v) for s, v in sorted(vals.items())}


def _defense_row(g: Group, d: str, cards: list[dict], victim_acc: dict[str, dict[int, float]]) -> DefenseRow:
    acc = victim_acc[d]
    cost = None
    if d != CONTROL_DEFENSE and CONTROL_DEFENSE in victim_acc:
        base = victim_acc[CONTROL_DEFENSE]
        cost = Stat.of(100.0 * (acc[s] - base[s]) for s in sorted(acc) if s in base)
    thresholds = [c["threshold"] for c in cards if c["defense"] == d and c["threshold"] is not None]
    identity = [a for a in g.attacks if g.kinds[a] == "control"]
    null = None
    for a in identity:
        null = g.cells[(d, a)].stat("wsr_null")
        if null is not None:
            break
    row = DefenseRow(
        name=d,
        has_watermark=g.has_watermark[d],
        victim_acc=Stat.of(acc.values()),
        acc_cost=cost,
        victim_wsr=Stat.of(_per_seed(cards, d, "wsr_victim").values()),
        null_wsr=null,
        threshold=(min(thresholds), max(thresholds)) if thresholds else None,
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


def _attack_row(g: Group, a: str) -> AttackRow:
    cells = [g.cells[(d, a)] for d in g.defenses]
    counts = Counter()
    for c in cells:
        counts.update(card["status"] for card in c.cards)
        counts[NOT_RUN] += len(c.missing_seeds)
    wm_ok = [c for c in cells if g.has_watermark[c.defense] and c.status == "ok"]
    cheap = [c.majority("removed_cheaply") for c in wm_ok]
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
    )


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


def sweep_figure_name(field: str) -> str:
    """``figures/wsr_vs_<field>.png``, relative to the output directory."""
    return SWEEP_NAME.format(field=field)


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


@dataclass(frozen=True)
class CostPoint:
    """One watermarked scheme under one attack that leaves a suspect model: the attack's mean wall seconds
    and the suspect's mean WSR over the cell's ok seeds that report both."""

    defense: str
    attack: str
    kind: str
    wall_s: float
    wsr: float
    survived: bool | None
    thresholds: tuple[float, ...]


def cost_points(g: Group) -> list[CostPoint]:
    """The points of the cost-versus-WSR figure for one group, in table order (detection attacks, which
    leave no suspect model, and schemes without a watermark have none)."""
    points = []
    for d in g.defenses:
        if not g.has_watermark[d]:
            continue
        for a in g.attacks:
            cell = g.cells[(d, a)]
            if cell.kind == "detection" or cell.status != "ok":
                continue
            cards = [c for c in cell.ok if c["wall_s"] is not None and c["wsr_suspect"] is not None]
            if not cards:
                continue
            wall = Stat.of(c["wall_s"] for c in cards)
            wsr = Stat.of(c["wsr_suspect"] for c in cards)
            thresholds = tuple(sorted({c["threshold"] for c in cards if c["threshold"] is not None}))
            points.append(CostPoint(d, a, cell.kind, wall.mean, wsr.mean, cell.survived, thresholds))
    return points


# -------------------------------------------------------------------------------------------- formatting
def rounded(x: float, nd: int = 1) -> float:
    """Round for display, never printing -0.0."""
    r = round(x, nd)
    return 0.0 if r == 0 else r


def pct(x: float | None) -> str:
    return DASH if x is None else f"{rounded(100.0 * x):.1f}%"


def pct_stat(s: Stat | None) -> str:
    if s is None:
        return DASH
    if s.sd is None:
        return pct(s.mean)
    return f"{rounded(100.0 * s.mean):.1f} ± {rounded(100.0 * s.sd):.1f}%"


def pts_stat(s: Stat | None) -> str:
    if s is None:
        return DASH
    text = f"{rounded(s.mean):+.1f}"
    if s.sd is not None:
        text += f" ± {rounded(s.sd):.1f}"
    return text + " pts"


def share(k: int, n: int) -> str:
    return DASH if n == 0 else f"{k}/{n} ({rounded(100.0 * k / n):.1f}%)"


def scientific(x: float | None) -> str:
    return DASH if x is None else f"{x:.1e}"


def count(x: float | None) -> str:
    return DASH if x is None else f"{int(round(x)):,}"


def seconds(x: float | None) -> str:
    return DASH if x is None else f"{rounded(x):.1f}"


def amount(x: float | None) -> str:
    """A whole number with thousands separators, or one decimal when it is not whole (a mean of counts)."""
    if x is None:
        return DASH
    return f"{int(round(x)):,}" if rounded(x) == round(x) else f"{rounded(x):,.1f}"


def megabytes(x: float | None) -> str:
    return DASH if x is None else f"{rounded(x, 0):,.0f}"


def median_mean(s: Stat | None, fmt) -> str:
    """``median / mean`` of a cost, each formatted with ``fmt``."""
    return DASH if s is None else f"{fmt(s.median)} / {fmt(s.mean)}"


def truncate(text: str | None, n: int = ERROR_CHARS) -> str:
    if not text:
        return ""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def threshold_text(t: tuple[float, float] | None) -> str:
    if t is None:
        return DASH
    return pct(t[0]) if t[0] == t[1] else f"{pct(t[0])}–{pct(t[1])}"


def partial_suffix(cell: CellSummary) -> str:
    return "" if cell.complete else f" ({len(cell.ok)}/{len(cell.seeds)})"


def cell_text(cell: CellSummary, has_watermark: bool) -> str:
    """The short text of a defense-table cell (shared by Markdown and HTML)."""
    status = cell.status
    if status == "error":
        return "ERR"
    if status == "n/a":
        return "n/a"
    if status == NOT_RUN:
        return NOT_RUN_MARK
    if cell.kind == "detection":
        detected = cell.majority("detected")
        if detected is None:
            text = DASH
        elif has_watermark:
            if cell.found():
                text = f"{MARK_BAD} detected"
            else:
                text = f"{MARK_OK} wrong class flagged" if detected else f"{MARK_OK} undetected"
            alarms = false_alarms(cell)
            if alarms is not None:
                text += f" (false alarms {alarms[0]}/{alarms[1]})"
        else:  # on the clean control a detection is a false alarm
            text = "flagged" if detected else "not flagged"
        return text + partial_suffix(cell)
    if not has_watermark:
        acc = cell.stat("clean_acc_suspect")
        return (DASH if acc is None else f"acc {pct_stat(acc)}") + partial_suffix(cell)
    wsr = cell.stat("wsr_suspect")
    text = pct_stat(wsr)
    survived = cell.survived
    if survived is not None:
        text += f" {MARK_OK if survived else MARK_BAD}"
    return text + partial_suffix(cell)


def false_alarms(cell: CellSummary) -> tuple[int, int] | None:
    """(flagged, tried) over the independent clean models the detector also ran on, in the ok cards that
    record them; None when none do."""
    flags = [bool(f) for c in cell.ok for f in (c.get("extras") or {}).get("null_detected", [])]
    return (sum(flags), len(flags)) if flags else None


def cell_detail(cell: CellSummary) -> str:
    """One line per seed for tooltips: WSR, null WSR, p-value and accuracy, or the error / n/a note."""
    parts = []
    for c in cell.cards:
        if c["status"] == "error":
            parts.append(f"seed {c['seed']}: error: {truncate(c['error'], 300)}")
        elif c["status"] == "n/a":
            parts.append(f"seed {c['seed']}: n/a" + (f" ({truncate(c['error'], 300)})" if c["error"] else ""))
        elif cell.kind == "detection":
            extras = c.get("extras") or {}
            nulls, right = extras.get("null_detected"), extras.get("detection_correct")
            alarm = "" if nulls is None else f", clean null models flagged: {sum(map(bool, nulls))}/{len(nulls)}"
            named = "" if right is None else f" (names the watermark: {'yes' if right else 'no'})"
            parts.append(f"seed {c['seed']}: detected={c['detected']} target={c['detected_target']}{named}{alarm}")
        else:
            parts.append(
                f"seed {c['seed']}: WSR {pct(c['wsr_suspect'])}, null {pct(c['wsr_null'])}, "
                f"p {scientific(c['p_value'])}, acc {pct(c['clean_acc_suspect'])}"
            )
    parts += [f"seed {s}: not run" for s in cell.missing_seeds]
    return "\n".join(parts)


def worst_text(cell: CellSummary | None) -> str:
    if cell is None:
        return DASH
    return f"{cell.attack}: {pct_stat(cell.stat('wsr_suspect'))} {MARK_OK if cell.survived else MARK_BAD}"


def detection_text(row: DefenseRow) -> str:
    if not row.det_total:
        return DASH
    if not row.detected_by:
        return f"{MARK_OK} {row.det_undetected}/{row.det_total} undetected"
    by = ", ".join(row.detected_by)
    return f"{MARK_BAD} {row.det_undetected}/{row.det_total} undetected; detected by {by}"


def robustness_text(row: DefenseRow) -> str:
    return DASH if not row.has_watermark else share(row.survived, row.total)


def status_counts(groups: list[Group]) -> tuple[int, Counter, int]:
    counts: Counter = Counter()
    for g in groups:
        for c in g.cells.values():
            counts.update(card["status"] for card in c.cards)
    return sum(g.n_cards for g in groups), counts, sum(g.not_run for g in groups)


def _meta(groups: list[Group]) -> list[tuple[str, str]]:
    n, counts, not_run = status_counts(groups)
    status = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "error", "n/a"))
    seeds = sorted({s for g in groups for s in g.seeds})
    return [
        ("Datasets", ", ".join(sorted({g.dataset for g in groups}))),
        ("Architectures", ", ".join(sorted({g.arch for g in groups}))),
        ("Profiles", ", ".join(sorted({p for g in groups for p in g.profiles}))),
        ("Seeds", ", ".join(str(s) for s in seeds)),
        ("Cards", f"{n} ({status}); {not_run} cell-seed(s) not run"),
    ]


CONTROL_NOTE = (
    "The `none` row is the null/control: a clean model with no watermark. Its models are the independent "
    "clean models every scheme is judged against: a scheme's null WSR is its watermark measured on `none` "
    "models trained with other seeds and on the copies the same attack makes of them. For `none` the attack "
    "columns show the suspect's clean accuracy (detection columns: whether the clean model is flagged)."
)
RULES_NOTE = (
    "WSR cells: mean ± sd over ok seeds; (k/n) = only k of the n seeds that its scheme and its attack were "
    "both run with are ok. ✓ = ownership still "
    "provable (WSR above the suspect's own rate of giving that label to clean inputs by ≥ threshold, and "
    "p < 0.01; majority of seeds); ✗ = removed. Detection columns: ✓ "
    "undetected, ✗ detected. Robustness = extraction and removal attacks survived / those with an ok cell "
    "(n/a, errors and cells not run are left out). Worst case per threat class: the attack that removes the "
    "watermark (else the lowest WSR). Acc Δ = victim clean accuracy minus that of `none`, same seeds. "
    "Attack cost: median / mean over the attack's ok cards (every scheme and seed) of its wall seconds (the "
    "attack alone, not the victim's training; a chain adds up its steps), oracle queries, training epochs and "
    "peak memory (MB: GPU allocation on CUDA, the process's peak resident memory on CPU)."
)
LEGEND = (("✓", "retained"), ("✗", "removed"), ("ERR", "error"), ("n/a", "not applicable"), ("·", "not run"))

DEFENSE_HEAD = ("Scheme", "Victim acc", "Acc Δ vs none", "Victim WSR", "Null WSR", "Threshold")
TAIL_HEAD = ("Robustness", "Worst extraction", "Worst removal", "Detection")
ATTACK_HEAD = (
    "Attack",
    "Kind",
    "Runs ok / err / n/a / not run",
    "Removed cheaply",
    "Detected",
    "Suspect acc",
    "Fidelity",
)
COST_HEAD = ("Wall s", "Queries", "Epochs", "Peak mem MB")
COST_SUB = "median / mean"
ATTACK_HEAD = ATTACK_HEAD + tuple(f"{h} ({COST_SUB})" for h in COST_HEAD)
DETAIL_HEAD = (
    "Defense",
    "Attack",
    "Seed",
    "Status",
    "Verdict",
    "Acc victim",
    "Acc suspect",
    "Fidelity",
    "WSR suspect",
    "WSR null",
    "p-value",
    "Queries",
    "Wall s",
    "Error / note",
)


def _defense_values(row: DefenseRow) -> tuple[list[str], list[str]]:
    head = [
        pct_stat(row.victim_acc),
        "(reference)" if row.name == CONTROL_DEFENSE else pts_stat(row.acc_cost),
        pct_stat(row.victim_wsr),
        pct_stat(row.null_wsr),
        threshold_text(row.threshold),
    ]
    tail = [
        robustness_text(row),
        worst_text(row.worst.get("extraction")),
        worst_text(row.worst.get("removal")),
        detection_text(row) if row.has_watermark else DASH,
    ]
    return head, tail


def _attack_values(r: AttackRow) -> list[str]:
    c = r.counts
    return [
        r.kind,
        f"{c['ok']} / {c['error']} / {c['n/a']} / {c[NOT_RUN]}",
        share(*r.removed_cheaply) if r.kind != "detection" else DASH,
        share(*r.detected) if r.kind == "detection" else DASH,
        pct(r.suspect_acc.mean if r.suspect_acc else None),
        pct(r.fidelity.mean if r.fidelity else None),
        median_mean(r.wall_s, seconds),
        median_mean(r.queries, amount),
        median_mean(r.epochs, amount),
        median_mean(r.peak_mem_mb, megabytes),
    ]


def _verdict(card: dict) -> str:
    if card["status"] != "ok":
        return ""
    if card["attack_kind"] == "detection":
        return "" if card["detected"] is None else ("detected" if card["detected"] else "undetected")
    if card["retained"] is None:
        return ""
    return f"{MARK_OK} retained" if card["retained"] else f"{MARK_BAD} removed"


def _detail_rows(g: Group):
    """(status, values, full error) for every card and every seed not run, in table order."""
    for d in g.defenses:
        for a in g.attacks:
            cell = g.cells[(d, a)]
            by_seed = {c["seed"]: c for c in cell.cards}
            for s in sorted(set(cell.seeds) | set(by_seed)):
                c = by_seed.get(s)
                if c is None:
                    yield NOT_RUN, [d, a, str(s), NOT_RUN] + [NOT_RUN_MARK] * 9 + [""], ""
                    continue
                yield (
                    c["status"],
                    [
                        d,
                        a,
                        str(s),
                        c["status"],
                        _verdict(c),
                        pct(c["clean_acc_victim"]),
                        pct(c["clean_acc_suspect"]),
                        pct(c["fidelity"]),
                        pct(c["wsr_suspect"]),
                        pct(c["wsr_null"]),
                        scientific(c["p_value"]),
                        count(c["queries"]),
                        seconds(c["wall_s"]),
                        truncate(c["error"]),
                    ],
                    c["error"] or "",
                )


QUERIES_NOTE = (
    "WSR (watermarked schemes) and the stolen model's clean accuracy (every scheme) for each attack whose "
    "cards differ only in their query budget; one line per scheme, mean over ok seeds. Filled markers: "
    "ownership still provable (✓); hollow: removed (✗); dashed: the scheme's WSR threshold. \"all\" = the "
    "whole attacker pool."
)
SWEEP_NOTE = (
    "WSR (watermarked schemes) and the suspect model's clean accuracy (every scheme, the clean control "
    "included) for each attack whose cards differ only in their {what}; one line per scheme, mean over ok seeds. "
    "Filled markers: ownership still provable (✓); hollow: removed (✗); dashed: the scheme's WSR threshold."
)


COST_NOTE = (
    "Each point is one watermarked scheme under one attack that leaves a suspect model (mean over its ok "
    "seeds): x = the attack's wall seconds on a log scale (the attack alone, not the victim's training; "
    f"under {COST_MIN_WALL_S} s is drawn at {COST_MIN_WALL_S} s), y = the WSR left in the suspect model. "
    "Colour = scheme, marker = attack kind; filled = ownership still provable (✓), hollow = removed (✗); "
    "dashed line = the 30% claim threshold. How to read it: a point under the line is an attack that removes "
    "the watermark, and the further left it lies, the cheaper that removal; a robust scheme keeps all its "
    "points above the line, and the leftmost of its points under the line is the cheapest way to defeat it."
)


def queries_text(queries: int, sweep: Sweep, label: str) -> str:
    return f"{queries:,}" + (" (all)" if label == sweep.whole else "")


def value_text(x: float) -> str:
    """A swept value as short as it reads back: ``0.1``, ``2``, ``30,000``, ``1e-05``."""
    text = f"{x:,g}"
    return text if float(text.replace(",", "")) == x else f"{x:,}"


def point_text(x: float, sweep: Sweep, label: str) -> str:
    """The axis tick and table column of one point of a sweep."""
    return queries_text(int(x), sweep, label) if sweep.field == QUERIES_FIELD else value_text(x)


def sweep_section(field: str) -> tuple[str, str, str]:
    """(heading, figure alt text, note) of the figure and tables of one swept field."""
    if field == QUERIES_FIELD:
        return "WSR versus queries", "WSR and stolen accuracy versus queries", QUERIES_NOTE
    axis = sweep_axis(field)
    what = axis if axis == field else f"{axis} ({field})"
    return f"WSR versus {axis}", f"WSR and suspect accuracy versus {axis}", SWEEP_NOTE.format(what=what)


def sweep_title(sweep: Sweep) -> str:
    return f"{sweep.group.label}: {sweep.family} ({sweep.kind})"


def sweep_point_text(cell: CellSummary, has_watermark: bool) -> str:
    """``WSR 12.0% ✗ · acc 85.0%`` (just ``acc 85.0%`` for schemes without a watermark), or the cell's mark."""
    if cell.status != "ok":
        return cell_text(cell, has_watermark)
    acc = cell.stat("clean_acc_suspect")
    acc_text = f"acc {pct_stat(acc)}" if acc is not None else ""
    wsr = cell.stat("wsr_suspect") if has_watermark else None
    if wsr is None:
        return (acc_text or DASH) + partial_suffix(cell)
    mark = "" if cell.survived is None else f" {MARK_OK if cell.survived else MARK_BAD}"
    return f"WSR {pct_stat(wsr)}{mark}" + (f" · {acc_text}" if acc_text else "") + partial_suffix(cell)


def _sweep_rows(sweep: Sweep) -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = [point_text(x, sweep, a) for x, a in sweep.points]
    g = sweep.group
    rows = [(d, [sweep_point_text(sweep.cell(d, a), g.has_watermark[d]) for _, a in sweep.points])
            for d in g.defenses]
    return head, rows


# ---------------------------------------------------------------------------------------------- markdown
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def escape_md(text: str) -> str:
    """Escape free text for a Markdown table cell."""
    text = _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", text))
    return text.replace("<", "&lt;").replace(">", "&gt;")


def code(name: str) -> str:
    """A name as a Markdown code span; a name with backticks gets a longer fence, so nothing in it (raw
    HTML included) leaves the span."""
    name = name.replace("|", "\\|")
    ticks = max((len(run) for run in re.findall(r"`+", name)), default=0)
    if not ticks:
        return f"`{name}`"
    fence = "`" * (ticks + 1)
    return f"{fence} {name} {fence}"


def _md_table(head, rows, align) -> list[str]:
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def render_markdown(groups: list[Group], title: str, sweeps: list[Sweep] | None = None, cost: bool = False) -> str:
    lines = [
        f"# {escape_md(title)}",
        "",
        "Rendered by `wmbench leaderboard` from the result cards alone; do not edit.",
        "",
    ]
    lines += [f"- **{k}:** {escape_md(v)}" for k, v in _meta(groups)] + [""]
    lines += ["**Legend:** " + ", ".join(f"`{m}` {t}" for m, t in LEGEND), ""]
    lines += [CONTROL_NOTE, "", RULES_NOTE, ""]
    for g in groups:
        lines += [f"## {escape_md(g.label)}", "", "### Defenses", ""]
        head = list(DEFENSE_HEAD) + list(TAIL_HEAD) + [f"{code(a)} ({g.kinds[a]})" for a in g.attacks]
        rows = []
        for r in g.defense_rows:
            h, t = _defense_values(r)
            name = code(r.name) + (" (control)" if r.name == CONTROL_DEFENSE else "")
            name += f" ⚠ ({escape_md(g.gate[r.name])})" if r.name in g.gate else ""
            cells = [escape_md(cell_text(g.cells[(r.name, a)], r.has_watermark)) for a in g.attacks]
            rows.append([name] + [escape_md(v) for v in h + t] + cells)
        lines += _md_table(head, rows, "l" + "r" * (len(head) - 1))
        if g.gate:
            lines += [escape_md(GATE_NOTE), ""]
        lines += ["### Attacks", ""]
        rows = [[code(r.name)] + [escape_md(v) for v in _attack_values(r)] for r in g.attack_rows]
        lines += _md_table(ATTACK_HEAD, rows, "ll" + "r" * (len(ATTACK_HEAD) - 2))
    lines += ["## WSR after attack", "", f"![WSR heatmap]({HEATMAP_NAME})", ""]
    lines += [
        "Mean WSR of the suspect model after each attack (watermarked schemes; detection attacks, which "
        "produce no suspect model, are left out). Masked cells: ERR error, n/a not applicable, · not run.",
        "",
    ]
    for fld in sweep_fields(sweeps or []):
        heading, alt, note = sweep_section(fld)
        lines += [f"## {escape_md(heading)}", "", f"![{escape_md(alt)}]({sweep_figure_name(fld)})", "",
                  escape_md(note), ""]
        for sw in (s for s in sweeps if s.field == fld):
            head, rows = _sweep_rows(sw)
            lines += [f"### {escape_md(sweep_title(sw))}", ""]
            table = [[code(d)] + [escape_md(v) for v in vals] for d, vals in rows]
            lines += _md_table(["Scheme"] + head, table, "l" + "r" * len(head))
    if cost:
        lines += ["## Attack cost versus WSR", "", f"![Attack cost versus WSR]({COST_NAME})", "",
                  escape_md(COST_NOTE), ""]
    for g in groups:
        lines += [f"## Per-cell detail: {escape_md(g.label)}", ""]
        rows = []
        for _status, vals, _err in _detail_rows(g):
            rows.append([code(vals[0]), code(vals[1])] + [escape_md(v) for v in vals[2:]])
        lines += _md_table(DETAIL_HEAD, rows, "lll" + "l" * 2 + "r" * 8 + "l")
    return "\n".join(lines).rstrip("\n") + "\n"


# -------------------------------------------------------------------------------------------------- html
_STATUS_CLASS = {"ok": "cell-ok", "error": "cell-error", "n/a": "cell-na", NOT_RUN: "cell-notrun"}
_RED, _YELLOW, _GREEN = (0xF4, 0xA6, 0xA6), (0xFA, 0xE3, 0x9C), (0x9E, 0xD9, 0xA3)


def wsr_colour(x: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1), as #rrggbb."""
    x = min(1.0, max(0.0, x))
    lo, hi, t = (_RED, _YELLOW, x * 2) if x < 0.5 else (_YELLOW, _GREEN, (x - 0.5) * 2)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(lo, hi, strict=True))


def escape_html(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _data_cell(text: str, cls: str = "", style: str = "", title: str = "") -> str:
    attrs = ""
    if cls:
        attrs += f' class="{escape_html(cls)}"'
    if style:
        attrs += f' style="{escape_html(style)}"'
    if title:
        attrs += f' title="{escape_html(title)}"'
    return f"<td{attrs}>{escape_html(text)}</td>"


def _html_cell(cell: CellSummary, has_watermark: bool) -> str:
    cls = [_STATUS_CLASS[cell.status]]
    style = ""
    if cell.status == "ok":
        if not cell.complete:
            cls.append("partial")
        if cell.kind == "detection" and has_watermark and cell.survived is not None:
            style = f"background-color: {wsr_colour(1.0 if cell.survived else 0.0)}"
        elif has_watermark and (wsr := cell.stat("wsr_suspect")) is not None:
            style = f"background-color: {wsr_colour(wsr.mean)}"
        else:
            cls.append("neutral")
    return _data_cell(cell_text(cell, has_watermark), " ".join(cls), style, cell_detail(cell))


def _html_table(head_cells: list[str], rows: list[str], cls: str) -> str:
    head = "<tr>" + "".join(head_cells) + "</tr>"
    body = "\n".join(rows)
    return (
        f'<div class="scroll"><table class="{cls}">\n<thead>{head}</thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _header_cell(text: str, sub: str = "", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<th{c}>{escape_html(text)}" + (f"<br><small>{escape_html(sub)}</small>" if sub else "") + "</th>"


def _defense_html(g: Group) -> str:
    head = [_header_cell(DEFENSE_HEAD[0], cls="name")] + [_header_cell(h) for h in DEFENSE_HEAD[1:]]
    head += [_header_cell(h) for h in TAIL_HEAD] + [_header_cell(a, g.kinds[a], cls="attack") for a in g.attacks]
    rows = []
    for r in g.defense_rows:
        h, t = _defense_values(r)
        name = f'<td class="name"><code>{escape_html(r.name)}</code>'
        if r.name == CONTROL_DEFENSE:
            name += ' <span class="tag">control</span>'
        if r.name in g.gate:
            name += f' <span class="tag" title="{escape_html(GATE_NOTE)}">⚠ {escape_html(g.gate[r.name])}</span>'
        name += "</td>"
        cells = "".join(_html_cell(g.cells[(r.name, a)], r.has_watermark) for a in g.attacks)
        score = ""
        if r.robustness is not None:
            score = f"background-color: {wsr_colour(r.robustness)}"
        tail = _data_cell(t[0], "score", score) + "".join(_data_cell(v, "worst") for v in t[1:])
        tr_cls = ' class="control"' if r.name == CONTROL_DEFENSE else ""
        rows.append(f"<tr{tr_cls}>{name}{''.join(_data_cell(v) for v in h)}{tail}{cells}</tr>")
    return _html_table(head, rows, "defenses")


def _attack_html(g: Group) -> str:
    plain = len(ATTACK_HEAD) - len(COST_HEAD)
    head = [_header_cell(ATTACK_HEAD[0], cls="name")] + [_header_cell(h) for h in ATTACK_HEAD[1:plain]]
    head += [_header_cell(h, COST_SUB) for h in COST_HEAD]
    rows = []
    for r in g.attack_rows:
        vals = _attack_values(r)
        rows.append(
            f'<tr><td class="name"><code>{escape_html(r.name)}</code></td>{_data_cell(vals[0], "kind kind-" + r.kind)}'
            + "".join(_data_cell(v) for v in vals[1:])
            + "</tr>"
        )
    return _html_table(head, rows, "attacks")


def _detail_html(g: Group) -> str:
    head = [_header_cell(h, cls="name" if i in (0, 1, 13) else "") for i, h in enumerate(DETAIL_HEAD)]
    rows = []
    for status, vals, err in _detail_rows(g):
        cls = _STATUS_CLASS[status]
        tds = (
            f'<td class="name"><code>{escape_html(vals[0])}</code></td>'
            f'<td class="name"><code>{escape_html(vals[1])}</code></td>'
            + _data_cell(vals[2])
            + _data_cell(vals[3], f"{cls} status")
            + "".join(_data_cell(v) for v in vals[4:13])
            + _data_cell(vals[13], "name error-text", title=err if err != vals[13] else "")
        )
        rows.append(f'<tr class="row-{cls[5:]}">{tds}</tr>')
    return _html_table(head, rows, "detail")


def _md_inline_to_html(text: str) -> str:
    """The notes use `code` spans only; escape, then turn those into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape_html(text))


def _sweeps_html(sweeps: list[Sweep]) -> str:
    return "".join(_sweep_html(fld, [s for s in sweeps if s.field == fld]) for fld in sweep_fields(sweeps))


_SWEEP_ALT = {QUERIES_FIELD: "WSR and stolen accuracy of each scheme versus the query budget"}


def _sweep_html(fld: str, sweeps: list[Sweep]) -> str:
    heading, _alt, note = sweep_section(fld)
    alt = _SWEEP_ALT.get(fld, f"WSR and suspect accuracy of each scheme versus the {sweep_axis(fld)}")
    parts = [
        f"<section>\n<h2>{escape_html(heading)}</h2>\n<figure>",
        f'<img src="{escape_html(sweep_figure_name(fld))}" alt="{escape_html(alt)}">',
        f"<figcaption>{escape_html(note)}</figcaption>\n</figure>",
    ]
    for sw in sweeps:
        head, rows = _sweep_rows(sw)
        cells = [_header_cell("Scheme", sw.axis, cls="name")] + [_header_cell(h) for h in head]
        body = [
            f'<tr><td class="name"><code>{escape_html(d)}</code></td>' + "".join(_data_cell(v) for v in vals) + "</tr>"
            for d, vals in rows
        ]
        parts += [f"<h3>{escape_html(sweep_title(sw))}</h3>", _html_table(cells, body, "sweep")]
    return "\n".join(parts) + "\n</section>\n"


def _cost_html(cost: bool) -> str:
    if not cost:
        return ""
    return (
        "<section>\n<h2>Attack cost versus WSR</h2>\n<figure>\n"
        f'<img src="{escape_html(COST_NAME)}" alt="WSR of each watermarked scheme after each attack versus the '
        'attack\'s wall seconds">\n'
        f"<figcaption>{escape_html(COST_NOTE)}</figcaption>\n</figure>\n</section>\n"
    )


def render_html(groups: list[Group], title: str, sweeps: list[Sweep] | None = None, cost: bool = False) -> str:
    meta = "\n".join(f"<dt>{escape_html(k)}</dt><dd>{escape_html(v)}</dd>" for k, v in _meta(groups))
    legend = "\n".join(
        f'<li><span class="swatch {c}">{escape_html(m)}</span> {escape_html(t)}</li>'
        for (m, t), c in zip(
            LEGEND,
            ("cell-ok mark-ok", "cell-ok mark-bad", "cell-error", "cell-na", "cell-notrun"),
            strict=True,
        )
    )
    sections = []
    for g in groups:
        sections.append(
            f"<section>\n<h2>{escape_html(g.label)}</h2>\n<h3>Defenses</h3>\n{_defense_html(g)}\n"
            f"<h3>Attacks</h3>\n{_attack_html(g)}\n</section>"
        )
    details = [
        f"<section>\n<h2>Per-cell detail: {escape_html(g.label)}</h2>\n{_detail_html(g)}\n</section>" for g in groups
    ]
    template = Template(resources.files("leaderboard").joinpath("templates/page.html").read_text("utf-8"))
    return template.substitute(
        title=escape_html(title),
        meta=meta,
        legend=legend,
        control_note=_md_inline_to_html(CONTROL_NOTE),
        rules_note=_md_inline_to_html(RULES_NOTE),
        sections="\n".join(sections),
        heatmap=escape_html(HEATMAP_NAME),
        details=_sweeps_html(sweeps or []) + _cost_html(cost) + "\n".join(details),
    )


# ----------------------------------------------------------------------------------------------- heatmap
def render_heatmap(groups: list[Group], path: Path) -> Path:
    """Mean WSR after each attack, one panel per dataset/arch; non-numeric cells masked and labelled."""
    import matplotlib
    import matplotlib.ticker
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = []
    for g in groups:
        rows = [d for d in g.defenses if g.has_watermark[d]]
        cols = [a for a in g.attacks if g.kinds[a] != "detection"]
        panels.append((g, rows, cols))
    heights = [0.6 * max(1, len(rows)) + 1.8 for _, rows, _ in panels]
    ncols = max(max(1, len(cols)) for _, _, cols in panels)
    width = max(6.0, 1.15 * ncols + 3.2)
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(width, sum(heights)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, (g, rows, cols) in zip(axes, panels, strict=True):
            ax.set_title(f"{g.label}: WSR after attack (mean over ok seeds)", loc="left")
            if not rows or not cols:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no watermarked scheme or no attack with a suspect model", ha="center")
                continue
            data = np.full((len(rows), len(cols)), np.nan)
            annot = np.full((len(rows), len(cols)), "", dtype=object)
            masked: dict[tuple[int, int], str] = {}
            for i, d in enumerate(rows):
                for j, a in enumerate(cols):
                    cell = g.cells[(d, a)]
                    wsr = cell.stat("wsr_suspect") if cell.status == "ok" else None
                    if wsr is None:
                        masked[(i, j)] = cell.status
                        continue
                    data[i, j] = wsr.mean
                    mark = "" if cell.survived is None else (MARK_OK if cell.survived else MARK_BAD)
                    annot[i, j] = f"{rounded(100.0 * wsr.mean):.1f}% {mark}".rstrip() + partial_suffix(cell)
            sns.heatmap(
                data,
                mask=np.isnan(data),
                annot=annot,
                fmt="",
                cmap="RdYlGn",
                vmin=0.0,
                vmax=1.0,
                linewidths=1.0,
                linecolor="white",
                xticklabels=[f"{a}\n({g.kinds[a]})" for a in cols],
                yticklabels=rows,
                cbar_kws={"label": "WSR", "format": matplotlib.ticker.PercentFormatter(1.0, decimals=0)},
                ax=ax,
            )
            for (i, j), status in sorted(masked.items()):
                face, hatch, edge, style, label = {
                    "error": ("#f8d7da", "///", "#d9534f", "-", "ERR"),
                    "n/a": ("#d9d9d9", None, "#d9d9d9", "-", "n/a"),
                    NOT_RUN: ("#ffffff", None, "#8c959f", ":", f"{NOT_RUN_MARK} not run"),
                }.get(status, ("#eeeeee", None, "#eeeeee", "-", DASH))
                ax.add_patch(
                    Rectangle(
                        (j + 0.04, i + 0.04),
                        0.92,
                        0.92,
                        facecolor=face,
                        hatch=hatch,
                        edgecolor=edge,
                        linestyle=style,
                        linewidth=1.0,
                    )
                )
                colour = "#842029" if status == "error" else "#57606a"
                weight = "bold" if status == "error" else "normal"
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    label,
                    ha="center",
                    va="center",
                    color=colour,
                    fontweight=weight,
                    bbox={"facecolor": face, "edgecolor": "none", "pad": 1.5} if hatch else None,
                )
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelrotation=0)
            if max(len(a) for a in cols) > 14:  # sweep and chain names would run into each other side by side
                for label in ax.get_xticklabels():
                    label.set(rotation=35, ha="right", rotation_mode="anchor")
            else:
                ax.tick_params(axis="x", labelrotation=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=HEATMAP_DPI, metadata={"Software": None}, facecolor="white")
    return path


# ---------------------------------------------------------------------------------------------- sweeps
def sweep_colours(sw: Sweep) -> dict[str, tuple]:
    """The schemes a sweep figure draws, each with a distinct colour, in the group's order: those with ok
    cards at two or more of the sweep's points (a scheme run at one setting only is not swept; if no scheme
    has two, those with one). tab10 for up to 10 schemes, tab20 beyond."""
    points = {d: sum(sw.cell(d, a).status == "ok" for _, a in sw.points) for d in sw.group.defenses}
    least = 2 if any(n >= 2 for n in points.values()) else 1
    return _palette([d for d, n in points.items() if n >= least])


def _palette(names: list[str]) -> dict[str, tuple]:
    """A colour per name in order: tab10 for up to 10 names, tab20 beyond (cycling past 20)."""
    import matplotlib

    colours = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {d: colours[i % len(colours)] for i, d in enumerate(names)}


def render_sweeps(sweeps: list[Sweep], path: Path) -> Path:
    """One row per sweep of one field: WSR (watermarked schemes) and the suspect's clean accuracy (every
    scheme) versus the field, one line per scheme; filled markers = retained, hollow = removed, dashed = the
    scheme's threshold. Query budgets are log-scaled (the stolen model's accuracy), any other field linear."""
    import matplotlib
    import matplotlib.ticker
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fields = sweep_fields(sweeps)
    if len(fields) != 1:
        raise ValueError(f"one figure draws the sweeps of one field, not {fields}")
    log = fields[0] == QUERIES_FIELD
    model = "stolen model" if log else "suspect model"
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(12.5, 3.6 * len(sweeps)), layout="constrained")
        axes = fig.subplots(len(sweeps), 2, squeeze=False)
        for (ax_wsr, ax_acc), sw in zip(axes, sweeps, strict=True):
            g = sw.group
            xs = [q for q, _ in sw.points]
            thresholds = set()
            colours = sweep_colours(sw)
            for d, colour in colours.items():
                cells = [(q, sw.cell(d, a)) for q, a in sw.points]
                acc = [(q, c.stat("clean_acc_suspect")) for q, c in cells if c.status == "ok"]
                acc = [(q, st.mean) for q, st in acc if st is not None]
                if acc:
                    ax_acc.plot(*zip(*acc, strict=True), marker="o", color=colour, label=d)
                if not g.has_watermark[d]:
                    continue
                wsr = [(q, c.stat("wsr_suspect"), c.survived) for q, c in cells if c.status == "ok"]
                wsr = [(q, st.mean, kept) for q, st, kept in wsr if st is not None]
                if not wsr:
                    continue
                ax_wsr.plot([q for q, _, _ in wsr], [w for _, w, _ in wsr], marker="o", color=colour, label=d)
                removed = [(q, w) for q, w, kept in wsr if kept is False]
                if removed:
                    ax_wsr.plot(*zip(*removed, strict=True), linestyle="none", marker="o", color=colour,
                                markerfacecolor="white")
                thresholds.update(t for c in g.cells.values() if c.defense == d for t in
                                  [card["threshold"] for card in c.ok] if t is not None)
            if not thresholds and ax_wsr.get_lines():
                thresholds.add(CLAIM_THRESHOLD)  # no plotted card records its threshold: the default one
            for t in sorted(thresholds):
                ax_wsr.axhline(t, color="#57606a", linestyle="--", linewidth=1.0)
            ax_wsr.set_title(sweep_title(sw), loc="left")
            for ax, what, empty in ((ax_wsr, f"WSR of the {model}", "no watermarked scheme"),
                                    (ax_acc, f"clean accuracy of the {model}", "no ok card")):
                ax.set_ylabel(what)
                if log:
                    ax.set_xscale("log")
                    ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
                else:
                    pad = 0.06 * (max(xs) - min(xs))
                    ax.set_xlim(min(xs) - pad, max(xs) + pad)
                ax.set_xticks(xs, [point_text(x, sw, a) for x, a in sw.points])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.set_xlabel(sw.axis)
                ax.set_ylim(-0.03, 1.03)
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
                ax.grid(True, color="#e5e5e5", linewidth=0.8)
                if not ax.get_lines():
                    ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes)
            if colours:  # one key per row, beside it: every scheme drawn in either panel, none over the data
                handles = [Line2D([], [], marker="o", color=c, label=d) for d, c in colours.items()]
                ax_acc.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                              frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=QUERIES_DPI, metadata={"Software": None}, facecolor="white")
    return path


# ------------------------------------------------------------------------------------------ cost vs WSR
def cost_schemes(defenses: list[str]) -> list[str]:
    """The schemes the cost figure draws: all of them while they fit :data:`COST_MAX_SCHEMES` distinct
    colours; beyond, the registered schemes as registered (no ``[...]`` configuration), which are what the
    leaderboard compares (every configured variant stays in the tables)."""
    unique = list(dict.fromkeys(defenses))
    if len(unique) <= COST_MAX_SCHEMES:
        return unique
    plain = [d for d in unique if "[" not in d]
    return plain or unique


def render_cost(groups: list[Group], path: Path) -> Path:
    """One panel per dataset/arch group with a point (:func:`cost_points`): the suspect's WSR versus the
    attack's wall seconds (log-scaled), colour per scheme, marker per attack kind, filled = retained,
    hollow = removed, dashed = the claim threshold; small panels name the attack of each point."""
    import matplotlib
    import matplotlib.ticker
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [(g, pts) for g in groups if (pts := cost_points(g))]
    if not panels:
        raise WmbenchError("no ok card of a watermarked scheme with a suspect model: nothing to plot")
    keep = cost_schemes([p.defense for _, pts in panels for p in pts])
    left_out = sorted({p.defense for _, pts in panels for p in pts} - set(keep))
    panels = [(g, [p for p in pts if p.defense in keep]) for g, pts in panels]
    panels = [(g, pts) for g, pts in panels if pts]
    schemes = sorted(keep, key=_defense_key)
    colour = _palette(schemes)
    grey = "#57606a"
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                "text.parse_math": False}):  # a '$' in a component name is text, not math
        fig = Figure(figsize=(9.5, 4.4 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (g, pts) in zip(axes, panels, strict=True):
            xs = [max(p.wall_s, COST_MIN_WALL_S) for p in pts]
            for p, x in zip(pts, xs, strict=True):
                c = colour[p.defense]
                ax.plot([x], [p.wsr], linestyle="none", marker=COST_MARKERS.get(p.kind, "X"), markersize=7,
                        color=c, markeredgecolor=c, markeredgewidth=1.4,
                        markerfacecolor="white" if p.survived is False else c, zorder=3)
                if len(pts) <= COST_LABEL_MAX:
                    ax.annotate(p.attack, (x, p.wsr), xytext=(5, 3), textcoords="offset points", fontsize=7,
                                color=grey)
            thresholds = sorted({t for p in pts for t in p.thresholds}) or [CLAIM_THRESHOLD]
            for t in thresholds:
                ax.axhline(t, color=grey, linestyle="--", linewidth=1.0, zorder=1)
            ax.set_title(f"{g.label}: attack cost versus WSR (mean over ok seeds)"
                         + (f"; {len(left_out)} configured variant(s) not drawn, see the tables" if left_out else ""),
                         loc="left")
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 3.3, max(xs) * 3.3)  # a span of more than a decade always has a labelled tick
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("attack wall seconds (log scale)")
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
            ax.set_ylabel("WSR of the suspect model")
            ax.grid(True, color="#e5e5e5", linewidth=0.8)
            shown = [d for d in schemes if any(p.defense == d for p in pts)]
            kinds = [k for k in (*KIND_ORDER, "other") if any(_cost_kind(p.kind) == k for p in pts)]
            handles = [Line2D([], [], linestyle="none", marker="o", markersize=7, color=colour[d], label=d)
                       for d in shown]
            handles += [Line2D([], [], linestyle="none", marker=COST_MARKERS.get(k, "X"), markersize=7, color=grey,
                               label=COST_KIND_LABEL.get(k, f"{k} attack")) for k in kinds]
            handles += [
                Line2D([], [], color=grey, linestyle="--", linewidth=1.0, label="claim threshold"),
                Line2D([], [], linestyle="none", label=f"filled: {MARK_OK} retained"),
                Line2D([], [], linestyle="none", label=f"hollow: {MARK_BAD} removed"),
            ]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=COST_DPI, metadata={"Software": None}, facecolor="white")
    return path


def _cost_kind(kind: str) -> str:
    return kind if kind in COST_MARKERS else "other"


# ------------------------------------------------------------------------------------------------ render
def render(results_dir: str | Path, out_dir: str | Path, *, title: str | None = None) -> dict[str, Path]:
    """Write ``LEADERBOARD.md``, ``index.html`` and ``figures/wsr_heatmap.png`` under ``out_dir``;
    ``figures/cost_vs_wsr.png`` when some ok card of a watermarked scheme has a suspect model
    (:func:`cost_points`), and ``figures/wsr_vs_<field>.png`` for each field the cards sweep
    (:func:`find_sweeps`): ``wsr_vs_queries.png`` for a query sweep, ``wsr_vs_rate.png`` for a pruning sweep.
    A figure these cards do not call for is removed if an earlier render left it.

    Returns their paths under the keys ``markdown``, ``html``, ``heatmap``, ``cost`` (when drawn),
    ``queries`` (with a query sweep) and ``wsr_vs_<field>`` (with a sweep of any other field).
    Raises :class:`bench.errors.CardError` for a missing directory or an invalid card, and
    :class:`bench.errors.WmbenchError` when there is no card at all.
    """
    df = load_results(results_dir)
    if df.empty:
        raise WmbenchError(f"no result cards under {results_dir}; run `wmbench run` first")
    groups = summarize(df)
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
        (out / "figures").mkdir(exist_ok=True)
        managed = {out / COST_NAME, *(out / "figures").glob(Path(sweep_figure_name("*")).name)}
        pages = ("markdown", "html")  # figures first, pages last: a page never points at a figure not yet there
        for key in sorted(made, key=lambda k: k in pages):
            os.replace(made[key], out / made[key].relative_to(stage))
            made[key] = out / made[key].relative_to(stage)
        for stale in managed - set(made.values()):  # a figure these cards no longer call for
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise WmbenchError(f"cannot write the leaderboard into {str(out)!r}: {exc.strerror or exc}; pass a "
                           "writable --out") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
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

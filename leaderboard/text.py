"""How the numbers read: the formatters (percentages, ± sd, counts, seconds), the short text and the per-seed
tooltip of a cell, the notes and legend of the pages, and the table headings and row values that the Markdown
and the HTML page share, so both say the same thing.
"""

from __future__ import annotations

import re
from collections import Counter

from bench.spec import base_name
from leaderboard.summary import NOT_RUN, ROBUSTNESS_KINDS, AttackRow, CellSummary, DefenseRow, Group, Stat, card_verdict
from leaderboard.sweeps import QUERIES_FIELD, Sweep

ERROR_CHARS = 80

MARK_OK = "✓"
MARK_BAD = "✗"
DASH = "—"
# the mark beside a card's verdict word (leaderboard.summary.card_verdict): ✓ where the owner's proof stands
VERDICT_MARKS = {"retained": MARK_OK, "undetected": MARK_OK, "wrong class flagged": MARK_OK, "removed": MARK_BAD,
                 "removed cheaply": MARK_BAD, "detected": MARK_BAD}
NOT_RUN_MARK = "·"


def verdict_text(card: dict) -> str:
    """One card's verdict for a page: its mark and word (``✓ retained``, ``✗ removed cheaply``), its status when
    it judges nothing (``n/a``, ``error``), or a dash."""
    word = card_verdict(card)
    return f"{VERDICT_MARKS[word]} {word}" if word in VERDICT_MARKS else word or DASH


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


def partial_suffix(cell: CellSummary) -> str:
    """`` (2 of 3 seeds)`` after a cell that rests on fewer ok seeds than it expects (not ``2/3``: that is how a
    verdict's votes read)."""
    return "" if cell.complete else f" ({len(cell.ok)} of {len(cell.seeds)} seeds)"


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


def label_rate(card: dict) -> float | None:
    """The suspect's own rate of giving the watermark's labels to clean inputs of other classes (the verdict
    needs the WSR above it by the threshold), from the card's extras; None where the card has none."""
    return (card.get("extras") or {}).get("suspect_label_rate")


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
                f"seed {c['seed']}: WSR {pct(c['wsr_suspect'])}, label rate {pct(label_rate(c))}, "
                f"null {pct(c['wsr_null'])}, "
                f"p {scientific(c['p_value'])}, acc {pct(c['clean_acc_suspect'])}"
            )
    parts += [f"seed {s}: not run" for s in cell.missing_seeds]
    return "\n".join(parts)


def worst_text(cell: CellSummary | None) -> str:
    """``dfme 0.3% ✗ 3/3``: the worst column of a threat class, its mean WSR and its verdict with its votes."""
    if cell is None:
        return DASH
    wsr = cell.stat("wsr_suspect")
    return f"{cell.attack} {pct(wsr.mean if wsr else None)} {votes_text(cell)}"


def votes_text(cell: CellSummary) -> str:
    """``✓ 2/3``: the majority verdict and how many ok seeds gave it (``✗ 1/2 tie``); DASH without a verdict."""
    v = cell.votes()
    if v is None:
        return DASH
    return f"{MARK_OK if v.survived else MARK_BAD} {v.agree}/{v.n}" + (" tie" if v.tie else "")


def interval_text(cell: CellSummary) -> str:
    """``[10, 63]`` (t over seeds) or ``[34, 39]¹`` (Wilson on one model's verification hits), in percent."""
    iv = cell.interval()
    if iv is None:
        return ""
    mark = "¹" if iv.method == "wilson" else ""
    return f"[{rounded(100 * iv.low, 0):.0f}, {rounded(100 * iv.high, 0):.0f}]{mark}"


def board_cell_text(cell: CellSummary, has_watermark: bool) -> str:
    """A board table cell: ``36.5% [10, 63] ✓ 2/3`` (mean WSR over the ok seeds, its 95% interval, the majority
    verdict and its votes), ``✗ detected 3/3`` for detection, the clean accuracy for the control, plus how
    many of the board's seeds are not run yet."""
    status = cell.status
    if status in ("error", "n/a", NOT_RUN):
        text = {"error": "ERR", "n/a": "n/a", NOT_RUN: NOT_RUN_MARK}[status]
    elif cell.kind == "detection":
        detected = cell.majority("detected")
        if detected is None:
            text = DASH
        elif not has_watermark:
            flagged = sum(1 for c in cell.ok if c["detected"])
            text = f"flagged {flagged}/{len(cell.ok)}"
        else:
            v = cell.votes()
            what = "detected" if cell.found() else ("wrong class" if detected else "undetected")
            text = f"{MARK_OK if v.survived else MARK_BAD} {what} {v.agree}/{v.n}" + (" tie" if v.tie else "")
    elif not has_watermark:
        acc = cell.stat("clean_acc_suspect")
        text = DASH if acc is None else f"acc {pct(acc.mean)}"
    else:
        wsr = cell.stat("wsr_suspect")
        text = " ".join(t for t in (pct(wsr.mean if wsr else None), interval_text(cell), votes_text(cell)) if t)
    missing = len(cell.missing_seeds)
    if missing and status != NOT_RUN:
        text += f" ({missing} not run)"
    return text


def paper_of(name: str) -> str:
    """``Lv et al. 2024``: the first "Author et al. YEAR" in the description of the registered scheme or of the
    scheme it derives from (a registered ablation cites its parent); DASH for an unregistered one."""
    from bench.registry import DEFENSES

    base = base_name(name)
    if base not in DEFENSES:
        return DASH
    for klass in DEFENSES.get(base).__mro__:
        hit = re.search(r"[A-Z][\w-]+ et al\.,? \d{4}", (klass.__doc__ or "").strip().split("\n", 1)[0])
        if hit:
            return hit.group(0)
    return DASH


def detected_by_text(row: DefenseRow) -> str:
    """The detectors whose majority found the watermark, ``none of 4`` when none did."""
    if not row.det_total:
        return DASH
    return ", ".join(row.detected_by) if row.detected_by else f"none of {row.det_total}"


def api_embedded(name: str) -> bool:
    """Whether the scheme's watermark lives in the served answers (``embedding = "api"``: DAWN), not in the
    model's weights."""
    from bench.registry import DEFENSES

    base = base_name(name)
    return base in DEFENSES and DEFENSES.get(base).embedding == "api"


def victim_wsr_text(name: str, wsr: Stat | None) -> str:
    """The victim WSR ``wsr`` of the scheme ``name``; for a scheme whose watermark lives in the served answers
    (:func:`api_embedded`) the API serves it by construction, and the model's own WSR is shown beside."""
    if api_embedded(name):
        return f"served by the API (model {pct_stat(wsr)})"
    return pct_stat(wsr)


def embedding_text(row: DefenseRow, seeds: int | None = None) -> str:
    """The victim's training time against the clean control's, medians over seeds: ``×1.9 (480 s)`` in wall
    seconds, ``×1.9 (900 CPU-s)`` in CPU seconds (where every card of both records them), and ``×1.9 (480 s;
    1 seed)`` when fewer victims than ``seeds`` are timed (the others not run, or trained on another device).
    Medians, as one training run slowed by a busy machine would drag a mean of three far off."""
    if row.embed_s is None:
        return DASH
    ratio = f"×{rounded(row.embed_ratio.median):.1f} " if row.embed_ratio is not None else ""
    n = row.embed_s.n
    few = f"; {n} seed{'s' * (n != 1)}" if seeds is not None and n < seeds else ""
    unit = "CPU-s" if row.embed_clock == "cpu" else "s"
    return f"{ratio}({rounded(row.embed_s.median, 0):,.0f} {unit}{few})"


def status_counts(groups: list[Group]) -> tuple[int, Counter, int]:
    counts: Counter = Counter()
    for g in groups:
        for c in g.cells.values():
            counts.update(card["status"] for card in c.cards)
    return sum(g.n_cards for g in groups), counts, sum(g.not_run for g in groups)


def board_line(g: Group) -> str:
    """``fashion-mnist / small_cnn: board main, profile quick, seeds 0, 1, 2; 250 cards (...), 12 not run``."""
    n, counts, not_run = status_counts([g])
    status = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "error", "n/a"))
    what = f"board {g.board}" if g.board else "ad-hoc board"
    return (f"{g.label}: {what}, profile {', '.join(g.profiles)}, seeds {', '.join(map(str, g.seeds))}; "
            f"{n} cards ({status}), {not_run} cell-seeds not run")


def retrained_text(g: Group) -> str | None:
    """One sentence on the scheme-seeds whose cards rest on more than one victim (:attr:`Group.retrained`), or
    None when every seed's cards share one."""
    if not g.retrained:
        return None
    where = _by_seed(g.retrained)
    counts = sorted({r.cards for r in g.retrained.values()})
    many = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    gaps = [(name, [getattr(r, attr) for r in g.retrained.values() if getattr(r, attr) is not None])
            for name, attr in (("victim accuracy", "acc_gap"), ("victim WSR", "wsr_gap"))]
    by = ", ".join(f"{name} by up to {rounded(100 * max(v), 2):g} points" for name, v in gaps if v)
    return (f"Retrained victims: for {len(g.retrained)} scheme-seed{'s' * (len(g.retrained) != 1)} ({where}), "
            f"{many} of the seed's cards {'was' if counts == [1] else 'were'} scored against a victim trained "
            "again because the cached one was gone (same seed and settings; numerics differ with the thread "
            f"count and the device{': ' + by if by else ''}). Each card's verdict rests on its own victim and null "
            "models; a scheme's accuracy cost, victim WSR and embedding time use the victim most of the seed's "
            "cards share.")


def _by_seed(pairs) -> str:
    """``seed 0: a, b; seed 1: c`` from (scheme, seed) pairs."""
    by_seed: dict[int, list[str]] = {}
    for d, seed in sorted(pairs):
        by_seed.setdefault(seed, []).append(d)
    return "; ".join(f"seed {seed}: {', '.join(names)}" for seed, names in sorted(by_seed.items()))


def devices_text(g: Group, embedding: bool = True) -> str | None:
    """One paragraph on the devices behind the group: how many of its cards each device ran, where every
    device but the most used one ran (:attr:`Group.devices`), and which victims were trained on another device
    than most victims (:attr:`Group.victim_device`), which the Embedding column (``embedding``: the page has
    one) leaves out. None when one device did everything."""
    parts = []
    if len(g.device_cards) > 1:
        main, *others = g.device_cards
        ran = {dev: [(d, seed) for seed, names in g.devices[dev].items() for d in names] for dev in others}
        where = "; ".join(f"{g.device_cards[dev]:,} on {dev} ({_by_seed(ran[dev])})" for dev in others)
        parts.append(f"Devices: {g.device_cards[main]:,} of the {sum(g.device_cards.values()):,} cards ran on "
                     f"{main}, {where}.")
    if g.main_device is not None:
        away: dict[str, list[tuple[str, int]]] = {}
        for (d, seed), dev in g.victim_device.items():
            if dev != g.main_device:
                away.setdefault(dev, []).append((d, seed))
        if away:
            parts.append(("Devices: v" if not parts else "V") + "ictims trained on another device than most "
                         f"({g.main_device}): " + "; ".join(f"on {dev}, {_by_seed(pairs)}"
                                                            for dev, pairs in sorted(away.items())) + ".")
            if embedding:
                parts.append(f"The Embedding column counts only victims trained on {g.main_device}.")
    if not parts:
        return None
    return " ".join(parts) + (" A card records the device of the run that wrote it and, where the cache knew "
                              "it, its victim's; the same seed and settings give other numbers on another "
                              "device.")


def api_text(g: Group) -> str | None:
    """One sentence per scheme of the group whose watermark lives in the served answers (:func:`api_embedded`:
    DAWN), saying why it scores as it does: its model carries no watermark, so what removal attacks (which start
    from the model's weights) leave is no evidence either way, and only a copy extracted through its API can
    carry the mark; with the best extraction column as the cards show it. None without such a scheme."""
    parts = []
    for d in sorted(d for d in g.defenses if g.has_watermark.get(d) and api_embedded(d)):
        cells = [c for (dd, _), c in sorted(g.cells.items()) if dd == d and c.votes() is not None]
        removal = [c for c in cells if c.kind == "removal"]
        extraction = [c for c in cells if c.kind == "extraction"]
        text = (f"`{d}` watermarks the API's answers, not the model: the model itself carries no watermark, so "
                "an attacker who holds its weights has nothing to remove")
        if removal and not any(c.survived for c in removal):  # what the cards show, not only the argument
            text += f" and no copy of them can be proved (✗ in all {len(removal)} removal columns)"
        if extraction:
            best = max(extraction, key=lambda c: (c.stat("wsr_suspect").mean, c.attack))
            text += (f". Only a copy extracted through the API can carry the mark; the best of its "
                     f"{len(extraction)} extraction columns is {worst_text(best)}")
        parts.append(text + ".")
    return " ".join(parts) if parts else None


GATE_NOTE = ("⚠ after a scheme's name: its registered defaults did not meet the victim-side gate on the "
             "tuning seeds (accuracy cost against none <= 2 points and victim WSR >= 90%, docs/protocol.md); the "
             "tuning seeds' cards are on the tuning study page, not on this board.")


CONTROL_NOTE = (
    "The `none` row is the null/control: a clean model with no watermark. Its models are the independent "
    "clean models every scheme is judged against: a scheme's null WSR is its watermark measured on `none` "
    "models trained with other seeds and on the copies the same attack makes of them. For `none` the attack "
    "columns show the suspect's clean accuracy (detection columns: whether the clean model is flagged)."
)
CELL_NOTE = (
    "A cell: the suspect's WSR as the mean over the ok seeds, its 95% interval [low, high] (Student-t over the "
    "seeds; ¹ = one seed only: a Wilson interval on that model's verification hits, which omits the spread "
    "between training runs), and the verdict as the majority of the seeds with how many gave it: ✓ 2/3 = "
    "ownership still provable on 2 of 3 seeds (WSR above the suspect's own rate of giving that label to clean "
    "inputs by at least the threshold, and p < 0.01 against the null models); ✗ = removed. Detection: "
    "✓ undetected or a wrong class flagged, ✗ detected. A tie between seeds counts against the scheme (removed, "
    "detected). ERR error, n/a not applicable, · not run. a ± b: mean ± sample standard deviation over seeds. "
    "Per-seed WSR, label rate and p-value: index.html's detail rows and cells.csv."
)

ATTACK_HEAD = (
    "Attack",
    "Kind",
    "Runs ok / err / n/a / ·",
    "Removed cheaply",
    "Detected",
    "Suspect acc",
    "Fidelity",
)
ATTACK_NOTE = (
    "Removed cheaply: of the watermarked schemes with a verdict, those the attack removed (✗) while costing the "
    "suspect at most 5 points of clean accuracy against the victim (the WRT SoK's rule; `identity` changes "
    "nothing, so it has no such count). Detected: of the watermarked schemes, those whose watermark the "
    "detector found (on most seeds; a tie counts as found). Cost columns: median / mean over the attack's ok "
    "cards, every scheme and seed. Seconds are CPU seconds of the attack alone (over all its threads, so other work "
    "on the machine does not inflate them); an attack whose cards predate CPU time shows its wall seconds, marked "
    "wall."
)
COST_HEAD = ("CPU s", "Queries", "Epochs", "Peak mem MB")
COST_SUB = "median / mean"
ATTACK_HEAD = ATTACK_HEAD + tuple(f"{h} ({COST_SUB})" for h in COST_HEAD)


def attack_values(r: AttackRow) -> list[str]:
    c = r.counts
    return [
        r.kind,
        f"{c['ok']} / {c['error']} / {c['n/a']} / {c[NOT_RUN]}",
        share(*r.removed_cheaply) if r.kind in ROBUSTNESS_KINDS else DASH,
        share(*r.detected) if r.kind == "detection" else DASH,
        pct(r.suspect_acc.mean if r.suspect_acc else None),
        pct(r.fidelity.mean if r.fidelity else None),
        median_mean(r.cpu_s, seconds) if r.cpu_s is not None else _wall(median_mean(r.wall_s, seconds)),
        median_mean(r.queries, amount),
        median_mean(r.epochs, amount),
        median_mean(r.peak_mem_mb, megabytes),
    ]


def _wall(text: str) -> str:
    return text if text == DASH else f"{text} wall"


def queries_text(queries: int, sweep: Sweep, label: str) -> str:
    return f"{queries:,}" + (" (all)" if label == sweep.whole else "")


def value_text(x: float) -> str:
    """A swept value as short as it reads back: ``0.1``, ``2``, ``30,000``, ``1e-05``."""
    text = f"{x:,g}"
    return text if float(text.replace(",", "")) == x else f"{x:,}"


def tick_text(x: float) -> str:
    """A scheme's setting as a short label: ``0.02``, ``1000``, ``0.333``."""
    return f"{x:g}" if len(f"{x:g}") <= 6 else f"{x:.3g}"


def point_text(x: float, sweep: Sweep, label: str) -> str:
    """The axis tick and table column of one point of a sweep."""
    return queries_text(int(x), sweep, label) if sweep.field == QUERIES_FIELD else value_text(x)


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


def sweep_rows(sweep: Sweep) -> tuple[list[str], list[tuple[str, list[str]]]]:
    head = [point_text(x, sweep, a) for x, a in sweep.points]
    g = sweep.group
    rows = [(d, [sweep_point_text(sweep.cell(d, a), g.has_watermark[d]) for _, a in sweep.points])
            for d in g.defenses]
    return head, rows


def _around(x: str, y: str, width: int = 60) -> tuple[str, str]:
    """The part of two different lines around where they first differ (so a long line shows its difference)."""
    i = next((k for k, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    start = max(0, i - width // 3)

    def cut(s: str) -> str:
        part = s[start:start + width]
        return ("…" if start else "") + part + ("…" if start + width < len(s) else "")

    return cut(x), cut(y)


def first_difference(a: bytes, b: bytes) -> str:
    """Where the rendered ``a`` and the published ``b`` first differ, showing the differing part of the line."""
    try:
        la, lb = a.decode().splitlines(), b.decode().splitlines()
    except UnicodeDecodeError:
        return f"{len(b)} bytes published, {len(a)} rendered"
    for i, (x, y) in enumerate(zip(la, lb, strict=False), start=1):
        if x != y:
            rendered, published = _around(x, y)
            return f"line {i}: published {published!r}, rendered {rendered!r}"
    return f"{len(lb)} lines published, {len(la)} rendered"

"""Is the committed leaderboard exactly what the committed cards render to?

CI runs ``wmbench leaderboard --check``: every card is validated against the schema and must sit at the
path its own fields name; the cards are rendered into a temporary folder and every output is compared
byte for byte with the published one. A hand-edited card (or a hand-edited leaderboard) therefore fails:
the numbers no longer match what the renderer makes of the cards. A card made by an older version of its
defense or attack than the registered one is stale (its numbers describe code that is gone) and fails too;
names the registries do not know (a plugin not loaded) are not judged. A card whose verdict does not follow
from its own numbers by the scorer's rules (:func:`verdict_mismatch`) fails as well, so a flipped verdict
cannot pass by re-rendering the leaderboard after the edit; a detection card's flag is checked against its
own record of what was flagged (a flag removed by hand from a card that recorded what it flagged fails; see
:func:`_detection_mismatch` for what it cannot tell).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.errors import CardError
from bench.results import card_path, iter_cards
from bench.score import verdict
from bench.spec import parse_spec, split_top_level
from leaderboard.drawn import dumps, read_sidecar, sidecar
from leaderboard.export import CSV_NAME
from leaderboard.text import first_difference, label_rate

__all__ = ["check_leaderboard", "stale_versions", "verdict_mismatch"]

# what render() may write; anything else under the output folder is not ours to judge
_OUTPUTS = ("LEADERBOARD.md", "index.html", "cells.csv", "figures/*.png", "figures/*.json", "studies/*.md",
            "studies/*.html")


def _outputs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for pattern in _OUTPUTS for p in root.glob(pattern)}


def _compare(rendered: Path, published: Path) -> str | None:
    """How a published output differs from the fresh render, or None. A figure is judged by its record of what it
    draws (:mod:`leaderboard.drawn`); its PNG bytes only when the same matplotlib version drew both."""
    if published.suffix == ".json" and published.parent.name == "figures":
        fresh, old = read_sidecar(rendered), read_sidecar(published)
        if old is None or "drawn" not in old:
            return "its record of what the figure draws is unreadable"
        if fresh["drawn"] == old["drawn"]:
            return None
        shown = first_difference(dumps("", fresh["drawn"]).encode(), dumps("", old["drawn"]).encode())
        return f"the figure draws other data; {shown}"
    if published.suffix == ".png":
        old = read_sidecar(sidecar(published))
        if old is not None and old.get("matplotlib") != (read_sidecar(sidecar(rendered)) or {}).get("matplotlib"):
            return None  # another matplotlib draws other pixels; the record beside it is compared instead
    a, b = rendered.read_bytes(), published.read_bytes()
    if a == b:
        return None
    if published.name == CSV_NAME:
        return csv_difference(a, b) or first_difference(a, b)
    return first_difference(a, b)


def csv_difference(rendered: bytes, published: bytes) -> str | None:
    """The first card whose row of ``cells.csv`` differs, and the field: ``card results/...json: wsr_suspect is
    0.2085 in the published CSV, 0.0085 from the cards``; None when the rows cannot be read or none differs."""
    import csv
    import io

    try:
        fresh = {r["card"]: r for r in csv.DictReader(io.StringIO(rendered.decode()))}
        old = {r["card"]: r for r in csv.DictReader(io.StringIO(published.decode()))}
    except (UnicodeDecodeError, KeyError, csv.Error):
        return None
    for card in sorted(fresh.keys() | old.keys()):
        if card not in old:
            return f"card {card}: no row in the published CSV"
        if card not in fresh:
            return f"card {card}: a published row, but no such card"
        for name, value in fresh[card].items():
            if old[card].get(name) != value:
                return f"card {card}: {name} is {old[card].get(name)!r} in the published CSV, {value!r} from the card"
    return None


def stale_versions(card: dict) -> str | None:
    """Why ``card`` was made by other versions of its components than the registered ones, else None."""
    from bench.registry import ATTACKS, DEFENSES

    found = []
    d = parse_spec(card["defense"])[0]
    if d in DEFENSES and str(DEFENSES.get(d).version) != str(card["defense_version"]):
        found.append(f"defense {d} v{card['defense_version']} (registered: v{DEFENSES.get(d).version})")
    steps = [parse_spec(step)[0] for step in split_top_level(card["attack"], ">")]
    made = str(card["attack_version"]).split("+")
    if all(s in ATTACKS for s in steps) and len(made) == len(steps):
        for step, v in zip(steps, made, strict=True):
            if str(ATTACKS.get(step).version) != v:
                found.append(f"attack {step} v{v} (registered: v{ATTACKS.get(step).version})")
    return "; ".join(found) or None


def _detection_mismatch(card: dict) -> str | None:
    """Why a detection card's ``detected`` contradicts its own record of what the detector flagged: a model
    not flagged (False, or no answer: None) with a named class, a named source pair or a judgement of whether
    the flag names the watermark, i.e. a flag removed by hand from a card that recorded what it flagged. A flag
    added by hand, or removed from a card that recorded nothing beside it (a detector that names no class, on
    a model without a watermark), cannot be told from the detector's own answer; only a re-run catches that."""
    if card["status"] != "ok" or card["detected"]:
        return None
    extras = card.get("extras") or {}
    named, pair = extras.get("detection_correct"), extras.get("detected_pair")
    if card["detected_target"] is not None or named is not None or pair is not None:
        return (f"detected is {card['detected']}, but it records a flag (detected_target "
                f"{card['detected_target']}, detection_correct {named}, detected_pair {pair})")
    return None


def verdict_mismatch(card: dict) -> str | None:
    """Why ``retained`` or ``removed_cheaply`` of an ok card is not what :mod:`bench.score` derives from the
    card's own WSR, label rate, threshold, p-value and accuracies, or why a detection card's ``detected``
    contradicts its own record (:func:`_detection_mismatch`); None when they agree or there is no verdict."""
    if card["attack_kind"] == "detection":
        return _detection_mismatch(card)
    if card["status"] != "ok" or card["retained"] is None:
        return None
    try:
        retained, cheaply = verdict(wsr=card["wsr_suspect"], threshold=card["threshold"], p_value=card["p_value"],
                                    label_rate=label_rate(card) or 0.0,
                                    acc_victim=card["clean_acc_victim"], acc_suspect=card["clean_acc_suspect"])
    except TypeError:  # a number the verdict rests on is missing
        return "it has a verdict but not the WSR, threshold, p-value and accuracies it rests on"
    if card["retained"] != retained:
        return f"retained is {card['retained']}, but its numbers give {retained}"
    if card["removed_cheaply"] is not None and card["removed_cheaply"] != cheaply:
        return f"removed_cheaply is {card['removed_cheaply']}, but its numbers give {cheaply}"
    return None


def check_leaderboard(results_dir: str | Path, out_dir: str | Path, readme: str | Path | None = None) -> list[str]:
    """Problems found, one line each (empty when the published leaderboard, and the ranked board in ``readme``
    when given, match the cards)."""
    from bench.results import load_results
    from leaderboard.ranking import sync_readme
    from leaderboard.render import card_base_of, render
    from leaderboard.sections import sections

    results, out = Path(results_dir), Path(out_dir)
    problems = []
    for path, card in iter_cards(results):  # validates every card; raises CardError on the first bad one
        expected = card_path(results, card["dataset"], card["arch"], card["defense"], card["attack"], card["seed"],
                             card["precision"])
        if path.resolve() != expected.resolve():
            problems.append(f"{path}: its fields say it belongs at {expected}; move it there, or delete it and "
                            "re-run its cell")
        why = stale_versions(card)
        if why:
            problems.append(f"{path}: stale, made by {why}; re-run its cell (`wmbench run` re-runs it) or delete it")
        why = verdict_mismatch(card)
        if why:
            problems.append(f"{path}: edited? {why}; re-score it (`wmbench run --force` on its cell)")
    if not out.is_dir():
        raise CardError(f"no published leaderboard at {str(out)!r}; render it with `wmbench leaderboard --out {out}`")
    with tempfile.TemporaryDirectory(prefix="wmbench-check-") as tmp:
        fresh = Path(tmp)
        render(results, fresh, card_base=card_base_of(results, out))  # links as the published page has them
        made, published = _outputs(fresh), _outputs(out)
        for name in sorted(made - published):
            problems.append(f"{out / name}: missing; the cards render it")
        for name in sorted(published - made):
            problems.append(f"{out / name}: stale; the cards no longer render it")
        for name in sorted(made & published):
            problem = _compare(fresh / name, out / name)
            if problem:
                problems.append(f"{out / name}: differs from what the cards render ({problem})")
    if readme is not None:
        problem = sync_readme(readme, sections(load_results(results)).boards, write=False)
        if problem:
            problems.append(problem)
    return problems

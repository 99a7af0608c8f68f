"""Move result cards to where the current registry files their exact configuration.

When a scheme's registered defaults change (a tuned default), a card made under the old defaults keeps its
numbers but no longer sits at the label and run id that its configuration gets today; when a configuration
moves to a component of its own (``mea_defender`` v2 -> ``mea_defender_official``), its cards can follow it.
:func:`rehome_card` re-plans the card's cell under the current registry and moves the card only if the
configuration is *identical* field by field (and the component version the same); it never re-labels a
card whose numbers another configuration would give. The card keeps where it came from in
``extras.moved_from``.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.config import build_config, config_to_dict
from bench.errors import WmbenchError
from bench.results import iter_cards, read_card, write_card
from bench.spec import Spec, parse_spec

__all__ = ["rehome_card", "rehome_cards", "spec_for_config"]


def spec_for_config(name: str, label: str, config: dict, registry) -> Spec:
    """The spec of component ``name`` whose resolved config is ``config``: the fields the old ``label`` set,
    plus every field where ``config`` differs from ``name``'s defaults; raises WmbenchError when no spec
    of ``name`` resolves to exactly ``config``."""
    cls = registry.get(name)
    _, parsed = parse_spec(label)
    values = {k: v for k, v in (parsed[0] if parsed else {}).items() if v is not None}
    built = config_to_dict(build_config(cls.Config, name, values))
    for key, want in config.items():
        if key in built and built[key] != want:
            values[key] = tuple(want) if isinstance(want, list) else want
    final = build_config(cls.Config, name, values)
    got = config_to_dict(final)
    if got != config:
        diff = sorted(k for k in set(got) | set(config) if got.get(k, "?") != config.get(k, "?"))
        raise WmbenchError(f"{name} cannot express the configuration of {label!r} (differs in "
                           f"{', '.join(diff[:4])}); the card stays where it is")
    defaults = config_to_dict(cls.Config())
    return Spec(name, {k: v for k, v in sorted(values.items()) if got.get(k) != defaults.get(k)})


def rehome_card(path: str | Path, results_dir: str | Path, *, rename: dict[str, str] | None = None,
                dry_run: bool = False) -> Path | None:
    """Move one card to the label, path and run id its exact configuration gets now (``rename`` maps an old
    component name to the one that now holds the configuration). Returns the new path, or None when the
    card is already at home or is not an ok/n-a card."""
    from bench.planning import plan_matrix
    from bench.registry import DEFENSES
    from bench.settings import make_settings
    from bench.spec import expand_chains

    card = read_card(path)
    if card["status"] == "error":
        return None
    old_label = card["defense"]
    old_name = old_label.split("[", 1)[0]
    name = (rename or {}).get(old_name, old_name)
    if str(DEFENSES.get(name).version) != str(card["defense_version"]):
        raise WmbenchError(f"{path}: {name} is version {DEFENSES.get(name).version}, the card was made by "
                           f"version {card['defense_version']}; re-run it instead of moving it")
    spec = spec_for_config(name, old_label, card["defense_config"], DEFENSES)
    settings = make_settings(dataset=card["dataset"], arch=card["arch"], profile=card["profile"],
                             results_dir=str(results_dir))
    from bench.registry import ATTACKS

    matrix = plan_matrix(settings, [spec], expand_chains(card["attack"], ATTACKS), [card["seed"]], force=True)
    cell = matrix.cells[0]
    if cell.config["defense_config"] != card["defense_config"]:  # pragma: no cover - spec_for_config checked
        raise WmbenchError(f"{path}: the re-planned configuration differs; the card stays where it is")
    if cell.run_id == card["run_id"] and Path(cell.card).resolve() == Path(path).resolve():
        return None
    moved = dict(card, defense=spec.label, run_id=cell.run_id)
    extras = dict(card.get("extras") or {})
    extras.setdefault("moved_from", {"defense": old_label, "run_id": card["run_id"]})
    moved["extras"] = extras
    if dry_run:
        return Path(cell.card)
    if os.path.exists(cell.card) and Path(cell.card).resolve() != Path(path).resolve():
        there = read_card(cell.card)
        if there["run_id"] == cell.run_id and there["status"] != "error":
            raise WmbenchError(f"{cell.card} already holds a card of that cell; remove one of the two first")
    write_card(cell.card, moved)
    if Path(cell.card).resolve() != Path(path).resolve():
        os.remove(path)
    return Path(cell.card)


def rehome_cards(results_dir: str | Path, defense: str, *, rename: dict[str, str] | None = None,
                 dry_run: bool = False) -> list[tuple[Path, Path]]:
    """:func:`rehome_card` for every card of component ``defense`` (any config) under ``results_dir``."""
    todo = [p for p, card in iter_cards(results_dir) if card["defense"].split("[", 1)[0] == defense]
    moves = []
    for p in todo:
        new = rehome_card(p, results_dir, rename=rename, dry_run=dry_run)
        if new is not None:
            moves.append((Path(p), new))
    return moves



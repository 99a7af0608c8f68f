"""Result cards: one JSON file per (dataset, arch, defense, attack, seed) cell.

The card is the source of truth of the leaderboard. It is typed, versioned and validated on write and on
load; numbers are numbers (fractions in [0, 1], never percent strings).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write
from bench.errors import CardError
from bench.profiles import PRECISIONS

__all__ = [
    "SCHEMA_VERSION",
    "FIELDS",
    "STATUSES",
    "card_path",
    "new_card",
    "slug",
    "validate_card",
    "write_card",
    "read_card",
    "iter_cards",
    "load_results",
]

SCHEMA_VERSION = 1
STATUSES = ("ok", "error", "n/a")
ATTACK_KINDS = ("extraction", "removal", "detection", "control")

# name -> (types, nullable, kind); kind "frac" = float in [0, 1]
_F = (int, float)
FIELDS: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "schema_version": ((int,), False, ""),
    "run_id": ((str,), False, ""),
    "dataset": ((str,), False, ""),
    "arch": ((str,), False, ""),
    "defense": ((str,), False, ""),
    "defense_version": ((str,), False, ""),
    "defense_config": ((dict,), False, ""),
    "has_watermark": ((bool,), False, ""),
    "attack": ((str,), False, ""),
    "attack_version": ((str,), False, ""),
    "attack_kind": ((str,), False, ""),
    "attack_config": ((dict,), False, ""),
    "seed": ((int,), False, ""),
    "profile": ((str,), False, ""),
    "profile_config": ((dict,), False, ""),
    "split": ((dict,), False, ""),
    "status": ((str,), False, ""),
    "error": ((str,), True, ""),
    "clean_acc_victim": (_F, True, "frac"),
    "clean_acc_suspect": (_F, True, "frac"),
    "fidelity": (_F, True, "frac"),
    "wsr_victim": (_F, True, "frac"),
    "wsr_suspect": (_F, True, "frac"),
    "wsr_null": (_F, True, "frac"),
    "n_verify": ((int,), True, ""),
    "threshold": (_F, True, "frac"),
    "p_value": (_F, True, "frac"),
    "retained": ((bool,), True, ""),
    "removed_cheaply": ((bool,), True, ""),
    "detected": ((bool,), True, ""),
    "detected_target": ((int,), True, ""),
    "queries": ((int,), True, ""),
    "epochs": ((int,), True, ""),
    "wall_s": (_F, True, ""),
    "cpu_s": (_F, True, ""),
    "threads": ((int,), True, ""),
    "peak_mem_mb": (_F, True, ""),
    "extras": ((dict,), False, ""),
    "versions": ((dict,), False, ""),
    "git_sha": ((str,), True, ""),
    "device": ((str,), False, ""),
    "precision": ((str,), False, ""),
    "created_utc": ((str,), False, ""),
}
# fields added after schema version 1 was published: a card written before them has none, and reads as this
# (every such card was trained in fp32, its CPU time and threads not recorded)
ADDED_FIELDS: dict[str, Any] = {"precision": "fp32", "cpu_s": None, "threads": None}


_SAFE = re.compile(r"[^A-Za-z0-9_.=,()+-]")


def slug(name: str) -> str:
    """A file-system-safe folder name for a component spec (chains and sweeps keep their meaning).

    ``>`` ``[`` ``]`` ``;`` ``:`` keep the spellings they always had, so every older card stays where it is.
    Any other character that has to be replaced would make names collide (``tag=a/b`` and ``tag=a?b`` both
    read ``tag=a_b``), so such a name also gets a short hash of the whole spec. One collision is left by the
    kept spellings: a string value containing ``_`` where another spec has ``;`` (``x[a=1;b=2]`` against
    ``x[a=1_b=2]``); the runner refuses to plan two specs onto one path."""
    s = name.replace(">", "__then__").replace("[", "(").replace("]", ")").replace(";", "_").replace(":", "_")
    safe = _SAFE.sub("_", s)
    if safe != s:
        safe += "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return safe


def card_path(results_dir: str | Path, dataset: str, arch: str, defense: str, attack: str, seed: int,
              precision: str | None = "fp32") -> Path:
    """Where a cell's card lives: ``seed-<k>.json``, or ``seed-<k>.<precision>.json`` for a cell trained at another
    precision than fp32, beside it (so the two never overwrite each other, and every fp32 card stays where it was)."""
    name = f"seed-{seed}.json" if precision in (None, "fp32") else f"seed-{seed}.{slug(precision)}.json"
    return Path(results_dir) / slug(dataset) / slug(arch) / slug(defense) / slug(attack) / name


def validate_card(card: Any, where: str = "card") -> dict:
    """Check a card against the schema; raise CardError naming the first bad field."""
    if not isinstance(card, dict):
        raise CardError(f"{where}: a card must be a JSON object")
    for key, default in ADDED_FIELDS.items():
        card.setdefault(key, default)
    missing = [k for k in FIELDS if k not in card]
    if missing:
        raise CardError(f"{where}: missing field(s) {', '.join(missing)}")
    extra = [k for k in card if k not in FIELDS]
    if extra:
        raise CardError(f"{where}: unknown field(s) {', '.join(extra)}; put extra data under 'extras'")
    for key, (types, nullable, kind) in FIELDS.items():
        v = card[key]
        if v is None:
            if not nullable:
                raise CardError(f"{where}: field {key} must not be null")
            continue
        if isinstance(v, bool) and bool not in types:
            raise CardError(f"{where}: field {key} must be {'/'.join(t.__name__ for t in types)}, not bool")
        if not isinstance(v, types):
            raise CardError(
                f"{where}: field {key} must be {'/'.join(t.__name__ for t in types)}, got {type(v).__name__}"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise CardError(f"{where}: field {key} must be finite (use null for 'not measured')")
        if kind == "frac" and not 0.0 <= v <= 1.0:
            raise CardError(f"{where}: field {key}={v} must be a fraction in [0, 1]")
    if card["schema_version"] != SCHEMA_VERSION:
        raise CardError(f"{where}: schema_version {card['schema_version']} is not {SCHEMA_VERSION}")
    if card["status"] not in STATUSES:
        raise CardError(f"{where}: status {card['status']!r} must be one of {', '.join(STATUSES)}")
    if card["precision"] not in PRECISIONS:
        raise CardError(f"{where}: precision {card['precision']!r} must be one of {', '.join(PRECISIONS)}")
    if card["attack_kind"] not in ATTACK_KINDS:
        raise CardError(f"{where}: attack_kind {card['attack_kind']!r} must be one of {', '.join(ATTACK_KINDS)}")
    if card["status"] == "error" and not card["error"]:
        raise CardError(f"{where}: an error card needs its error message")
    for key in ("queries", "epochs", "wall_s", "cpu_s", "threads", "peak_mem_mb", "seed"):
        if card[key] is not None and card[key] < 0:
            raise CardError(f"{where}: field {key} must be >= 0")
    return card


def new_card(**identity: Any) -> dict:
    """The one place a card is made: every field of :data:`FIELDS`, ``identity`` (run id, components, seed,
    profile, versions, ...) filled in, every measurement empty and the status "error" until a cell scores it."""
    unknown = sorted(set(identity) - set(FIELDS))
    if unknown:
        raise CardError(f"card fields {', '.join(unknown)} are not in the schema")
    card: dict[str, Any] = {name: {} if types == (dict,) and not nullable else None
                            for name, (types, nullable, _) in FIELDS.items()}
    card.update(schema_version=SCHEMA_VERSION, status="error",
                created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    card.update(identity)
    return card


def write_card(path: str | Path, card: dict) -> Path:
    """Validate and write atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    validate_card(card, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(path, text.encode("utf-8"))
    return path


def read_card(path: str | Path) -> dict:
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"{path}: no such card") from None
    except IsADirectoryError:
        raise CardError(f"{path} is a folder, not a card; name a seed-<k>.json file") from None
    except OSError as exc:  # a symlink loop, no permission, ...
        raise CardError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except RecursionError:
        raise CardError(f"{path}: its JSON is nested too deeply to be a card; delete it and re-run the cell") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{path}: not valid JSON ({exc}); delete it and re-run the cell") from None
    return validate_card(card, str(path))


def iter_cards(results_dir: str | Path):
    root = Path(results_dir)
    if root.exists() and not root.is_dir():
        raise CardError(f"results {str(root)!r} is a file, not a folder of cards; pass the folder (e.g. results)")
    if not root.is_dir():
        raise CardError(f"results directory {str(root)!r} does not exist; run `wmbench run --results {root}` first")
    for p in sorted(root.rglob("seed-*.json")):
        yield p, read_card(p)


def load_results(results_dir: str | Path):
    """Every card under ``results_dir`` as a validated pandas DataFrame (one row per cell)."""
    import pandas as pd

    rows = []
    for p, card in iter_cards(results_dir):
        row = dict(card)
        row["path"] = str(p)
        rows.append(row)
    columns = list(FIELDS) + ["path"]
    return pd.DataFrame(rows, columns=columns)

"""Re-run one published cell from scratch and compare its numbers with its card (``wmbench verify CARD``).

``wmbench leaderboard --check`` proves that the pages follow from the cards and that each card's verdict follows
from its own numbers; it cannot see a number edited consistently in a card and its render. Re-running the cell
can: :func:`verify_card` trains the cell's victim, its null models and the attack again in an empty cache (by
default), scores it, and compares the two cards field by field.

Training is bit-reproducible only for the same torch build, CPU kernels and thread count per job, which a
published card need not share with the machine that verifies it, so the numbers are compared within
:data:`TOLERANCE` (absolute, on a 0-1 scale) and the verdicts exactly.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench.errors import ConfigError
from bench.profiles import get_profile
from bench.results import read_card
from bench.settings import Settings

__all__ = ["TOLERANCE", "VERDICT_FIELDS", "Difference", "verify_card"]

# how far a re-run may land from the published number on another machine or thread count: the CI cell's victim
# accuracy moved by 0.18 points (0.8875 -> 0.8857) when re-run here, its WSRs not at all; an edited number
# moves by more
TOLERANCE = {"clean_acc_victim": 0.01, "clean_acc_suspect": 0.01, "fidelity": 0.02, "wsr_victim": 0.02,
             "wsr_suspect": 0.02, "wsr_null": 0.02}
VERDICT_FIELDS = ("status", "retained", "removed_cheaply", "detected", "detected_target")


@dataclass(frozen=True)
class Difference:
    field: str
    published: object
    rerun: object
    ok: bool

    def line(self) -> str:
        tol = TOLERANCE.get(self.field)
        rule = f"|Δ| <= {tol:g}" if tol is not None else "equal"
        return (f"{self.field:<18} published {_show(self.published):>10}  re-run {_show(self.rerun):>10}  "
                f"{'ok' if self.ok else 'DIFFERS'} ({rule})")


def _show(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _close(field: str, a: object, b: object) -> bool:
    if field not in TOLERANCE:
        return a == b
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOLERANCE[field]


def compare(published: dict, rerun: dict) -> list[Difference]:
    """Every compared field of the two cards, with whether it agrees."""
    return [Difference(f, published.get(f), rerun.get(f), _close(f, published.get(f), rerun.get(f)))
            for f in (*TOLERANCE, *VERDICT_FIELDS)]


def verify_card(path: str | Path, settings: Settings, *, cache_dir: str | None = None,
                **run_options) -> tuple[dict, dict, list[Difference]]:
    """Re-run the cell of the card at ``path`` (its data set, architecture, profile and precision, scheme, column
    and seed: like with like) into
    a temporary results folder, in ``cache_dir`` or else an empty temporary cache, with ``settings``'s device,
    jobs, data root and plugins; return (published card, re-run card, differences). A card the registered
    components would not make again (another configuration or version: its run id differs) is refused before
    anything is trained."""
    from bench.planning import plan_matrix
    from bench.runner import run

    published = read_card(path)
    if published["status"] == "error":
        raise ConfigError(f"{path}: an error card has no numbers to verify; re-run the cell with `wmbench run`")
    with tempfile.TemporaryDirectory(prefix="wmbench-verify-") as tmp:
        profile = get_profile(published["profile"], published["precision"])  # like with like
        plan = replace(settings, dataset=published["dataset"], arch=published["arch"], profile=profile,
                       results_dir=str(Path(tmp) / "results"),
                       cache_dir=cache_dir or str(Path(tmp) / "cache"))
        seeds = [int(published["seed"])]
        cells = plan_matrix(plan, published["defense"], published["attack"], seeds, force=True).cells
        if len(cells) != 1 or cells[0].run_id != published["run_id"]:
            raise ConfigError(f"{path}: the card was made by another configuration or component version than the "
                              "registered one (its run id differs), so a re-run need not match it; run the cell "
                              "again with `wmbench run` to replace it")
        run(plan, published["defense"], published["attack"], seeds, force=True, **run_options)
        rerun = read_card(cells[0].card)
    return published, rerun, compare(published, rerun)


"""A tidy export of the cards: ``cells.csv``, one row per card, for users' own analysis with pandas.

Each row carries the card's WSR with a 95% Wilson score interval on its verification hits. Why Wilson: a
card's WSR is the share of ``n_verify`` verification inputs one suspect model answers with the watermark's
labels, a binomial proportion given that model; Wilson's interval keeps its coverage near 0% and 100%, where
most watermark WSRs sit and where the normal approximation collapses to a zero-width interval. It describes the
measurement of one model, not the spread over training seeds (the pages show that: :mod:`leaderboard.intervals`).
"""

from __future__ import annotations

import csv
import io
import math

from bench.results import card_path
from leaderboard.intervals import Z95, wilson
from leaderboard.summary import card_verdict

__all__ = ["CSV_NAME", "Z95", "wilson", "cells_csv"]

CSV_NAME = "cells.csv"
COLUMNS = ("dataset", "arch", "profile", "precision", "defense", "attack", "attack_kind", "seed", "status",
           "has_watermark", "wsr_suspect", "wsr_low", "wsr_high", "n_verify", "suspect_label_rate", "wsr_null",
           "p_value", "threshold", "verdict", "wsr_victim", "clean_acc_victim", "clean_acc_suspect", "fidelity",
           "queries", "epochs", "wall_s", "cpu_s", "threads", "victim_wall_s", "victim_cpu_s", "peak_mem_mb",
           "device", "victim_device", "error", "card")
# read from the card's ``extras``: the suspect's own rate of giving the watermark's labels to clean inputs (the
# verdict needs WSR above it), the victim's training wall and CPU seconds (the embedding cost) and where the
# victim was trained, as the card recorded it (blank for cards written before it was recorded); ``device`` is
# where the card's own run ran; ``cpu_s`` and ``threads`` are blank for cards made before they were recorded
_EXTRAS = ("suspect_label_rate", "victim_wall_s", "victim_cpu_s", "victim_device")


_INTEGERS = {"seed", "n_verify", "queries", "epochs", "threads"}


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column in _INTEGERS:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".6g")  # six significant digits: a p-value of 1e-300 stays 1e-300
    return str(value)


def _plain(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def cells_csv(cards: list[dict]) -> str:
    """The CSV text, rows sorted by dataset, arch, defense, attack, seed (deterministic). ``card`` is each card's
    path inside the results folder, the same for every copy of it."""
    cards = [{k: _plain(v) for k, v in c.items()} for c in cards]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(COLUMNS)
    key = lambda c: (c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"], c["profile"],  # noqa: E731
                     c.get("precision") or "fp32")
    for card in sorted(cards, key=key):
        row = dict(card)
        extras = card.get("extras") or {}
        row.update({k: _plain(extras.get(k)) for k in _EXTRAS})
        wsr, n = card.get("wsr_suspect"), card.get("n_verify")
        low = high = None
        if wsr is not None and n:
            low, high = wilson(round(wsr * n), n)
        row.update(wsr_low=low, wsr_high=high, verdict=card_verdict(card),
                   card=card_path(".", card["dataset"], card["arch"], card["defense"], card["attack"],
                                  card["seed"], card.get("precision")).as_posix())
        out.writerow([_cell(c, row.get(c)) for c in COLUMNS])
    return buf.getvalue()

"""The 95% intervals of the pages (Student-t over seeds, Wilson for one model) against hand-computed values, and
the majority verdict with its votes, ties included."""

from __future__ import annotations

import math

import pytest
from cardfactory import make_card

from leaderboard.intervals import Z95, t_interval, t_quantile, wilson, wsr_interval
from leaderboard.summary import CellSummary
from leaderboard.text import board_cell_text, interval_text, votes_text


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_printed_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=5e-4)


def test_t_quantile_rejects_what_it_cannot_answer():
    with pytest.raises(ValueError, match="0.5 < p < 1"):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.975, 0)


def test_t_interval_by_hand():
    # three seeds 25.75 / 36.45 / 47.20%: mean 36.4667, sd 10.7251, half-width 4.3027 * 10.7251 / sqrt(3) = 26.642
    low, high = t_interval([0.2575, 0.3645, 0.4720])
    mean, sd = 0.364666667, math.sqrt(((0.2575 - 0.364666667) ** 2 + (0.3645 - 0.364666667) ** 2
                                       + (0.4720 - 0.364666667) ** 2) / 2)
    assert sd == pytest.approx(0.107251, abs=1e-6)
    assert (low, high) == pytest.approx((0.09824, 0.63109), abs=1e-5)
    assert (low + high) / 2 == pytest.approx(mean)
    with pytest.raises(ValueError, match="at least two"):
        t_interval([0.5])


def test_wsr_interval_over_seeds_is_clipped_and_one_seed_falls_back_to_wilson():
    three = [{"wsr_suspect": w, "n_verify": 2000} for w in (0.99, 1.0, 0.97)]  # mean 0.98667, sd 0.015275
    iv = wsr_interval(three)
    assert iv.method == "t" and iv.n == 3 and iv.high == 1.0  # 0.98667 + 0.0379 clipped at 100%
    assert iv.low == pytest.approx(0.98667 - 4.3027 * 0.015275 / math.sqrt(3), abs=1e-4)
    one = wsr_interval([{"wsr_suspect": 0.8, "n_verify": 10}])
    assert one.method == "wilson" and (one.low, one.high) == pytest.approx(wilson(8, 10))
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Wilson, z = 1.96: the textbook example
    assert wsr_interval([{"wsr_suspect": 0.8, "n_verify": None}]) is None  # one model, no set size: no interval
    assert wsr_interval([{"wsr_suspect": None}]) is None
    assert Z95 == pytest.approx(1.959964)


def _cell(retained: list[bool], wsr: list[float], seeds=(0, 1, 2), kind="extraction") -> CellSummary:
    cards = [make_card(defense="content", attack="soft_label", attack_kind=kind, seed=s, retained=r, wsr_suspect=w,
                       removed_cheaply=False if r else None)
             for s, r, w in zip(seeds, retained, wsr, strict=False)]
    return CellSummary("content", "soft_label", kind, tuple(seeds), cards)


def test_majority_verdict_with_its_votes():
    cell = _cell([True, False, True], [0.40, 0.20, 0.50])
    v = cell.votes()
    assert (v.agree, v.n, v.survived, v.tie) == (2, 3, True, False)
    assert votes_text(cell) == "✓ 2/3"
    removed = _cell([False, False, True], [0.1, 0.1, 0.5])
    assert votes_text(removed) == "✗ 2/3" and removed.survived is False


def test_a_tie_is_not_a_majority_so_ownership_is_not_provable():
    cell = _cell([True, False], [0.6, 0.1], seeds=(0, 1))
    v = cell.votes()
    assert cell.survived is False and (v.agree, v.n, v.tie) == (1, 2, True)
    assert votes_text(cell) == "✗ 1/2 tie"


def test_a_board_cell_says_mean_interval_votes_and_seeds_not_run():
    cell = _cell([True, False, True], [0.2575, 0.3645, 0.4720])
    assert board_cell_text(cell, True) == "36.5% [10, 63] ✓ 2/3"
    one = _cell([True], [0.5], seeds=(0, 1, 2))
    assert interval_text(one).endswith("¹") and board_cell_text(one, True).endswith("✓ 1/1 (2 not run)")
    assert board_cell_text(CellSummary("content", "soft_label", "extraction", (0,), []), True) == "·"

"""cells.csv: one row per card, a Wilson interval checked against hand values, verdict words, a pandas round trip."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest
from cardfactory import make_card

from leaderboard.export import COLUMNS, Z95, cells_csv, wilson
from leaderboard.summary import card_verdict


def test_wilson_against_hand_computed_values():
    # 8 of 10: p = 0.8, z^2 = 3.8415; centre (0.8 + 0.19207) / 1.38415 = 0.71674,
    # half 1.95996 / 1.38415 * sqrt(0.016 + 0.0096037) = 0.22658
    low, high = wilson(8, 10)
    assert (low, high) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    # 0 of 100: [0, z^2 / (n + z^2)] = [0, 3.8415 / 103.8415]
    assert wilson(0, 100) == pytest.approx((0.0, Z95 ** 2 / (100 + Z95 ** 2)))
    assert wilson(100, 100)[1] == 1.0 and wilson(100, 100)[0] == pytest.approx(1 - Z95 ** 2 / (100 + Z95 ** 2))
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_one_row_per_card_with_its_verdict_and_interval():
    cards = [
        make_card(attack="soft_label", attack_kind="extraction", wsr_suspect=0.8, n_verify=10, retained=True),
        make_card(attack="prune", attack_kind="removal", wsr_suspect=0.02, retained=False, removed_cheaply=True),
        make_card(attack="neural_cleanse", attack_kind="detection", detected=True, detected_target=3,
                  extras={"detection_correct": False}, retained=None, removed_cheaply=None),
        make_card(defense="none", attack="identity", p_value=None),
        make_card(attack="dfme", attack_kind="extraction", status="error"),
        make_card(attack="identity", p_value=1e-300),
    ]
    text = cells_csv(cards)
    df = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    assert tuple(df.columns) == COLUMNS and len(df) == len(cards)
    rows = {(r.defense, r.attack): r for r in df.itertuples()}
    soft = rows[("content", "soft_label")]
    assert (soft.verdict, soft.n_verify) == ("retained", "10")
    assert (float(soft.wsr_low), float(soft.wsr_high)) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    assert rows[("content", "prune")].verdict == "removed cheaply"
    assert rows[("content", "neural_cleanse")].verdict == "wrong class flagged"
    assert rows[("none", "identity")].wsr_low == "" and rows[("none", "identity")].verdict == ""
    assert rows[("content", "dfme")].verdict == "error" and rows[("content", "dfme")].error.startswith("RuntimeError")
    assert float(rows[("content", "identity")].p_value) == 1e-300  # six significant digits, not six decimals
    assert rows[("content", "soft_label")].card == "synthetic/small_cnn/content/soft_label/seed-0.json"


def test_the_csv_is_deterministic_and_reads_back_as_numbers():
    cards = [make_card(attack=a, attack_kind="extraction", seed=s) for a in ("b", "a") for s in (1, 0)]
    text = cells_csv(cards)
    assert text == cells_csv(list(reversed(cards)))
    df = pd.read_csv(io.StringIO(text))
    assert list(zip(df.attack, df.seed, strict=True)) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert df.wsr_suspect.dtype.kind == "f" and df.seed.dtype.kind == "i" and not math.isnan(df.wsr_low[0])


def test_the_label_rate_behind_a_verdict_and_the_embedding_time_come_from_the_extras():
    # a near-constant copy: 100% WSR but it gives the watermark's label to 99% of clean inputs, so removed
    card = make_card(attack="dfme", attack_kind="extraction", wsr_suspect=1.0, retained=False, device="cuda:X",
                     extras={"suspect_label_rate": 0.99, "victim_wall_s": 123.5, "victim_device": "cpu:y"})
    bare = make_card(attack="prune", attack_kind="removal", extras={})
    rows = {r["attack"]: r for r in csv.DictReader(io.StringIO(cells_csv([card, bare])))}
    assert (rows["dfme"]["suspect_label_rate"], rows["dfme"]["victim_wall_s"]) == ("0.99", "123.5")
    assert (rows["prune"]["suspect_label_rate"], rows["prune"]["victim_wall_s"]) == ("", "")
    # where the run ran and where its victim was trained, as recorded (blank when the card does not say)
    assert (rows["prune"]["device"], rows["prune"]["victim_device"]) == ("cpu", "")
    assert (rows["dfme"]["device"], rows["dfme"]["victim_device"]) == ("cuda:X", "cpu:y")


@pytest.mark.parametrize(("fields", "word", "page"), [
    (dict(retained=True), "retained", "✓ retained"),
    (dict(retained=False, removed_cheaply=False), "removed", "✗ removed"),
    (dict(retained=False, removed_cheaply=True), "removed cheaply", "✗ removed cheaply"),
    (dict(defense="none"), "", "—"),
    (dict(attack="neural_cleanse", attack_kind="detection", detected=False), "undetected", "✓ undetected"),
    (dict(attack="neural_cleanse", attack_kind="detection", detected=True, detected_target=0), "detected",
     "✗ detected"),
    (dict(attack="neural_cleanse", attack_kind="detection", detected=True, detected_target=3,
          extras={"detection_correct": False}), "wrong class flagged", "✓ wrong class flagged"),
    (dict(status="n/a"), "n/a", "n/a"),
    (dict(status="error"), "error", "ERR"),
])
def test_one_verdict_spelling_for_the_csv_the_seed_details_and_the_other_runs_page(fields, word, page):
    from leaderboard.html import _seed_verdict
    from leaderboard.studypages import render_other

    card = make_card(**fields)
    assert card_verdict(card) == word
    assert list(csv.DictReader(io.StringIO(cells_csv([card]))))[0]["verdict"] == word
    assert _seed_verdict(card) == page
    row = [line for line in render_other([card]).splitlines() if "`" + card["defense"] + "`" in line][0]
    assert f"| {page if word != 'error' else 'error'} |" in row

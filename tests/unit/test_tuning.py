"""The tuning protocol (docs/protocol.md): the victim-side gate and the declared selection rule, on
synthetic cards."""

from __future__ import annotations

import pandas as pd
import pytest
from cardfactory import make_card

from bench.registry import DEFENSES
from bench.tuning import (
    MAX_ACC_COST,
    MIN_WSR,
    TUNING_SEEDS,
    Grid,
    _row,
    gate,
    grid_labels,
    select,
    strength,
    tuning_report,
)


def _identity(defense: str, seed: int, acc: float, wsr: float | None, **extras) -> dict:
    card = make_card(defense=defense, seed=seed, profile="quick", clean_acc_victim=acc, clean_acc_suspect=acc,
                     wsr_victim=wsr, wsr_suspect=wsr)
    if defense == "none":
        card = make_card(defense="none", seed=seed, profile="quick", clean_acc_victim=acc, clean_acc_suspect=acc)
    card["extras"] = {"victim_info": extras} if extras else {}
    return card


def _frame(cards: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(cards)


def _with_control(*cards: dict, acc=0.88) -> pd.DataFrame:
    return _frame([_identity("none", s, acc, None) for s in TUNING_SEEDS] + list(cards))


def test_the_declared_numbers():
    assert TUNING_SEEDS == (100, 101) and MAX_ACC_COST == 0.02 and MIN_WSR == 0.90
    assert not set(TUNING_SEEDS) & {0, 1, 2}  # the board's seeds stay out-of-sample


def test_gate_means_over_the_tuning_seeds():
    df = _with_control(_identity("s", 100, 0.87, 0.95, wfpr_seen=0.1, wfpr_heldout=0.3),
                       _identity("s", 101, 0.85, 0.87, wfpr_seen=0.2, wfpr_heldout=0.1))
    r = gate(df, "s")
    assert r.acc == pytest.approx(0.86) and r.cost == pytest.approx(0.02) and r.wsr == pytest.approx(0.91)
    assert r.wfpr_seen == pytest.approx(0.15) and r.wfpr_heldout == pytest.approx(0.2)
    assert r.passes  # cost exactly at the limit passes; WSR 0.91 >= 0.90 although seed 101 alone is below
    assert r.per_seed[101] == (0.85, 0.88, 0.87)


@pytest.mark.parametrize("accs, wsrs, cost_ok, wsr_ok", [
    ((0.85, 0.85), (0.99, 0.99), False, True),  # 3 points of accuracy
    ((0.88, 0.88), (0.89, 0.90), True, False),  # WSR 0.895
    ((0.80, 0.80), (0.10, 0.10), False, False),
])
def test_gate_failures(accs, wsrs, cost_ok, wsr_ok):
    df = _with_control(*(_identity("s", s, a, w) for s, a, w in zip(TUNING_SEEDS, accs, wsrs, strict=True)))
    r = gate(df, "s")
    assert (r.passes_cost, r.passes_wsr, r.passes) == (cost_ok, wsr_ok, False)


def test_gate_is_incomplete_without_every_seed_or_the_control():
    df = _frame([_identity("none", 100, 0.88, None), _identity("s", 100, 0.88, 0.99), _identity("s", 101, 0.88, 0.99)])
    r = gate(df, "s")
    assert r.missing == (101,) and not r.complete and not r.passes


def test_gate_reads_identity_cards_only_and_ignores_other_profiles():
    attack = dict(_identity("s", 100, 0.1, 0.0), attack="soft_label", attack_kind="extraction")
    smoke = dict(_identity("s", 101, 0.1, 0.0), profile="smoke")
    df = _with_control(_identity("s", 100, 0.88, 0.99), _identity("s", 101, 0.88, 0.99), attack, smoke)
    r = gate(df, "s")
    assert r.passes and r.acc == pytest.approx(0.88)


def test_api_side_embedding_is_the_schemes_own_rule():
    df = _with_control(_identity("d", 100, 0.88, 0.0), _identity("d", 101, 0.88, 0.0))
    assert not gate(df, "d").passes_wsr
    r = gate(df, "d", embedding="api")
    assert r.wsr == 1.0 and r.api and r.passes
    row = _row(r, "`d`")  # per seed, the page says the model carries nothing and the API the mark
    assert "100: 88.00% / API (model 0.00%); 101: 88.00% / API (model 0.00%)" in row
    assert "100.00% (API, by construction)" in row


def test_strength_is_the_step_weighted_mean_over_the_stages():
    info = {"stage1": {"steps": 300, "kl_weight_mean": 0.01}, "stage2": {"steps": 100, "kl_weight_mean": 0.2}}
    assert strength(info, "kl_weight_mean") == pytest.approx((300 * 0.01 + 100 * 0.2) / 400)
    assert strength({"stage1": {"steps": 3}}, "kl_weight_mean") is None


def _point(label, value, acc, wsr, kl=None):
    cards = []
    for s in TUNING_SEEDS:
        extras = {"stage1": {"steps": 10, "kl_weight_mean": kl}} if kl is not None else {}
        cards.append(_identity(label, s, acc, wsr, **extras))
    return cards, value


def _grid(*points):
    cards = [c for cs, _ in points for c in cs]
    df = _with_control(*cards)
    return [gate(df, cs[0]["defense"], value=v, strength_field="kl_weight_mean") for cs, v in points]


def test_selection_takes_the_strongest_passing_point():
    pts = _grid(_point("k02", 0.02, 0.875, 0.97), _point("k05", 0.05, 0.87, 0.95), _point("k1", 0.1, 0.865, 0.91),
                _point("k2", 0.2, 0.85, 0.40), _point("auto", "auto", 0.87, 0.96, kl=0.07))
    pick, why = select(pts)
    assert pick.label == "k1" and not why.startswith("⚠")


def test_a_word_value_is_placed_by_the_weight_it_applied():
    pts = _grid(_point("k05", 0.05, 0.87, 0.95), _point("k1", 0.1, 0.80, 0.95),
                _point("auto", "auto", 0.87, 0.96, kl=0.08))
    assert select(pts)[0].label == "auto"  # 0.08 > 0.05, and 0.1 fails the accuracy gate
    tie = _grid(_point("k05", 0.05, 0.87, 0.95), _point("auto", "auto", 0.87, 0.96, kl=0.05))
    assert select(tie)[0].label == "k05"  # a tie goes to the number


def test_no_point_passes_then_the_accuracy_gate_gives_way_first():
    pts = _grid(_point("k05", 0.05, 0.84, 0.95), _point("k1", 0.1, 0.85, 0.93), _point("k2", 0.2, 0.86, 0.50))
    pick, why = select(pts)
    assert pick.label == "k1" and why.startswith("⚠") and "accuracy gate gave way" in why


def test_no_point_embeds_then_the_highest_wsr():
    pts = _grid(_point("k05", 0.05, 0.87, 0.50), _point("k1", 0.1, 0.80, 0.60))
    pick, why = select(pts)
    assert pick.label == "k1" and why.startswith("⚠") and "none embeds" in why


def test_selection_needs_complete_points():
    df = _with_control(_identity("k", 100, 0.88, 0.99))
    with pytest.raises(ValueError, match="wmbench tune"):
        select([gate(df, "k", value=0.1)])


def test_grid_labels_name_the_default_point_by_the_scheme():
    grid = DEFENSES.get("mea_defender").tuning_grid
    assert isinstance(grid, Grid) and grid.knob == "kl_weight"
    assert grid.values == (0.02, 0.05, 0.1, 0.2, 0.5, "auto")
    default = DEFENSES.create("mea_defender").config.kl_weight
    labels = dict(grid_labels("mea_defender", grid, DEFENSES))
    assert labels[default] == "mea_defender" and labels["auto"] == "mea_defender[kl_weight=auto]"
    assert all(DEFENSES.get(n).tuning_grid is None for n in DEFENSES.list("*") if n != "mea_defender")


def test_report_names_every_scheme_and_the_selection():
    grid = DEFENSES.get("mea_defender").tuning_grid
    cards = []
    for v, label in grid_labels("mea_defender", grid, DEFENSES):
        ok = v in (0.02, 0.05)
        cards += _point(label, v, 0.875 if ok else 0.80, 0.95, kl=0.03 if v == "auto" else None)[0]
    text, picks = tuning_report(_with_control(*cards), DEFENSES)
    for name in DEFENSES.list("*"):
        if name != "none":
            assert f"`{name}`" in text
    assert picks["mea_defender"][0] == 0.05  # auto applied 0.03 < 0.05
    assert "**kl_weight=0.05**" in text


def test_the_board_leaves_the_tuning_seeds_out_and_marks_a_failed_gate():
    from leaderboard.markdown import render_markdown
    from leaderboard.sections import sections
    from leaderboard.text import GATE_NOTE

    cards = [_identity("none", s, 0.88, None) for s in (0, *TUNING_SEEDS)]
    cards += [_identity("weak", s, 0.80, 0.05) for s in (0, *TUNING_SEEDS)]  # fails both gates
    cards += [_identity("good", s, 0.88, 0.99) for s in (0, *TUNING_SEEDS)]
    cards += [_identity("untuned", 0, 0.88, 0.99)]  # no tuning cards: no mark
    df = _frame(cards)
    df["path"] = ""
    sec = sections(df)
    (group,) = sec.boards
    assert group.seeds == (0,) and group.n_cards == 4  # the six tuning-seed cards are not on the board
    why = "accuracy -8.00 pts against none on the tuning seeds; victim WSR 5.00% on the tuning seeds"
    assert group.gate == {"weak": why}
    (tuning,) = [v for v in sec.studies if v.study.name == "tuning"]  # they are the tuning study
    assert tuning.n_cards == 6
    text = render_markdown(sec, "t")
    assert "| `weak` ⚠ |" in text and f"- `weak`: {why}" in text
    assert "`good` ⚠" not in text
    assert GATE_NOTE.split(":")[0].replace("_", "\\_") in text or "⚠ after a scheme" in text


def test_tune_report_only_writes_the_study_page(tmp_path, capsys):
    from bench.results import card_path, write_card
    from wmbench.cli import main

    grid = DEFENSES.get("mea_defender").tuning_grid
    cards = [_identity("none", s, 0.88, None) for s in TUNING_SEEDS]
    for v, label in grid_labels("mea_defender", grid, DEFENSES):
        cards += _point(label, v, 0.87 if v in (0.02, 0.05, 0.1) else 0.80, 0.95,
                        kl=0.04 if v == "auto" else None)[0]
    for c in cards:
        write_card(card_path(tmp_path, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    assert main(["tune", "--report-only", "--results", str(tmp_path), "--dataset", "synthetic"]) == 0
    page = (tmp_path / "reproductions" / "tuning.md").read_text()
    assert "**kl_weight=0.1**; the registered default is this point" in page
    assert page in capsys.readouterr().out

"""Result cards: validation, writing, loading, numbers stored as numbers."""

import json

import pytest

from bench.errors import CardError
from bench.results import card_path, load_results, read_card, validate_card, write_card


def test_cards_validate_write_load(tmp_path):
    from cardfactory import make_card

    card = make_card()
    path = card_path(tmp_path, card["dataset"], card["arch"], card["defense"], card["attack"], card["seed"])
    write_card(path, card)
    assert read_card(path) == card
    assert not list(path.parent.glob(".tmp-*"))
    df = load_results(tmp_path)
    assert len(df) == 1 and df.loc[0, "status"] == "ok"
    for bad, msg in [
        ({"wsr_suspect": 97.0}, "must be a fraction"),
        ({"status": "done"}, "status 'done' must be one of"),
        ({"seed": "0"}, "field seed must be int"),
        ({"retained": 1}, "field retained must be bool"),
        ({"bogus": 1}, "unknown field"),
    ]:
        with pytest.raises(CardError, match=msg):
            validate_card({**card, **bad})
    missing = dict(card)
    del missing["run_id"]
    with pytest.raises(CardError, match="missing field"):
        validate_card(missing)
    path.write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        read_card(path)


def test_card_json_has_numbers_not_strings(tmp_path):
    from cardfactory import make_card

    p = write_card(tmp_path / "seed-0.json", make_card())
    raw = json.loads(p.read_text())
    assert isinstance(raw["clean_acc_victim"], float)

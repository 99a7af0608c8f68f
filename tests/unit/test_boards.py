"""Declared boards and studies: the main board's schemes and columns, narrowing it for chunked runs, the
studies' patterns, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from bench.boards import BOARDS, STUDIES, Board, get_board, get_study, spec_match
from bench.errors import ConfigError, UnknownNameError
from bench.registry import ATTACKS, DEFENSES


def test_the_main_board_holds_every_registered_scheme_but_the_study_variants():
    main = get_board("main")
    schemes = main.schemes(DEFENSES)
    assert schemes[0] == "none" and len(schemes) == len(set(schemes))
    assert set(schemes) == set(DEFENSES.list()) - set(main.left_out)
    assert {"mea_defender", "mea_defender_official", "composite_backdoor", "dawn"} <= set(schemes)
    assert not {"mea_defender_no_eva", "mea_defender_ver_only"} & set(schemes)


def test_its_columns_are_every_attack_plus_the_chains_calibrated_nc_and_a_cross_architecture_copy():
    columns = get_board("main").columns(ATTACKS)
    assert columns[:len(ATTACKS.list())] == ATTACKS.list()
    assert {"soft_label>fine_tune", "soft_label>prune", "soft_label>neural_cleanse", "neural_cleanse[reference=true]",
            "soft_label[arch=vgg_like]"} <= set(columns)


def test_a_board_is_narrowed_for_chunks():
    defenses, attacks = get_board("main").select(DEFENSES, ATTACKS, "ewe", "soft_label*,neural_cleanse[reference=true]")
    assert defenses == "ewe"
    assert attacks.split(",") == ["soft_label", "soft_label>fine_tune", "soft_label>prune", "soft_label>neural_cleanse",
                                  "neural_cleanse[reference=true]", "soft_label[arch=vgg_like]"]


@pytest.mark.parametrize(("board", "defense", "attack", "message"), [
    (get_board("main"), "mea_defender_no_eva", "*", "is not on board 'main' (it belongs to a study)"),
    (get_board("main"), "*", "nothing_like_it", "no column of board 'main' matches 'nothing_like_it'"),
    (dataclasses.replace(get_board("main"), left_out=("mea_defender_no_ev",)), "*", "*",
     "leaves out 'mea_defender_no_ev', which is not a registered defense; did you mean mea_defender_no_eva,"),
    (dataclasses.replace(get_board("main"), extra_columns=("prune",)), "*", "*", "lists the column 'prune' twice"),
    (dataclasses.replace(get_board("main"), extra_columns=("prune[rat=1]",)), "*", "*", "did you mean rate"),
])
def test_bad_boards_and_selections_are_one_line(board: Board, defense, attack, message):
    with pytest.raises((ConfigError, UnknownNameError)) as err:
        board.select(DEFENSES, ATTACKS, defense, attack)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_board():
    assert "main" in BOARDS
    with pytest.raises(UnknownNameError, match="unknown board 'mian'; did you mean main"):
        get_board("mian")


def test_every_declared_study_names_registered_components():
    for study in STUDIES.values():
        study.validate(DEFENSES, ATTACKS)


def test_a_study_with_a_typo_is_one_line():
    bad = dataclasses.replace(get_study("pruning-rate"), attacks=("prune", "prnue[rate=*"))
    want = (r"^study 'pruning-rate': the column pattern 'prnue\[rate=\*' names 'prnue', which is not registered; "
            r"did you mean prune\? fix bench/boards.py$")
    with pytest.raises(ConfigError, match=want) as err:
        bad.validate(DEFENSES, ATTACKS)
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="unknown study 'tunning'; did you mean tuning"):
        get_study("tunning")


@pytest.mark.parametrize(("label", "pattern", "hit"), [
    ("mea_defender[kl_weight=0.02]", "mea_defender[kl_weight=*", True),
    ("mea_defender", "mea_defender[kl_weight=*", False),
    ("prune[rate=0.1]", "prune[rate=*", True),
    ("prune", "prune[rate=*", False),
    ("soft_label>prune", "*", True),
    ("content", "content[*", False),  # brackets are literal, not a character class
    ("c", "[abc]", False),
    ("nad", "na?", True),  # ? is one character, as in fnmatch
    ("nad", "n?", False),
])
def test_study_patterns_match_spec_labels(label, pattern, hit):
    assert spec_match(label, pattern) is hit


def test_a_card_belongs_to_a_study_by_scheme_column_seed_and_data():
    study = get_study("pruning-rate")
    card = {"defense": "content", "attack": "prune[rate=0.3]", "seed": 1, "dataset": "fashion-mnist",
            "arch": "small_cnn", "profile": "quick"}
    assert study.holds(card)
    assert not study.holds({**card, "seed": 100})  # the tuning seeds are never in a board study
    assert not study.holds({**card, "attack": "fine_tune"})

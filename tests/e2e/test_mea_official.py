"""``mea_defender_official`` is exactly ``mea_defender`` version 2, so that version's cards could move to it;
the move re-plans every card and refuses any whose configuration differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.config import config_to_dict
from bench.errors import WmbenchError
from bench.registry import DEFENSES
from bench.rehome import rehome_card, spec_for_config
from bench.results import iter_cards, read_card, write_card

RESULTS = Path(__file__).resolve().parents[2] / "results"

# mea_defender's defaults at version 2 (the configuration every card of that version records), written out
V2_DEFAULTS = {
    "anchor_batch": 32, "anchor_pairing": "index", "anchors_stage1": 600, "anchors_stage2": 1000,
    "aux_weight": 0.5, "balance": "mgda", "class_a": -1, "class_b": -1, "com_extra": 2.0, "com_extra_tenth": 12.0,
    "com_stage1": True, "com_target": True, "combination": True, "epochs": None, "jitter": 3,
    "layout": "top_bottom", "mgda_every": 10, "same_class_mix_rate": 0.0, "shake": True, "sim_weight": 1.0,
    "stage1_wm_rate": 0.01, "stage2_clean_rate": 0.45, "stage2_epochs": None, "stage2_eva_rate": 0.08,
    "stage2_lr_scale": 0.1, "stage2_share": 1 / 3, "stage2_wm_rate": 0.2, "target_class": -1, "verify_n": None,
    "wfpr_n": None,
}


def test_official_is_version_2_with_its_defaults():
    official = DEFENSES.create("mea_defender_official")
    assert type(official).version == "2"
    assert config_to_dict(official.config) == V2_DEFAULTS  # kl_weight=None is left out: v2 had no such field
    assert official.config.kl_weight is None
    assert "does not embed at this budget" in DEFENSES.get("mea_defender_official").describe()


def test_the_registered_default_differs_only_in_its_loss_weights():
    new, old = config_to_dict(DEFENSES.create("mea_defender").config), V2_DEFAULTS
    changed = {k for k in set(new) | set(old) if new.get(k, "absent") != old.get(k, "absent")}
    assert changed == {"balance", "aux_weight", "kl_weight", "com_extra", "com_extra_tenth"}
    assert (new["balance"], new["aux_weight"], new["com_extra"], new["com_extra_tenth"]) == ("fixed", 1.0, 0.0, 0.0)
    assert DEFENSES.get("mea_defender").version == "3"


def _official_cards():
    if not RESULTS.is_dir():
        pytest.skip("no committed results")
    return [(p, c) for p, c in iter_cards(RESULTS) if c["defense"].split("[")[0] == "mea_defender_official"]


def test_moved_cards_kept_their_configuration_and_say_where_they_came_from():
    cards = _official_cards()
    assert cards
    default = [(p, c) for p, c in cards if c["defense"] == "mea_defender_official"]
    assert {c["attack"] for _, c in default} >= {"identity", "soft_label", "hard_label"}
    for p, c in default:
        assert c["defense_config"] == V2_DEFAULTS, p
    moved = [c for _, c in cards if "moved_from" in c["extras"]]
    assert moved and all(c["extras"]["moved_from"]["defense"].startswith("mea_defender") for c in moved)
    assert all(c["defense_version"] == "2" for _, c in cards)


def test_every_committed_card_of_a_registered_scheme_is_where_its_configuration_plans_it(tmp_path):
    # a code change that altered a scheme's configuration would leave its published cards stale: re-plan each
    # default-config identity card and compare run id and path
    from bench.planning import plan_matrix
    from bench.settings import make_settings

    if not RESULTS.is_dir():
        pytest.skip("no committed results")
    plan = make_settings(dataset="fashion-mnist", profile="quick", results_dir=str(RESULTS))
    checked = 0
    for name in DEFENSES.list("*"):
        path = RESULTS / "fashion-mnist" / "small_cnn" / name / "identity" / "seed-0.json"
        if not path.exists():
            continue
        card = read_card(path)
        cell = plan_matrix(plan, name, "identity", [0], force=True).cells[0]
        assert (cell.run_id, Path(cell.card)) == (card["run_id"], path), name
        checked += 1
    assert checked >= 12


def _as_v2_card(tmp_path) -> tuple[Path, dict]:
    src = RESULTS / "fashion-mnist" / "small_cnn" / "mea_defender_official" / "identity" / "seed-0.json"
    if not src.exists():
        pytest.skip("no committed results")
    card = read_card(src)
    card["defense"] = "mea_defender"
    card["run_id"] = card["extras"].pop("moved_from")["run_id"]
    old = tmp_path / "fashion-mnist" / "small_cnn" / "mea_defender" / "identity" / "seed-0.json"
    write_card(old, card)
    return old, card


def test_rehome_moves_a_v2_card_to_the_run_id_the_runner_plans(tmp_path):
    from bench.planning import plan_matrix
    from bench.settings import make_settings

    old, card = _as_v2_card(tmp_path)
    new = rehome_card(old, tmp_path, rename={"mea_defender": "mea_defender_official"})
    assert not old.exists() and new == tmp_path / "fashion-mnist" / "small_cnn" / "mea_defender_official" / \
        "identity" / "seed-0.json"
    moved = read_card(new)
    plan = make_settings(dataset="fashion-mnist", profile="quick", results_dir=str(tmp_path))
    cell = plan_matrix(plan, "mea_defender_official", "identity", [0]).skipped[0]  # the runner counts it done
    assert moved["run_id"] == cell.run_id and moved["extras"]["moved_from"] == {"defense": "mea_defender",
                                                                                "run_id": card["run_id"]}
    assert {k: v for k, v in moved.items() if k not in ("defense", "run_id", "extras")} == \
        {k: v for k, v in card.items() if k not in ("defense", "run_id", "extras")}
    assert rehome_card(new, tmp_path) is None  # already at home


def test_rehome_refuses_another_configuration_or_version(tmp_path):
    old, card = _as_v2_card(tmp_path)
    with pytest.raises(WmbenchError, match="version"):  # mea_defender is version 3 now: re-run, not move
        rehome_card(old, tmp_path)
    card["defense_config"] = dict(card["defense_config"], aux_weight=0.7)
    write_card(old, card)
    new = rehome_card(old, tmp_path, rename={"mea_defender": "mea_defender_official"})
    assert read_card(new)["defense"] == "mea_defender_official[aux_weight=0.7]"  # a variant keeps its field
    shutil.rmtree(tmp_path / "fashion-mnist")
    # v2's KL shares the auxiliary weight (kl_weight None), which no spec of v3 can spell: that is why the
    # public code's weights got a component of their own
    with pytest.raises(WmbenchError, match="cannot express.*kl_weight"):
        spec_for_config("mea_defender", "mea_defender", V2_DEFAULTS, DEFENSES)


def test_rehome_gives_a_new_default_point_its_explicit_label():
    cfg = config_to_dict(DEFENSES.create("mea_defender", kl_weight=0.5).config)
    assert spec_for_config("mea_defender", "mea_defender", cfg, DEFENSES).label == "mea_defender[kl_weight=0.5]"
    assert json.dumps(cfg)  # plain JSON, as cards hold it

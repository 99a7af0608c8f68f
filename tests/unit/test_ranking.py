"""The ranked board: one rule (robustness over the same columns, ties by accuracy cost, shared ranks), the
schemes not ranked yet, and the README section ``wmbench leaderboard`` keeps in step and ``--check`` guards."""

from __future__ import annotations

from pathlib import Path

import pytest
from cardfactory import make_card

from bench.errors import WmbenchError
from bench.results import card_path, load_results, write_card
from leaderboard.check import check_leaderboard
from leaderboard.ranking import END, START, ranked_table, readme_section, standings, sync_readme
from leaderboard.render import render
from leaderboard.sections import sections

COLUMNS = {"ext": "extraction", "rem": "removal", "det": "detection", "ext[queries=10]": "extraction"}


def _card(defense: str, attack: str, *, retained: bool = True, acc: float = 0.9, seed: int = 0, **kw) -> dict:
    return make_card(defense=defense, attack=attack, attack_kind=COLUMNS.get(attack, "control"), seed=seed,
                     clean_acc_victim=acc, retained=retained, removed_cheaply=not retained and None,
                     wsr_suspect=0.9 if retained else 0.05, **kw)


def _write(root: Path, cards) -> Path:
    for c in cards:
        write_card(card_path(root, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    return root


def _scheme(name: str, survives: tuple[bool, bool], acc: float, columns=("ext", "rem")) -> list[dict]:
    cards = [_card(name, "identity", acc=acc)]
    cards += [_card(name, a, retained=ok, acc=acc) for a, ok in zip(columns, survives, strict=False)]
    return cards


@pytest.fixture
def group(tmp_path):
    cards = [make_card(defense="none", attack="identity", clean_acc_victim=0.9, seed=0)]
    cards += _scheme("strong", (True, True), acc=0.88)  # 2/2, cost 2 points
    cards += _scheme("cheap", (True, False), acc=0.895)  # 1/2, cost 0.5
    cards += _scheme("costly", (False, True), acc=0.85)  # 1/2, cost 5
    cards += _scheme("twin", (True, False), acc=0.895)  # 1/2, cost 0.5: ties with cheap
    cards += _scheme("partial", (True,), acc=0.9, columns=("ext",))  # rem not run: not ranked
    cards += _scheme("strong[rate=0.5]", (True, True), acc=0.9)  # a configured variant: full board only
    cards += [_card("strong", "ext[queries=10]", retained=False, acc=0.88)]  # a sweep point: not a ranking column
    sec = sections(load_results(_write(tmp_path / "results", cards)))
    assert not sec.declared  # synthetic cards: no declared board's cell, so an ad-hoc board of default configs
    (g,) = sec.boards
    return g


def test_robustness_first_then_cost_and_ties_share_a_rank(group):
    ranked, unranked = standings(group)
    assert [(rank, s.row.name, s.survived, s.judged) for rank, s in ranked] == [
        (1, "strong", 2, 2), (2, "cheap", 1, 2), (2, "twin", 1, 2), (4, "costly", 1, 2)]
    assert [s.row.name for s in unranked] == ["partial", "strong[rate=0.5]"] and unranked[0].judged == 1


def test_the_table_says_what_is_not_ranked_and_how_many_seeds_a_verdict_rests_on(group):
    lines = ranked_table(group)
    assert lines[2] == ("| 1 | `strong` | — | -2.0 pts | 95.0% | 2/2 | ext 90.0% ✓ 1/1 | rem 90.0% ✓ 1/1 | — | — "
                        "| 1 of 1 |")
    assert not any("queries=10" in line for line in lines)  # a configured column is not on an ad-hoc board
    assert lines[-4].startswith("| — | `partial` |") and "| 1/1 (1 not run) |" in lines[-4]
    assert lines[-3].startswith("| — | `strong[rate=0.5]` |")
    assert lines[-1] == ("Not ranked: `partial` (1 of 2 columns judged), `strong[rate=0.5]` (a configured variant: "
                         "the ranking compares registered schemes at their defaults).")


def test_readme_section_is_written_between_the_markers_and_checked(tmp_path, group):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{START}\nstale\n{END}\n\nafter\n", encoding="utf-8")
    assert sync_readme(readme, [group], write=False).startswith(f"{readme}: the ranked board differs")
    sync_readme(readme, [group])
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\nbefore\n\n" + readme_section([group])) and text.endswith(f"{END}\n\nafter\n")
    assert sync_readme(readme, [group], write=False) is None


def test_a_readme_without_markers_is_left_alone_and_broken_markers_are_one_line(tmp_path, group):
    plain = tmp_path / "plain.md"
    plain.write_text("no board here\n", encoding="utf-8")
    sync_readme(plain, [group])
    assert plain.read_text(encoding="utf-8") == "no board here\n"
    broken = tmp_path / "broken.md"
    broken.write_text(f"{END}\n{START}\n", encoding="utf-8")
    with pytest.raises(WmbenchError, match="markers are broken"):
        sync_readme(broken, [group])


def test_check_fails_on_a_stale_readme_board(tmp_path):
    results = _write(tmp_path / "results", [make_card(defense="none", attack="identity")]
                     + _scheme("strong", (True, True), acc=0.88))
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n", encoding="utf-8")
    render(results, tmp_path / "leaderboard", readme=readme)
    assert check_leaderboard(results, tmp_path / "leaderboard", readme=readme) == []
    readme.write_text(readme.read_text(encoding="utf-8").replace("| 2/2 |", "| 1/2 |"), encoding="utf-8")
    (problem,) = check_leaderboard(results, tmp_path / "leaderboard", readme=readme)
    assert "ranked board differs" in problem and "| 2/2 |" in problem


def test_the_declared_board_holds_its_schemes_and_columns_and_leaves_ablations_to_their_study(tmp_path):
    where = {"dataset": "fashion-mnist", "arch": "small_cnn", "profile": "quick"}  # the main board's
    cards = [make_card(defense="none", attack="identity", **where)]
    for name in ("content", "mea_defender_no_eva"):
        cards += [make_card(defense=name, attack=a, attack_kind=k, **where)
                  for a, k in (("identity", "control"), ("soft_label", "extraction"), ("prune", "removal"))]
    sec = sections(load_results(_write(tmp_path / "results", cards)))
    (g,) = sec.boards
    assert sec.declared and g.board == "main" and g.seeds == (0, 1, 2)
    assert "mea_defender_no_eva" not in g.defenses and "unrelated" in g.defenses  # every scheme, run or not
    assert "soft_label[arch=vgg_like]" in g.attacks and g.kinds["soft_label>prune"] == "extraction"
    assert g.cells[("content", "soft_label")].missing_seeds == (1, 2)  # expected at every board seed
    ranked, unranked = standings(g)
    assert ranked == [] and [s.row.name for s in unranked][0] == "content"
    expected = len(g.defenses) * len(g.attacks) * 3  # every cell at every board seed; 4 of them have a card
    assert ranked_table(g)[-1] == (f"Provisional: {expected - 4} of the board's {expected} cell-seeds are not run "
                                   "yet. Until they are, a row's verdicts rest on the seeds in its Seeds column, "
                                   "and ranks may change.")
    study = next(v for v in sec.studies if v.study.name == "mea-defender")
    assert "mea_defender_no_eva" in study.groups[0].defenses
    assert sec.other == []


def test_the_page_says_which_verdicts_the_other_seeds_changed(tmp_path):
    from leaderboard.ranking import flips_text, seed_flips

    where = {"dataset": "fashion-mnist", "arch": "small_cnn", "profile": "quick"}
    cards = [make_card(defense="none", attack="identity", seed=s, **where) for s in (0, 1, 2)]
    for s, kept in zip((0, 1, 2), (False, True, True), strict=True):  # seed 0 alone: removed; majority: kept
        cards.append(make_card(defense="content", attack="soft_label", attack_kind="extraction", seed=s,
                               retained=kept, wsr_suspect=0.6 if kept else 0.1, removed_cheaply=False, **where))
    for s in (0, 1, 2):  # the same verdict on every seed: no flip
        cards.append(make_card(defense="content", attack="prune", attack_kind="removal", seed=s, **where))
    cards.append(make_card(defense="content", attack="fine_tune", attack_kind="removal", seed=0, **where))  # 1 seed
    (g,) = sections(load_results(_write(tmp_path / "results", cards))).boards
    full, flips = seed_flips(g)
    assert full == 2 and [(c.attack, alone) for c, alone in flips] == [("soft_label", False)]
    assert flips_text(g) == ("Seeds matter: of the 2 cells judged on all 3 seeds, 1 have a majority verdict other "
                             "than seed 0's alone: content × soft_label (✗ → ✓ 2/3).")


def test_a_watermark_served_by_the_api_says_so_in_the_victim_column(tmp_path):
    from leaderboard.text import victim_wsr_text

    where = {"dataset": "fashion-mnist", "arch": "small_cnn", "profile": "quick"}
    cards = [make_card(defense="none", attack="identity", **where),
             make_card(defense="dawn", attack="identity", wsr_victim=0.0, wsr_suspect=0.0, retained=False, **where),
             make_card(defense="content", attack="identity", wsr_victim=1.0, wsr_suspect=1.0, **where)]
    (g,) = sections(load_results(_write(tmp_path / "results", cards))).boards
    rows = {r.name: r for r in g.defense_rows}
    assert victim_wsr_text("dawn", rows["dawn"].victim_wsr) == "served by the API (model 0.0%)"
    assert victim_wsr_text("content", rows["content"].victim_wsr) == "100.0%"

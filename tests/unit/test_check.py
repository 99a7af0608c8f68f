"""``wmbench leaderboard --check``: the published leaderboard must be exactly what its cards render to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cardfactory import make_card

from bench.errors import CardError
from bench.results import card_path, write_card
from leaderboard.check import check_leaderboard
from leaderboard.render import render
from wmbench.cli import main


def _publish(tmp_path: Path) -> tuple[Path, Path]:
    results, out = tmp_path / "results", tmp_path / "board"
    cards = [
        make_card(defense="none", clean_acc_victim=0.88, clean_acc_suspect=0.88),
        make_card(wsr_victim=1.0, wsr_suspect=1.0),
        make_card(attack="soft_label", attack_kind="extraction", queries=3000, epochs=3, wsr_suspect=0.42,
                  clean_acc_suspect=0.86),
    ]
    for c in cards:
        write_card(card_path(results, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    render(results, out)
    return results, out


def _card(results: Path, attack: str = "soft_label") -> Path:
    (path,) = results.rglob(f"{attack}/seed-0.json")
    return path


def test_a_fresh_render_matches(tmp_path: Path):
    results, out = _publish(tmp_path)
    assert check_leaderboard(results, out) == []
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--check"]) == 0


def test_a_hand_edited_card_fails_the_check(tmp_path: Path, capsys):
    results, out = _publish(tmp_path)
    path = _card(results)
    card = json.loads(path.read_text())
    card["wsr_suspect"] = 0.95  # still a valid card: only the re-render can tell
    path.write_text(json.dumps(card))
    problems = check_leaderboard(results, out)
    assert any("LEADERBOARD.md" in p and "differs" in p for p in problems)
    # the CSV's difference names the card and the field
    (csv_problem,) = [p for p in problems if "cells.csv" in p]
    assert ("card synthetic/small_cnn/content/soft_label/seed-0.json: wsr_suspect is '0.42' in the published CSV, "
            "'0.95' from the card") in csv_problem
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "re-render it with `wmbench leaderboard" in err


def test_a_flipped_verdict_fails_even_after_a_re_render(tmp_path: Path):
    results, out = _publish(tmp_path)
    path = _card(results)
    card = json.loads(path.read_text())
    assert card["retained"] is True
    card["retained"], card["removed_cheaply"] = False, True  # "the attack removed it", by hand
    path.write_text(json.dumps(card))
    render(results, out)  # the leaderboard now matches the edited card
    problems = check_leaderboard(results, out)
    assert problems == [f"{path}: edited? retained is False, but its numbers give True; "
                        "re-score it (`wmbench run --force` on its cell)"]
    # a card's own numbers decide: a WSR within the threshold of the label rate is no retained watermark
    card.update(retained=True, removed_cheaply=False, extras={**card["extras"], "suspect_label_rate": 0.2})
    path.write_text(json.dumps(card))
    render(results, out)
    assert any("retained is True, but its numbers give False" in p for p in check_leaderboard(results, out))


def test_a_detection_flag_removed_by_hand_fails_even_after_a_re_render(tmp_path: Path):
    results, out = _publish(tmp_path)
    card = make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                     removed_cheaply=None, detected=True, detected_target=0, extras={"detection_correct": True})
    path = card_path(results, card["dataset"], card["arch"], card["defense"], card["attack"], card["seed"])
    write_card(path, card)
    render(results, out)
    assert check_leaderboard(results, out) == []
    card["detected"] = False  # "the detector missed it", by hand
    path.write_text(json.dumps(card))
    render(results, out)
    assert check_leaderboard(results, out) == [
        f"{path}: edited? detected is False, but it records a flag (detected_target 0, detection_correct True, "
        "detected_pair None); "
        "re-score it (`wmbench run --force` on its cell)"]


def test_a_hand_edited_leaderboard_fails_the_check(tmp_path: Path):
    results, out = _publish(tmp_path)
    md = out / "LEADERBOARD.md"
    md.write_text(md.read_text().replace("42.0", "52.0"))
    (problem,) = check_leaderboard(results, out)
    assert "LEADERBOARD.md: differs" in problem and "line" in problem


def test_missing_and_stale_figures_are_named(tmp_path: Path):
    results, out = _publish(tmp_path)
    (out / "figures" / "wsr_heatmap.png").unlink()
    (out / "figures" / "old.png").write_bytes(b"\x89PNG")
    problems = check_leaderboard(results, out)
    assert any("wsr_heatmap.png: missing" in p for p in problems)
    assert any("old.png: stale" in p for p in problems)


def test_study_pages_are_checked_too(tmp_path: Path):
    results, out = _publish(tmp_path)
    pages = sorted(p.name for p in (out / "studies").glob("*.md"))
    assert pages == ["detection.md", "other-runs.md"]
    page = out / "studies" / "detection.md"
    page.write_text(page.read_text(encoding="utf-8").replace("100.0%", "52.0%"), encoding="utf-8")
    (out / "studies" / "old-study.md").write_text("gone\n", encoding="utf-8")
    (out / "studies" / "other-runs.md").unlink()
    problems = check_leaderboard(results, out)
    assert any("detection.md: differs" in p and "52.0%" in p for p in problems)
    assert any("old-study.md: stale" in p for p in problems)
    assert any("other-runs.md: missing" in p for p in problems)


def test_a_card_at_the_wrong_path_is_named(tmp_path: Path):
    results, out = _publish(tmp_path)
    path = _card(results)
    moved = path.parent.parent / "hard_label" / "seed-0.json"
    moved.parent.mkdir()
    path.rename(moved)
    problems = check_leaderboard(results, out)
    assert any("hard_label" in p and "belongs at" in p for p in problems)


def test_an_invalid_card_is_a_one_line_error(tmp_path: Path, capsys):
    results, out = _publish(tmp_path)
    path = _card(results)
    card = json.loads(path.read_text())
    card["wsr_suspect"] = 1.5
    path.write_text(json.dumps(card))
    with pytest.raises(CardError, match="wsr_suspect"):
        check_leaderboard(results, out)
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--check"]) == 2
    assert "wsr_suspect" in capsys.readouterr().err


def test_no_published_leaderboard_says_how_to_make_one(tmp_path: Path):
    results, _ = _publish(tmp_path)
    with pytest.raises(CardError, match="wmbench leaderboard --out"):
        check_leaderboard(results, tmp_path / "nowhere")


def test_a_card_from_an_older_component_version_is_stale(tmp_path: Path):
    from bench.registry import ATTACKS, DEFENSES
    from leaderboard.check import stale_versions

    content_v, soft_v = str(DEFENSES.get("content").version), str(ATTACKS.get("soft_label").version)
    fine_v = str(ATTACKS.get("fine_tune").version)
    assert stale_versions(make_card(defense="content", defense_version=content_v, attack="soft_label",
                                    attack_version=soft_v)) is None
    old = make_card(defense="content", defense_version="0", attack="soft_label", attack_version=soft_v)
    assert stale_versions(old) == f"defense content v0 (registered: v{content_v})"
    chain = make_card(defense="content[rate=0.1]", defense_version=content_v,
                      attack="soft_label>fine_tune[mode=ftll]", attack_version=f"{soft_v}+0")
    assert stale_versions(chain) == f"attack fine_tune v0 (registered: v{fine_v})"
    swept = make_card(defense="content[rate=0.1,0.2]", defense_version="0", attack="identity")
    assert stale_versions(swept).startswith("defense content v0")
    unknown = make_card(defense="my_plugin_scheme", defense_version="7", attack="soft_label", attack_version=soft_v)
    assert stale_versions(unknown) is None  # not registered here: not judged

    results, out = _publish(tmp_path)
    path = _card(results)
    card = json.loads(path.read_text())
    card["defense_version"] = "0"
    path.write_text(json.dumps(card))
    render(results, out)  # the leaderboard matches its cards, but one card describes code that is gone
    (problem,) = check_leaderboard(results, out)
    assert "stale, made by defense content v0" in problem and "re-run its cell" in problem


def test_a_difference_deep_in_a_long_line_is_shown():
    from leaderboard.text import first_difference

    head = "| `scheme` | " + "88.1% | " * 20
    text = first_difference(f"{head}12.5% ✓ |\nsame\n".encode(), f"{head}92.5% ✓ |\nsame\n".encode())
    assert text.startswith("line 1: published '…") and "92.5% ✓" in text and "12.5% ✓" in text
    assert first_difference(b"a\n", b"a\nb\n") == "2 lines published, 1 rendered"


def _redraw(out: Path, name: str, *, version: str | None = None, edit=None) -> None:
    """Make the published ``figures/<name>`` look drawn by another matplotlib (other version, other pixels)."""
    record_path = out / "figures" / f"{name}.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if version is not None:
        record["matplotlib"] = version
    if edit is not None:
        edit(record["drawn"])
    record_path.write_text(json.dumps(record), encoding="utf-8")
    png = out / "figures" / f"{name}.png"
    png.write_bytes(png.read_bytes() + b"other pixels")


def test_figures_are_checked_by_what_they_draw_across_matplotlib_versions(tmp_path: Path):
    results, out = _publish(tmp_path)
    _redraw(out, "wsr_heatmap", version="0.0-another")
    assert check_leaderboard(results, out) == []  # other pixels, same drawing: not a failure


def test_a_figure_that_draws_other_data_fails_whatever_the_version(tmp_path: Path):
    results, out = _publish(tmp_path)

    def relabel(drawn):
        drawn["axes"][0]["yticklabels"][0] = "someone_else"

    _redraw(out, "wsr_heatmap", version="0.0-another", edit=relabel)
    (problem,) = check_leaderboard(results, out)
    assert "wsr_heatmap.json" in problem and "draws other data" in problem and "someone_else" in problem


def test_a_figure_whose_left_title_changed_fails(tmp_path: Path):
    results, out = _publish(tmp_path)
    record = json.loads((out / "figures" / "wsr_heatmap.json").read_text(encoding="utf-8"))
    left, centre, right = record["drawn"]["axes"][0]["title"]
    assert left  # the heatmap's title is drawn on the left

    def retitle(drawn):
        drawn["axes"][0]["title"][0] = "a title nobody drew"

    _redraw(out, "wsr_heatmap", version="0.0-another", edit=retitle)
    (problem,) = check_leaderboard(results, out)
    assert "draws other data" in problem and "a title nobody drew" in problem


def test_with_the_same_matplotlib_the_png_bytes_are_compared(tmp_path: Path):
    results, out = _publish(tmp_path)
    png = out / "figures" / "wsr_heatmap.png"
    png.write_bytes(png.read_bytes() + b"x")
    (problem,) = check_leaderboard(results, out)
    assert "wsr_heatmap.png" in problem and "bytes published" in problem

import pytest

from bench import reproduce
from bench.errors import UnknownNameError
from bench.registry import DuplicateNameError
from bench.reproduce import (
    Ablation,
    Reproduction,
    Row,
    SchemeRow,
    get_reproduction,
    list_reproductions,
    register_reproduction,
    run_reproduction,
)
from bench.settings import make_settings
from reproductions.mea_defender import explain_reproduction


def test_reproduction_table_on_synthetic(tmp_path, monkeypatch):
    rep = Reproduction(
        name="toy", title="toy row", source="nowhere", dataset="synthetic", defense="content",
        rows=(Row("victim", "identity", 0.9, 1.0), Row("KD", "soft_label", 0.8, 0.5),
              Row("future", "no_such_attack_yet", 0.7, 0.4)),
    )
    monkeypatch.setitem(reproduce.REPRODUCTIONS, "toy", rep)
    plan = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                     cache_dir=str(tmp_path / "c"), device="cpu")
    text, path = run_reproduction("toy", plan, [0], progress=False)
    assert path.read_text() == text
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert len(lines) == 4  # header + three rows
    victim = lines[1].split("|")
    assert victim[3].strip() == "90.00%" and victim[5].strip() == "100.00%"
    assert victim[4].strip().endswith("%") and victim[6].strip().endswith("%")
    assert "no_such_attack_yet (not implemented yet)" in lines[3]
    assert "--profile test --seeds 0" in text


def test_mea_reproduction_explains_where_the_loss_puts_the_watermark(tmp_path, monkeypatch):
    rep = Reproduction(
        name="toy-mea", title="toy MEA row", source="nowhere", dataset="synthetic", defense="mea_defender_official",
        rows=(Row("victim", "identity", 0.9, 1.0),), explain=explain_reproduction,
    )
    monkeypatch.setitem(reproduce.REPRODUCTIONS, "toy-mea", rep)
    plan = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                     cache_dir=str(tmp_path / "c"), device="cpu")
    text, _ = run_reproduction("toy-mea", plan, [0], progress=False)
    assert "## Where the combination loss puts a watermark" in text
    section = text.split("## Where the combination loss puts a watermark")[1]
    first, second = section.split("The loss's answer beside the measurement")
    rows = [ln.split("|")[1:-1] for ln in first.splitlines() if ln.startswith("| 0 |")]
    # the clean victim's and the MEA victim's source outputs, at the weights of both stages
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        ("`none` victim", "stage 1"), ("`none` victim", "stage 2"),
        ("`mea_defender_official` victim", "stage 1"), ("`mea_defender_official` victim", "stage 2")]
    for r in rows:
        w, c, ratio = (float(r[i]) for i in (3, 4, 5))
        assert ratio == pytest.approx(w / c, abs=1e-4) and c >= 2.0  # the fixed extra weight is 2
        assert 0 < float(r[9].strip().rstrip("%")) < 100
    # every MEA variant carded with the target inside its KL: the prediction beside the measured WSR
    checked = [ln.split("|")[1:-1] for ln in second.splitlines() if ln.startswith("| 0 |")]
    assert len(checked) == 1 and checked[0][2].strip() == "stage 2"
    assert checked[0][6].strip().endswith("%")
    # in advance, from the clean victim's sources (in the cache: the reproduction trains `none` too)
    assert float(checked[0][7]) >= 0 and checked[0][8].strip().endswith(")")
    # and a picture of it beside the table
    figure = tmp_path / "r" / "reproductions" / "toy-mea-prediction.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({figure.name})" in text
    # the rerun from the cache trains nothing and writes the same analysis
    again, _ = run_reproduction("toy-mea", plan, [0], progress=False)
    assert again.split("## Where the combination loss puts a watermark")[1] == section


def test_ablation_table_from_cards_over_seeds(tmp_path, monkeypatch):
    rep = Ablation(name="toy-ablation", title="toy ablation", source="nowhere", dataset="synthetic",
                   rows=(SchemeRow("paper row", "content", (0.8, 1.0), (0.79, 0.5)),
                         SchemeRow("ours", "noise", None, None)),
                   attacks=("soft_label",), note="a note")
    monkeypatch.setitem(reproduce.REPRODUCTIONS, "toy-ablation", rep)
    plan = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                     cache_dir=str(tmp_path / "c"), device="cpu")
    text, path = run_reproduction("toy-ablation", plan, [0, 1], progress=False)
    assert path.name == "toy-ablation.md" and path.read_text() == text and "a note" in text
    rows = [ln.split("|")[1:-1] for ln in text.splitlines() if ln.startswith("| paper row") or ln.startswith("| ours")]
    assert len(rows) == 2
    paper = [c.strip() for c in rows[0]]
    assert paper[2] == "80.00% / 100.00%" and paper[5] == "79.00% / 50.00%"
    assert " ± " in paper[3] and " ± " in paper[4] and " ± " in paper[7]  # two seeds: mean ± sd
    assert paper[8] in ("0/2", "1/2", "2/2")
    assert [c.strip() for c in rows[1]][2] == "—"
    from bench.results import load_results

    cards = load_results(tmp_path / "r")
    wsr = cards[(cards.defense == "content") & (cards.attack == "soft_label")].wsr_suspect
    assert paper[7].startswith(f"{100 * wsr.mean():.2f} ± {100 * wsr.std():.2f}")


def test_the_pinned_reproductions_register_on_import():
    import reproductions  # noqa: F401

    names = [r.name for r in list_reproductions()]
    assert names[:2] == ["mea-defender-fmnist", "mea-defender-ablation"]  # the order `--list` prints
    fmnist = get_reproduction("mea-defender-fmnist")
    assert fmnist.defense == "mea_defender_official" and fmnist.explain is explain_reproduction
    assert isinstance(get_reproduction("mea-defender-ablation"), Ablation)


def test_unknown_reproduction_is_one_line_with_a_suggestion(monkeypatch):
    monkeypatch.setattr(reproduce, "REPRODUCTIONS", {})
    with pytest.raises(UnknownNameError, match="^unknown reproduction 'toy'; none is registered$"):
        get_reproduction("toy")
    toy = Reproduction(name="toy-row", title="toy", source="nowhere", dataset="synthetic", defense="content",
                       rows=(Row("victim", "identity", 0.9, 1.0),))
    assert register_reproduction(toy) is toy and register_reproduction(toy) is toy  # again: a no-op
    with pytest.raises(UnknownNameError) as err:
        get_reproduction("toy-rwo")
    assert str(err.value) == "unknown reproduction 'toy-rwo'; did you mean toy-row? choose one of toy-row"
    with pytest.raises(DuplicateNameError, match="'toy-row' is already registered"):
        register_reproduction(Reproduction(name="toy-row", title="another", source="", dataset="synthetic",
                                           defense="none", rows=()))

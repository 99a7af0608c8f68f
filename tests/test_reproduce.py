from bench import reproduce
from bench.reproduce import Reproduction, Row, run_reproduction
from bench.runner import make_plan


def test_reproduction_table_on_synthetic(tmp_path, monkeypatch):
    rep = Reproduction(
        name="toy", title="toy row", source="nowhere", dataset="synthetic", defense="content",
        rows=(Row("victim", "identity", 0.9, 1.0), Row("KD", "soft_label", 0.8, 0.5),
              Row("future", "no_such_attack_yet", 0.7, 0.4)),
    )
    monkeypatch.setitem(reproduce.REPRODUCTIONS, "toy", rep)
    plan = make_plan(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
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

"""The leaderboard is a pure function of the cards: golden renders, determinism, status looks, numbers.

Regenerate the goldens after an intended change with
``WMBENCH_UPDATE_GOLDEN=1 pytest tests/unit/test_leaderboard.py -k golden`` (it writes them and fails on
purpose), review the diff, then re-run without the variable.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import pytest
from cardfactory import make_card

from bench.errors import CardError, WmbenchError
from bench.results import card_path, load_results, validate_card, write_card
from leaderboard import render
from leaderboard.sections import summarize
from leaderboard.summary import Votes

GOLDEN = Path(__file__).parent / "golden"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OOM = (
    "RuntimeError: CUDA out of memory while fine-tuning <layer 'fc'> & co | "
    "tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
)
EXTRACTION = {"attack": "soft_label", "attack_kind": "extraction", "queries": 20000, "epochs": 10}


def write_cards(root: Path, cards) -> Path:
    for c in cards:
        write_card(card_path(root, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    return root


def golden_cards() -> list[dict]:
    """none/content/noise x identity/soft_label/...: an error, n/a cells, missing cells, two seeds."""
    return [
        make_card(defense="none", clean_acc_victim=0.880, clean_acc_suspect=0.880, wall_s=0.5),
        make_card(defense="none", seed=1, clean_acc_victim=0.884, clean_acc_suspect=0.884, wall_s=0.5),
        make_card(
            defense="none",
            clean_acc_victim=0.880,
            clean_acc_suspect=0.852,
            fidelity=0.91,
            wall_s=12.3,
            **EXTRACTION,
        ),
        make_card(
            defense="none",
            attack="neural_cleanse",
            attack_kind="detection",
            status="n/a",
            error="nothing to detect: the defense has no watermark",
        ),
        make_card(
            clean_acc_victim=0.871,
            clean_acc_suspect=0.871,
            wsr_victim=0.97,
            wsr_suspect=0.97,
            wsr_null=0.06,
            p_value=1.2e-50,
            wall_s=0.6,
        ),
        make_card(
            seed=1,
            clean_acc_victim=0.869,
            clean_acc_suspect=0.869,
            wsr_victim=0.95,
            wsr_suspect=0.95,
            wsr_null=0.08,
            p_value=3.4e-45,
            wall_s=0.7,
        ),
        make_card(
            clean_acc_victim=0.871,
            clean_acc_suspect=0.850,
            fidelity=0.9,
            wsr_victim=0.97,
            wsr_suspect=0.12,
            wsr_null=0.10,
            p_value=0.31,
            retained=False,
            removed_cheaply=True,
            wall_s=13.1,
            **EXTRACTION,
        ),
        make_card(attack="fine_tune", attack_kind="removal", status="error", error=OOM),
        # a second scheme run only under the control attack, and n/a for fine-tuning
        make_card(defense="noise", wsr_victim=0.64, wsr_suspect=0.64, wsr_null=0.21, p_value=2.5e-9),
        make_card(
            defense="noise",
            attack="fine_tune",
            attack_kind="removal",
            status="n/a",
            error="the scheme serves its watermark from the API; nothing to fine-tune",
        ),
        make_card(
            attack="neural_cleanse",
            attack_kind="detection",
            clean_acc_victim=0.871,
            clean_acc_suspect=None,
            fidelity=None,
            wsr_victim=0.97,
            wsr_suspect=None,
            wsr_null=None,
            p_value=None,
            retained=None,
            removed_cheaply=None,
            detected=False,
            wall_s=40.2,
        ),
    ]


@pytest.fixture
def golden_results(tmp_path: Path) -> Path:
    return write_cards(tmp_path / "results", golden_cards())


def assert_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def test_make_card_is_valid_and_follows_the_defense():
    validate_card(make_card())
    clean = make_card(defense="none")
    assert clean["has_watermark"] is False and clean["wsr_suspect"] is None and clean["retained"] is None
    err = make_card(status="error")
    assert err["error"] and err["clean_acc_victim"] is None
    with pytest.raises(CardError):
        make_card(wsr_suspect=1.5)


GOLDEN_KEYS = {"markdown", "html", "csv", "heatmap", "cost", "other", "study:detection"}


def test_golden_render(golden_results: Path, tmp_path: Path):
    """Every page (the board, the study pages, other runs) and the CSV, byte for byte."""
    out = tmp_path / "out"
    paths = render(golden_results, out)
    assert set(paths) == GOLDEN_KEYS
    assert paths["heatmap"] == out / "figures" / "wsr_heatmap.png"
    assert paths["cost"] == out / "figures" / "cost_vs_wsr.png"
    assert_png(paths["heatmap"])
    assert_png(paths["cost"])
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(paths.values()) if p.suffix != ".png"}
    if os.environ.get("WMBENCH_UPDATE_GOLDEN") == "1":  # regenerating is never a pass: review, then re-run
        for old in GOLDEN.rglob("*"):
            if old.is_file():
                old.unlink()
        for name, got in files.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(got)
        pytest.fail("goldens regenerated; review `git diff tests/unit/golden` and re-run without WMBENCH_UPDATE_GOLDEN")
    assert sorted(files) == sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file())
    for name, got in files.items():
        golden = GOLDEN / name
        assert got == golden.read_bytes(), f"{name} differs from {golden}; if intended, regenerate the golden"


@pytest.mark.parametrize(
    ("cards", "keys"),
    [
        ("golden", GOLDEN_KEYS),
        ("sweeps", {"markdown", "html", "csv", "heatmap", "cost", "other", "study:query-budget",
                    "study:query-budget:queries", "study:query-budget:temperature", "study:pruning-rate",
                    "study:pruning-rate:rate", "study:extraction-settings", "study:extraction-settings:queries"}),
    ],
)
def test_render_is_deterministic(cards: str, keys: set[str], tmp_path: Path):
    """Byte-identical outputs, every page and figure included, for the same cards (the sweep cards draw every
    sweep figure of their studies: queries, pruning rate and temperature)."""
    made = golden_cards() if cards == "golden" else sweep_cards() + prune_cards()
    root = write_cards(tmp_path / "results", made)
    a = render(root, tmp_path / "a")
    b = render(root, tmp_path / "b")
    assert set(a) == set(b) == keys
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_render_has_no_timestamps_or_paths(golden_results: Path, tmp_path: Path):
    paths = render(golden_results, tmp_path / "out", title="My board")
    for key in ("markdown", "html"):
        text = paths[key].read_text(encoding="utf-8")
        assert "2024-01-01" not in text  # created_utc of the cards
        assert str(tmp_path) not in text
        assert "My board" in text


def test_status_looks_differ_and_errors_are_escaped(golden_results: Path, tmp_path: Path):
    page = render(golden_results, tmp_path / "out")["html"].read_text(encoding="utf-8")
    assert '<td style="background:#' in page  # an ok cell of a watermarked scheme: coloured
    for cls in ("err", "na", "nr", "ctl"):  # error, n/a, not run, the control: each its own look
        assert f'<td class="{cls}"' in page, cls
    assert "&lt;layer &#x27;fc&#x27;&gt; &amp; co" in page  # in the error cell's tooltip and the detail rows
    assert "<layer" not in page
    assert 'title="content × fine_tune\nseed 0: error: RuntimeError: CUDA out of memory' in page
    assert '<img src="figures/wsr_heatmap' in page
    assert "http://" not in page and "https://" not in page
    assert page.count("<script") == 1 and "<script>" in page  # the inline sort script, nothing loaded


def test_markdown_shows_control_legend_and_marks(golden_results: Path, tmp_path: Path):
    text = render(golden_results, tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    assert "| `none` (control) |" in text
    assert "null/control" in text
    assert "| 96.0 ± 1.4% |" in text  # the victim WSR of the ranked summary: identity, two seeds
    # soft_label ran at seed 0 only (no card of any scheme at seed 1): one seed, a Wilson interval, none missing
    assert "| `content` | 12.0% \\[7, 20\\]¹ ✗ 1/1 |" in text  # Wilson: 12 of 100 verification inputs
    assert "| ERR |" in text and "| n/a |" in text and "| · |" in text
    assert "[![WSR after attack, rows in rank order](figures/wsr_heatmap.png)](figures/wsr_heatmap.png)" in text
    assert "Per-seed WSR, label rate and p-value" in text and "cells.csv" in text
    assert max(len(line.split(" | ")) for line in text.splitlines() if line.startswith("|")) <= 12


VICTIM_ACC = {0: 0.88, 1: 0.89, 2: 0.87}  # of the `wm` victims; `none` victims: 0.90 and 0.92


def wm(attack: str = "identity", kind: str = "control", seed: int = 0, **kw) -> dict:
    base = {"clean_acc_victim": VICTIM_ACC[seed]} if kw.get("status", "ok") == "ok" else {}
    return make_card(defense="wm", attack=attack, attack_kind=kind, seed=seed, **{**base, **kw})


def hand_cards() -> list[dict]:
    """A scheme `wm` judged against `none`; the expected numbers are worked out in the test."""
    no_suspect = {"wsr_suspect": None, "retained": None, "removed_cheaply": None}
    return [
        make_card(defense="none", seed=0, clean_acc_victim=0.90),
        make_card(defense="none", seed=1, clean_acc_victim=0.92),
        wm(seed=0, wsr_null=0.10),
        wm(seed=1, wsr_null=0.20),
        # ext1: retained on 2 of 3 seeds -> survives (majority); seed 2 exists only here
        wm("ext1", "extraction", 0, wsr_suspect=0.8),
        wm("ext1", "extraction", 1, wsr_suspect=0.7),
        wm("ext1", "extraction", 2, wsr_suspect=0.2, retained=False),
        # ext2: removed cheaply
        wm(
            "ext2",
            "extraction",
            wsr_suspect=0.1,
            retained=False,
            removed_cheaply=True,
            clean_acc_suspect=0.87,
        ),
        # rem1: retained on 1 of 2 seeds -> not a majority -> removed
        wm("rem1", "removal", 0, wsr_suspect=0.6),
        wm("rem1", "removal", 1, wsr_suspect=0.2, retained=False, clean_acc_suspect=0.5),
        # rem2 n/a and rem3 error: left out of the denominator
        wm("rem2", "removal", status="n/a"),
        wm("rem3", "removal", status="error", error="boom"),
        # det1 detects the watermark; det2 does not
        wm("det1", "detection", detected=True, **no_suspect),
        wm("det2", "detection", detected=False, **no_suspect),
    ]


def test_robustness_and_cost_by_hand(tmp_path: Path):
    root = write_cards(tmp_path / "results", hand_cards())
    (g,) = summarize(load_results(root))
    assert g.seeds == (0, 1, 2)
    assert g.defenses == ("none", "wm")
    assert g.attacks == ("identity", "ext1", "ext2", "rem1", "rem2", "rem3", "det1", "det2")
    none, row = g.defense_rows
    assert none.total == 0 and none.acc_cost is None
    # cost: (0.88 - 0.90, 0.89 - 0.92) = (-2, -3) points; seed 2 has no `none` victim and is left out
    assert row.acc_cost.n == 2
    assert row.acc_cost.mean == pytest.approx(-2.5)
    assert row.acc_cost.sd == pytest.approx(math.sqrt(0.5))
    assert row.victim_acc.mean == pytest.approx(0.88) and row.victim_acc.n == 3
    assert row.null_wsr.mean == pytest.approx(0.15)
    # ext1 survives, ext2 and rem1 do not; rem2 (n/a) and rem3 (error) are not counted
    assert (row.survived, row.total) == (1, 3)
    assert row.robustness == pytest.approx(1 / 3)
    assert row.worst["extraction"].attack == "ext2"
    assert row.worst["removal"].attack == "rem1"
    assert (row.det_undetected, row.det_total, row.detected_by) == (1, 2, ("det1",))
    rows = {r.name: r for r in g.attack_rows}
    assert rows["ext2"].removed_cheaply == (1, 1)
    assert rows["ext1"].removed_cheaply == (0, 1)
    assert rows["det1"].detected == (1, 1)
    # rem2 ran at seed 0 only: `none` (run at seed 0) lacks its card there; no seed is expected beyond 0
    assert rows["rem2"].counts == {"ok": 0, "error": 0, "n/a": 1, "not run": 1}
    assert rows["rem1"].suspect_acc.mean == pytest.approx((0.9 + 0.5) / 2)

    text = render(root, tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    # the ranked summary: rem3 (an error) is a column not judged yet, so `wm` is listed, not ranked; rem2 (n/a)
    # does not apply to it and is out of its n
    summary = next(line for line in text.splitlines() if line.startswith("| — | `wm` |"))
    assert summary == ("| — | `wm` | — | -2.5 ± 0.7 pts | 95.0 ± 0.0% | 1/3 (1 not run) | ext2 10.0% ✗ 1/1 "
                       "| rem1 40.0% ✗ 1/2 tie | det1 | — | 1–3 of 3 |")
    rows = [line for line in text.splitlines() if line.startswith("| `wm` |")]
    # ext1: three seeds, t interval 56.7 ± 4.303 * 32.1 / sqrt(3), clipped at 0; retained on 2 of 3
    assert rows[0] == "| `wm` | 56.7% [0, 100] ✓ 2/3 | 10.0% [6, 17]¹ ✗ 1/1 |".replace("[", "\\[").replace("]", "\\]")
    assert rows[1].startswith("| `wm` | 40.0% \\[0, 100\\] ✗ 1/2 tie | n/a | ERR |")
    assert rows[2] == "| `wm` | ✗ detected 1/1 | ✓ undetected 1/1 |"


def test_several_datasets_get_their_own_sections(tmp_path: Path):
    root = write_cards(
        tmp_path / "results",
        [
            make_card(defense="none"),
            make_card(),
            make_card(dataset="mnist", arch="lenet"),
            make_card(arch="lenet"),
        ],
    )
    paths = render(root, tmp_path / "out")
    text = paths["markdown"].read_text(encoding="utf-8")
    for label in ("## mnist / lenet", "## synthetic / lenet", "## synthetic / small\\_cnn"):
        assert label in text
    assert text.index("## mnist / lenet") < text.index("## synthetic / lenet")
    assert_png(paths["heatmap"])


def test_only_the_control_still_renders(tmp_path: Path):
    root = write_cards(tmp_path / "results", [make_card(defense="none")])
    paths = render(root, tmp_path / "out")
    assert "No watermarked scheme on this board yet" in paths["markdown"].read_text(encoding="utf-8")
    assert_png(paths["heatmap"])
    assert "cost" not in paths  # no watermark: nothing to put on the cost-versus-WSR figure


def test_empty_results_dir_is_a_clear_error(tmp_path: Path):
    (tmp_path / "results").mkdir()
    with pytest.raises(WmbenchError, match="no result cards under .*wmbench run"):
        render(tmp_path / "results", tmp_path / "out")
    with pytest.raises(CardError, match="does not exist"):
        render(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_invalid_card_is_reported(tmp_path: Path):
    bad = card_path(tmp_path / "results", "synthetic", "small_cnn", "content", "identity", 0)
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema_version": 1}', encoding="utf-8")
    with pytest.raises(CardError, match="missing field"):
        render(tmp_path / "results", tmp_path / "out")


# ------------------------------------------------------------------------------------ WSR versus queries
POOL = {"attacker_pool": 30000}


def sweep_cards() -> list[dict]:
    """soft_label at 1,000 / 5,000 / all (= 30,000) queries against `content` and `none`, two seeds at 5,000;
    hard_label at one budget only (not a sweep); a temperature variant at two budgets (its own sweep)."""
    def sl(defense, label, queries, seed=0, **kw):
        config = {"temperature": 1.0, "queries": queries, "output": "probs"}
        config.update(kw.pop("config", {}))
        return make_card(defense=defense, attack=label, attack_kind="extraction", attack_config=config,
                         profile_config=POOL, seed=seed, queries=queries or 30000, **kw)

    return [
        sl("content", "soft_label[queries=1000]", 1000, wsr_suspect=0.15, retained=False, clean_acc_suspect=0.70),
        sl("content", "soft_label[queries=5000]", 5000, wsr_suspect=0.40, clean_acc_suspect=0.80),
        sl("content", "soft_label[queries=5000]", 5000, seed=1, wsr_suspect=0.50, clean_acc_suspect=0.82),
        sl("content", "soft_label", None, wsr_suspect=0.70, clean_acc_suspect=0.86),
        sl("none", "soft_label[queries=1000]", 1000, clean_acc_suspect=0.72),
        sl("none", "soft_label[queries=5000]", 5000, clean_acc_suspect=0.81),
        sl("none", "soft_label", None, clean_acc_suspect=0.87),
        sl("content", "hard_label[queries=1000]", 1000, wsr_suspect=0.05, retained=False),
        sl("content", "soft_label[queries=1000;temperature=7]", 1000, config={"temperature": 7.0},
           wsr_suspect=0.2, retained=False),
        sl("content", "soft_label[queries=5000;temperature=7]", 5000, config={"temperature": 7.0},
           status="error"),
    ]


def test_family_label():
    from leaderboard.sweeps import family_label

    assert family_label("soft_label[queries=1000]") == "soft_label"
    assert family_label("soft_label") == "soft_label"
    assert family_label("soft_label[output=label;queries=all]") == "soft_label[output=label]"
    assert family_label("soft_label[queries=5;temperature=7]") == "soft_label[temperature=7]"
    assert family_label("soft_label[queries=5]>fine_tune") == "soft_label>fine_tune"
    assert family_label("prune[rate=0.1]", "rate") == "prune"
    assert family_label("prune[finetune_epochs=2;rate=0.3]", "rate") == "prune[finetune_epochs=2]"
    assert family_label("prune[lr_rate=0.1]", "rate") == "prune[lr_rate=0.1]"  # a whole field name only


def test_query_sweeps_are_found(tmp_path: Path):
    from leaderboard.sweeps import find_sweeps

    (g,) = summarize(load_results(write_cards(tmp_path / "results", sweep_cards())))
    sweeps = find_sweeps([g])
    assert [(s.field, s.family, s.kind) for s in sweeps] == [
        ("queries", "soft_label", "extraction"),
        ("queries", "soft_label[temperature=7]", "extraction"),
        # the temperature-7 variant differs from the default one only in temperature: a temperature sweep
        ("temperature", "soft_label[queries=1000]", "extraction"),
        ("temperature", "soft_label[queries=5000]", "extraction"),
    ]
    main = sweeps[0]
    assert main.points == [(1000, "soft_label[queries=1000]"), (5000, "soft_label[queries=5000]"),
                           (30000, "soft_label")]
    assert main.whole == "soft_label" and main.axis == "queries"
    assert sweeps[2].points == [(1.0, "soft_label[queries=1000]"), (7.0, "soft_label[queries=1000;temperature=7]")]
    assert sweeps[2].whole is None
    # the golden cards have a single soft_label budget: no sweep there
    (golden,) = summarize(load_results(write_cards(tmp_path / "golden", golden_cards())))
    assert find_sweeps([golden]) == []


def test_wsr_versus_queries_figure_and_tables(tmp_path: Path):
    root = write_cards(tmp_path / "results", sweep_cards())
    paths = render(root, tmp_path / "out")
    assert paths["study:query-budget:queries"] == tmp_path / "out" / "figures" / "study-query-budget-wsr_vs_queries.png"
    assert_png(paths["study:query-budget:queries"])
    assert "study:query-budget:temperature" in paths
    text = paths["study:query-budget"].read_text(encoding="utf-8")
    fig = "../figures/study-query-budget-wsr_vs_queries.png"
    assert f"[![WSR and stolen accuracy versus queries]({fig})]({fig})" in text
    assert text.index("## WSR versus queries") < text.index("## WSR versus temperature")
    assert "### synthetic / small\\_cnn: soft\\_label (extraction)" in text
    assert "| Scheme (queries) | 1,000 | 5,000 | 30,000 (all) |" in text
    # the summary's numbers come from the cards: content is the one watermarked scheme at both ends
    assert ("`soft_label` (extraction), queries 1,000 → 30,000 (all): mean WSR over seeds `content` 15.0% ✗ → "
            "70.0% ✓.") in text
    row = next(line for line in text.splitlines() if line.startswith("| `content` | WSR 15.0%"))
    # seed 1 exists only at 5,000 queries and only for `content`: every other point ran at its one seed
    assert row == ("| `content` | WSR 15.0% ✗ · acc 70.0% | WSR 45.0 ± 7.1% ✓ · acc 81.0 ± 1.4% "
                   "| WSR 70.0% ✓ · acc 86.0% |")
    assert "| `none` | acc 72.0% | acc 81.0% | acc 87.0% |" in text
    assert "| `content` | WSR 20.0% ✗ · acc 90.0% | ERR |" in text  # the temperature-7 sweep (seed 0 only)
    assert "| `none` | · | · |" in text
    page = paths["html"].read_text(encoding="utf-8")
    assert "study-query-budget-wsr_vs_queries.png" in page
    again = render(root, tmp_path / "again")
    key = "study:query-budget:queries"
    assert again[key].read_bytes() == paths[key].read_bytes()


def test_no_sweep_no_figure_and_no_stale_one(golden_results: Path, tmp_path: Path):
    out = tmp_path / "out"
    render(write_cards(tmp_path / "sweep", sweep_cards()), out)
    assert (out / "figures" / "study-query-budget-wsr_vs_queries.png").is_file()
    assert (out / "figures" / "study-query-budget-wsr_vs_temperature.png").is_file()
    paths = render(golden_results, out)
    assert not [k for k in paths if k.count(":") == 2]  # no study figure
    assert not list((out / "figures").glob("*wsr_vs_*"))  # nor a stale one, nor its record
    assert not (out / "studies" / "query-budget.md").exists()  # no sweep point: no sweep study
    for key in ("markdown", "html"):
        assert "wsr_vs_" not in paths[key].read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- WSR versus pruning rate
def prune(defense: str, label: str, rate: float, seed: int = 0, **kw) -> dict:
    """A `prune` card: the recorded config is the attack's whole config, defaults included."""
    config = {"rate": rate, "finetune_epochs": 0}
    config.update(kw.pop("config", {}))
    return make_card(defense=defense, attack=label, attack_kind="removal", attack_config=config, seed=seed,
                     **kw)


def prune_cards() -> list[dict]:
    """`prune` at rates 0.1 / 0.3 / 0.5 (the plain column, the default rate) against `content` and `none`, two
    seeds at 0.3; a column differing from them in two fields; two chains whose configs differ only in rate."""
    return [
        prune("content", "prune[rate=0.1]", 0.1, wsr_suspect=0.90, clean_acc_suspect=0.89),
        prune("content", "prune[rate=0.3]", 0.3, wsr_suspect=0.60, clean_acc_suspect=0.86),
        prune("content", "prune[rate=0.3]", 0.3, seed=1, wsr_suspect=0.50, clean_acc_suspect=0.84),
        prune("content", "prune", 0.5, wsr_suspect=0.20, retained=False, clean_acc_suspect=0.70),
        prune("none", "prune[rate=0.1]", 0.1, clean_acc_suspect=0.90),
        prune("none", "prune[rate=0.3]", 0.3, clean_acc_suspect=0.87),
        prune("none", "prune", 0.5, clean_acc_suspect=0.72),
        # rate and finetune_epochs both differ from every other column: no sweep in either field
        prune("content", "prune[finetune_epochs=2;rate=0.9]", 0.9, config={"finetune_epochs": 2},
              wsr_suspect=0.10, retained=False),
        # chain columns are never swept on a field other than queries, whatever their configs hold
        prune("content", "prune[rate=0.1]>fine_tune", 0.1, wsr_suspect=0.5),
        prune("content", "prune[rate=0.3]>fine_tune", 0.3, wsr_suspect=0.4),
    ]


def test_pruning_sweep_is_found(tmp_path: Path):
    from leaderboard.sweeps import find_sweeps

    (g,) = summarize(load_results(write_cards(tmp_path / "results", prune_cards())))
    (sweep,) = find_sweeps([g])
    assert (sweep.field, sweep.family, sweep.kind, sweep.axis) == ("rate", "prune", "removal", "pruning rate")
    assert sweep.points == [(0.1, "prune[rate=0.1]"), (0.3, "prune[rate=0.3]"), (0.5, "prune")]
    assert sweep.whole is None


def test_sweep_figure_draws_swept_schemes_only_each_in_its_own_colour(tmp_path: Path):
    from leaderboard.plots import sweep_colours
    from leaderboard.sweeps import find_sweeps

    extra = [prune(f"scheme_{i:02d}", "prune", 0.5, wsr_suspect=0.9) for i in range(12)]  # default rate only
    (g,) = summarize(load_results(write_cards(tmp_path / "results", prune_cards() + extra)))
    (sweep,) = find_sweeps([g])
    assert list(sweep_colours(sweep)) == ["none", "content"]  # the 12 one-point schemes are not swept
    # with no scheme at two points, every scheme with one is drawn; beyond 10, colours still all differ
    (g2,) = summarize(load_results(write_cards(tmp_path / "r2", [
        prune("content", "prune[rate=0.1]", 0.1), *extra[:11], prune("none", "prune[rate=0.1]", 0.1)])))
    sweep2 = dataclasses.replace(sweep, group=g2, points=[(0.1, "prune[rate=0.1]"), (0.5, "prune")])
    colours = sweep_colours(sweep2)
    assert len(colours) == 13 and len(set(colours.values())) == 13


def test_cost_figure_leaves_configured_variants_to_the_tables_when_colours_run_out():
    from leaderboard.plots import COST_MAX_SCHEMES, cost_schemes

    few = ["content", "content[patch_frac=0.15]", "content", "ewe"]
    assert cost_schemes(few) == ["content", "content[patch_frac=0.15]", "ewe"]  # all fit: all drawn, once
    many = ["content", "ewe"] + [f"mea_defender[com_extra={i}]" for i in range(COST_MAX_SCHEMES)]
    assert cost_schemes(many) == ["content", "ewe"]
    only_variants = [f"mea_defender[com_extra={i}]" for i in range(COST_MAX_SCHEMES + 1)]
    assert cost_schemes(only_variants) == only_variants  # nothing plain to fall back on: draw them all


def test_a_cell_is_expected_at_the_seeds_its_row_and_column_share(tmp_path: Path):
    # content x A and none x B ran at seeds 0 and 1, the crossed cells at seed 0 only: both are holes in a
    # rectangle (their scheme and their attack each ran at seed 1); C ran at seed 0 only, so nothing is missing
    cards = [make_card(defense="content", attack="A", attack_kind="extraction", seed=s) for s in (0, 1)]
    cards += [make_card(defense="none", attack="B", attack_kind="extraction", seed=s) for s in (0, 1)]
    cards += [make_card(defense="content", attack="B", attack_kind="extraction", seed=0),
              make_card(defense="none", attack="A", attack_kind="extraction", seed=0),
              make_card(defense="content", attack="C", attack_kind="extraction", seed=0)]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert g.cells[("content", "B")].missing_seeds == (1,) and g.cells[("none", "A")].missing_seeds == (1,)
    assert g.cells[("content", "A")].complete and g.cells[("content", "C")].seeds == (0,)
    assert g.cells[("none", "C")].missing_seeds == (0,)  # never run: expected at its scheme's seeds in C's
    text = render(tmp_path / "results", tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    assert "1 cell-seeds not run" not in text and "3 cell-seeds not run" in text
    content_row = next(line for line in text.splitlines() if line.startswith("| `content` |") and "not run" in line)
    assert content_row.count("(1 not run)") == 1


def test_columns_differing_in_two_fields_or_in_no_number_are_no_sweep(tmp_path: Path):
    from leaderboard.sweeps import find_sweeps

    def ft(label, **config):
        return make_card(attack=label, attack_kind="removal", attack_config={"data_frac": 0.5, "lr": None,
                                                                           "mode": "ftll", **config})

    cards = [
        ft("fine_tune[data_frac=0.2;lr=0.01]", data_frac=0.2, lr=0.01),
        ft("fine_tune[data_frac=0.4;lr=0.001]", data_frac=0.4, lr=0.001),  # two fields differ
        ft("fine_tune[mode=ftal]", mode="ftal"),  # differs from the plain one in a string
        ft("fine_tune"),  # lr None: left out of an lr sweep, whose other point would be lr=0.1 alone
        ft("fine_tune[lr=0.1]", lr=0.1),
        ft("fine_tune[flag=true]", flag=True),  # booleans are no numbers
        ft("fine_tune[flag=false]", flag=False),
    ]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert find_sweeps([g]) == []
    # the same two columns, but differing in one field only, are a sweep
    cards[1] = ft("fine_tune[data_frac=0.4;lr=0.01]", data_frac=0.4, lr=0.01)
    (g,) = summarize(load_results(write_cards(tmp_path / "again", cards)))
    (sweep,) = find_sweeps([g])
    assert (sweep.field, sweep.family) == ("data_frac", "fine_tune[lr=0.01]")
    assert sweep.axis == "share of the attacker's data"
    assert sweep.points == [(0.2, "fine_tune[data_frac=0.2;lr=0.01]"), (0.4, "fine_tune[data_frac=0.4;lr=0.01]")]


def test_wsr_versus_pruning_rate_figure_and_tables(tmp_path: Path):
    root = write_cards(tmp_path / "results", prune_cards())
    paths = render(root, tmp_path / "out")
    key = "study:pruning-rate:rate"
    assert sorted(k for k in paths if k.startswith("study:")) == ["study:pruning-rate", key]
    assert paths[key] == tmp_path / "out" / "figures" / "study-pruning-rate-wsr_vs_rate.png"
    assert_png(paths[key])
    text = paths["study:pruning-rate"].read_text(encoding="utf-8")
    assert "## WSR versus pruning rate" in text
    fig = "../figures/study-pruning-rate-wsr_vs_rate.png"
    assert f"[![WSR and suspect accuracy versus pruning rate]({fig})]({fig})" in text
    assert "differ only in their pruning rate (rate)" in text
    assert "### synthetic / small\\_cnn: prune (removal)" in text
    assert "| Scheme (pruning rate) | 0.1 | 0.3 | 0.5 |" in text
    # seed 1 exists only at rate 0.3 and only for `content`: every other point ran at its one seed
    assert ("| `content` | WSR 90.0% ✓ · acc 89.0% | WSR 55.0 ± 7.1% ✓ · acc 85.0 ± 1.4% "
            "| WSR 20.0% ✗ · acc 70.0% |") in text
    assert "| `none` | acc 90.0% | acc 87.0% | acc 72.0% |" in text
    # the chains and the two-field column make no table
    assert [x for x in text.splitlines() if x.startswith("### ") and "prune" in x] == [
        "### synthetic / small\\_cnn: prune (removal)"]
    again = render(root, tmp_path / "again")
    assert again[key].read_bytes() == paths[key].read_bytes()


def test_queries_and_rate_sweeps_together_and_no_stale_rate_figure(tmp_path: Path):
    out = tmp_path / "out"
    paths = render(write_cards(tmp_path / "both", sweep_cards() + prune_cards()), out)
    assert {"study:query-budget:queries", "study:pruning-rate:rate", "study:query-budget:temperature"} <= set(paths)
    text = paths["markdown"].read_text(encoding="utf-8")
    # the board page indexes the studies in their declared order
    assert text.index("(studies/query-budget.md)") < text.index("(studies/pruning-rate.md)")
    # the pruning sweep is gone from these cards: its page and figure go too, the query figure stays
    paths = render(write_cards(tmp_path / "queries", sweep_cards()), out)
    assert "study:pruning-rate" not in paths and not (out / "studies" / "pruning-rate.md").exists()
    assert not (out / "figures" / "study-pruning-rate-wsr_vs_rate.png").exists()
    assert (out / "figures" / "study-query-budget-wsr_vs_queries.png").is_file()
    for key in ("markdown", "html"):
        assert "pruning-rate" not in paths[key].read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ attack cost
def cost_cards() -> list[dict]:
    """Three seeds of `content` and one of `none` under `soft_label`; `content` alone under a detector."""
    def sl(defense, seed, wall, queries, epochs, mem, **kw):
        return make_card(defense=defense, attack="soft_label", attack_kind="extraction", seed=seed, wall_s=wall,
                         queries=queries, epochs=epochs, peak_mem_mb=mem, **kw)

    return [
        sl("content", 0, 1.0, 1000, 3, 200.0, wsr_suspect=0.9),
        sl("content", 1, 2.0, 1000, 4, 300.0, wsr_suspect=0.8),
        sl("content", 2, 12.0, 3000, 4, 1000.0, wsr_suspect=0.1, retained=False),
        sl("none", 0, 4.0, 1000, 5, 260.0),
        make_card(defense="none", seed=1, attack="soft_label", attack_kind="extraction", status="error"),
        make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                  removed_cheaply=None, detected=False, wall_s=30.0),
    ]


def test_attack_cost_median_and_mean(tmp_path: Path):
    root = write_cards(tmp_path / "results", cost_cards())
    (g,) = summarize(load_results(root))
    row = next(r for r in g.attack_rows if r.name == "soft_label")
    # over the four ok cards of every scheme and seed; the error card is left out
    assert (row.wall_s.median, row.wall_s.mean, row.wall_s.n) == (3.0, pytest.approx(19.0 / 4), 4)
    assert (row.queries.median, row.queries.mean) == (1000.0, 1500.0)
    assert (row.epochs.median, row.epochs.mean) == (4.0, 4.0)
    assert (row.peak_mem_mb.median, row.peak_mem_mb.mean) == (280.0, 440.0)
    text = render(root, tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    assert "| CPU s (median / mean) | Queries (median / mean) | Epochs (median / mean) | " \
           "Peak mem MB (median / mean) |" in text
    # these cards predate CPU time: their wall seconds, marked as such
    line = next(x for x in text.splitlines() if x.startswith("| `soft_label` | extraction |"))
    assert line.endswith("| 3.0 / 4.8 wall | 1,000 / 1,500 | 4 / 4 | 280 / 440 |")
    line = next(x for x in text.splitlines() if x.startswith("| `neural_cleanse` |"))
    assert line.endswith("| 30.0 / 30.0 wall | 0 / 0 | 0 / 0 | 100 / 100 |")


def test_the_cost_column_and_figure_use_cpu_seconds_when_every_card_records_them(tmp_path: Path):
    from leaderboard.sweeps import cost_clock, cost_points

    timed = [{**c, "cpu_s": 2 * c["wall_s"] if c["wall_s"] is not None else None} for c in cost_cards()]
    root = write_cards(tmp_path / "cpu", timed)
    (g,) = summarize(load_results(root))
    row = next(r for r in g.attack_rows if r.name == "soft_label")
    assert (row.cpu_s.median, row.cpu_s.mean) == (6.0, pytest.approx(19.0 / 2))
    assert cost_clock(g) == "cpu" and cost_points(g)[0].wall_s == pytest.approx(10.0)  # CPU seconds now
    text = render(root, tmp_path / "out")["markdown"].read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("| `soft_label` | extraction |"))
    assert "| 6.0 / 9.5 | 1,000 / 1,500 |" in line
    timed[0]["cpu_s"] = None  # one card made before CPU time was recorded: wall seconds for all, never a mix
    (g,) = summarize(load_results(write_cards(tmp_path / "mixed", timed)))
    assert cost_clock(g) == "wall" and next(r for r in g.attack_rows if r.name == "soft_label").cpu_s is None


def test_cost_points_and_figure(tmp_path: Path):
    from leaderboard.sweeps import cost_points

    root = write_cards(tmp_path / "results", cost_cards())
    (g,) = summarize(load_results(root))
    # `none` has no watermark and the detector leaves no suspect: one point, content x soft_label
    (p,) = cost_points(g)
    assert (p.defense, p.attack, p.kind) == ("content", "soft_label", "extraction")
    assert p.wall_s == pytest.approx(5.0) and p.wsr == pytest.approx(0.6) and p.survived is True
    assert p.thresholds == (0.3,)
    paths = render(root, tmp_path / "out")
    assert_png(paths["cost"])
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "## Attack cost versus WSR" in text and "![Attack cost versus WSR](figures/cost_vs_wsr.png)" in text
    assert "30% claim threshold" in text and "log scale" in text
    page = paths["html"].read_text(encoding="utf-8")
    assert '<img src="figures/cost_vs_wsr.png"' in page and "<h2>Attack cost versus WSR</h2>" in page
    assert "<th>CPU s (median / mean)</th>" in page


def test_no_watermark_no_cost_figure_and_no_stale_one(golden_results: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert "cost" in render(golden_results, out)
    assert (out / "figures" / "cost_vs_wsr.png").is_file()
    clean = [make_card(defense="none"), make_card(defense="none", attack="soft_label", attack_kind="extraction"),
             make_card(attack="soft_label", attack_kind="extraction", status="error")]
    paths = render(write_cards(tmp_path / "clean", clean), out)
    assert "cost" not in paths and not (out / "figures" / "cost_vs_wsr.png").exists()
    for key in ("markdown", "html"):
        assert "cost_vs_wsr" not in paths[key].read_text(encoding="utf-8")


def test_detection_cells_show_false_alarms_on_the_null_models(tmp_path: Path):
    from leaderboard.text import cell_detail, cell_text

    cards = [
        make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                  removed_cheaply=None, detected=True, detected_target=0, seed=s,
                  extras={"null_detected": flags})
        for s, flags in ((0, [False, True]), (1, [False, False]))
    ]
    root = write_cards(tmp_path / "results", cards)
    (g,) = summarize(load_results(root))
    cell = g.cells[("content", "neural_cleanse")]
    assert cell_text(cell, True) == "✗ detected (false alarms 1/4)"
    assert "clean null models flagged: 1/2" in cell_detail(cell)
    old = make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                    removed_cheaply=None, detected=False)
    (g2,) = summarize(load_results(write_cards(tmp_path / "r2", [old])))
    cell2 = g2.cells[("content", "neural_cleanse")]
    assert cell_text(cell2, True) == "✓ undetected"  # cards without the record render as before


def test_a_flag_on_the_wrong_class_is_not_a_detection(tmp_path: Path):
    from leaderboard.text import cell_detail, cell_text

    def card(seed, correct):
        return make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                         removed_cheaply=None, detected=True, detected_target=8, seed=seed,
                         extras={"detection_correct": correct})

    root = write_cards(tmp_path / "results", [card(0, False), card(1, False), card(2, True)])
    (g,) = summarize(load_results(root))
    cell = g.cells[("content", "neural_cleanse")]
    assert cell.majority("detected") is True and cell.found() is False and cell.survived is True
    assert cell_text(cell, True) == "✓ wrong class flagged"
    assert "names the watermark: no" in cell_detail(cell) and "names the watermark: yes" in cell_detail(cell)
    row = next(r for r in g.attack_rows if r.name == "neural_cleanse")
    assert row.detected == (0, 1)


def test_a_detection_tie_counts_as_detected_as_a_removal_tie_counts_as_removed(tmp_path: Path):
    from leaderboard.text import board_cell_text

    def card(seed, detected):
        return make_card(attack="neural_cleanse", attack_kind="detection", wsr_suspect=None, retained=None,
                         removed_cheaply=None, detected=detected, detected_target=0 if detected else None,
                         seed=seed)

    root = write_cards(tmp_path / "results", [make_card(defense="none"), card(0, False), card(1, True)])
    (g,) = summarize(load_results(root))
    cell = g.cells[("content", "neural_cleanse")]
    assert cell.found() is True and cell.survived is False
    assert cell.votes() == Votes(1, 2, False, tie=True)
    assert board_cell_text(cell, True) == "✗ detected 1/2 tie"
    row = next(r for r in g.defense_rows if r.name == "content")
    assert (row.det_undetected, row.det_total, row.detected_by) == (0, 1, ("neural_cleanse",))
    # two of three seeds undetected is a majority for the scheme
    root = write_cards(tmp_path / "more", [card(0, False), card(1, True), card(2, False)])
    (g,) = summarize(load_results(root))
    assert g.cells[("content", "neural_cleanse")].survived is True


def test_the_victim_most_of_a_seeds_cards_share_stands_for_the_seed(tmp_path: Path):
    """A card scored against a retrained victim (the cached one was gone; numerics differ) neither moves the
    scheme's accuracy cost, victim WSR or embedding time nor goes unmentioned."""
    from leaderboard.text import retrained_text

    def card(defense, attack, acc, wsr=0.95, wall=100.0, created="2024-01-01T00:00:00Z", **kw):
        return make_card(defense=defense, attack=attack, clean_acc_victim=acc, wsr_victim=wsr,
                         created_utc=created, extras={"victim_wall_s": wall, "suspect_label_rate": 0.02}, **kw)

    later = "2024-02-01T00:00:00Z"
    cards = [card("none", "identity", 0.90, wsr=None, has_watermark=False, wsr_suspect=None, wsr_null=None,
                  p_value=None, retained=None, removed_cheaply=None, threshold=None),
             card("content", "identity", 0.88, wall=200.0),
             card("content", "fine_tune", 0.88, wall=200.0, attack_kind="removal"),
             card("content", "prune", 0.8850, wsr=0.97, wall=300.0, created=later, attack_kind="removal")]
    root = write_cards(tmp_path / "results", cards)
    (g,) = summarize(load_results(root))
    row = next(r for r in g.defense_rows if r.name == "content")
    # the two cards of the first victim outvote the retrained one: cost (0.88 - 0.90) = -2 points, not -1.83
    assert row.acc_cost.mean == pytest.approx(-2.0) and row.victim_wsr.mean == pytest.approx(0.95)
    assert row.embed_s.mean == pytest.approx(200.0) and row.embed_ratio.mean == pytest.approx(2.0)
    (key, rec), = g.retrained.items()
    assert key == ("content", 0) and rec.cards == 1
    assert (rec.acc_gap, rec.wsr_gap) == pytest.approx((0.005, 0.02))
    text = retrained_text(g)
    assert text.startswith("Retrained victims: for 1 scheme-seed (seed 0: content), 1 of the seed's cards was")
    assert "victim accuracy by up to 0.5 points, victim WSR by up to 2 points" in text
    # a tie between two victims: the earliest card's stands
    root = write_cards(tmp_path / "tie", cards[:2] + cards[3:])
    (g,) = summarize(load_results(root))
    assert next(r for r in g.defense_rows if r.name == "content").victim_acc.mean == pytest.approx(0.88)
    # one victim per seed: no note
    root = write_cards(tmp_path / "one", cards[:3])
    (g,) = summarize(load_results(root))
    assert g.retrained == {} and retrained_text(g) is None


def test_the_board_says_which_cards_ran_on_another_device(tmp_path: Path):
    """Cards made on a CPU beside GPU cards are counted and placed (seed, schemes), most cards first, in one
    note with the victims trained away from most victims; one device for everything: no note."""
    from leaderboard.text import devices_text

    cpu, gpu = "cpu:x86_64x2", "cuda:NVIDIA H200"
    cards = [make_card(defense="content", attack="identity", seed=0, device=gpu),
             make_card(defense="content", attack="fine_tune", seed=0, device=gpu, attack_kind="removal"),
             make_card(defense="content", attack="identity", seed=1, device=cpu),
             make_card(defense="blend", attack="identity", seed=1, device=cpu),
             make_card(defense="blend", attack="identity", seed=2, device=gpu),
             make_card(defense="adi", attack="identity", seed=2, device=gpu)]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert g.device_cards == {gpu: 4, cpu: 2} and list(g.device_cards) == [gpu, cpu]
    assert g.devices[cpu] == {1: ("blend", "content")}
    assert g.main_device == gpu
    text = devices_text(g)
    assert text.startswith(f"Devices: 4 of the 6 cards ran on {gpu}, 2 on {cpu} (seed 1: blend, content). "
                           f"Victims trained on another device than most ({gpu}): on {cpu}, seed 1: blend, "
                           f"content. The Embedding column counts only victims trained on {gpu}. ")
    assert "Embedding" not in devices_text(g, embedding=False)
    (g,) = summarize(load_results(write_cards(tmp_path / "one", [c for c in cards if c["device"] == gpu])))
    assert devices_text(g) is None


def test_victims_trained_elsewhere_are_named_though_every_card_ran_on_one_device(tmp_path: Path):
    """CPU cards scored against a victim the GPU trained (recorded on the cards): the note names it and the
    Embedding column leaves it out, though all the cards ran on the CPU."""
    from leaderboard.text import devices_text, embedding_text

    cpu, gpu = "cpu:x86_64x2", "cuda:NVIDIA H200"

    def card(defense, seed, wall, **extras):
        return make_card(defense=defense, attack="identity", seed=seed, device=cpu,
                         extras={"victim_wall_s": wall, "suspect_label_rate": 0.02, **extras})

    cards = [card("content", 0, 300.0), card("content", 1, 18.0, victim_device=gpu), card("content", 2, 320.0),
             card("blend", 0, 100.0)]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert g.device_cards == {cpu: 4} and g.main_device == cpu
    assert g.victim_device[("content", 1)] == gpu
    assert devices_text(g) == (f"Devices: victims trained on another device than most ({cpu}): on {gpu}, seed 1: "
                               "content. "
                               f"The Embedding column counts only victims trained on {cpu}. A card records the "
                               "device of the run that wrote it and, where the cache knew it, its victim's; the "
                               "same seed and settings give other numbers on another device.")
    row = next(r for r in g.defense_rows if r.name == "content")
    assert embedding_text(row, 3) == "(310 s; 2 seeds)"  # no `none` cards here: no ratio


def test_embedding_compares_victims_trained_on_the_same_device(tmp_path: Path):
    """A GPU-trained victim's seconds neither enter a scheme's embedding time nor its ratio to `none`'s CPU
    seconds; the victim's device is the card's ``victim_device`` when recorded, else the card's own device.
    The page shows medians over seeds."""
    from leaderboard.text import embedding_text

    cpu, gpu = "cpu:x86_64x2", "cuda:NVIDIA H200"

    def card(defense, seed, device, wall, **extras):
        kw = {} if defense != "none" else dict(has_watermark=False, wsr_suspect=None, wsr_null=None, p_value=None,
                                               retained=None, removed_cheaply=None, threshold=None, wsr_victim=None)
        return make_card(defense=defense, attack="identity", seed=seed, device=device,
                         extras={"victim_wall_s": wall, "suspect_label_rate": 0.02, **extras}, **kw)

    cards = [card("none", 0, cpu, 100.0), card("none", 1, gpu, 4.0), card("none", 2, cpu, 110.0),
             card("content", 0, cpu, 300.0), card("content", 1, gpu, 12.0),
             # seed 2's card ran on the GPU with a victim the CPU trained (recorded on the card)
             card("content", 2, gpu, 330.0, victim_device=cpu), card("blend", 2, cpu, 50.0),
             # seed 3's victim trained while the machine was busy: ten times slower
             card("none", 3, cpu, 100.0), card("content", 3, cpu, 3000.0)]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    row = next(r for r in g.defense_rows if r.name == "content")
    assert row.embed_s.n == 3 and row.embed_s.median == pytest.approx(330.0)
    assert row.embed_ratio.n == 3 and row.embed_ratio.median == pytest.approx(3.0)
    # the page shows the medians: the slowed run does not move them (its mean ratio would read x12.0)
    assert embedding_text(row) == "×3.0 (330 s)" and row.embed_clock == "wall"


def test_embedding_uses_cpu_seconds_where_the_cards_of_both_victims_record_them(tmp_path: Path):
    from leaderboard.text import embedding_text

    def card(defense, seed, wall, cpu):
        kw = {} if defense != "none" else dict(has_watermark=False, wsr_suspect=None, wsr_null=None, p_value=None,
                                               retained=None, removed_cheaply=None, threshold=None, wsr_victim=None)
        extras = {"victim_wall_s": wall, "suspect_label_rate": 0.02}
        if cpu is not None:
            extras["victim_cpu_s"] = cpu
        return make_card(defense=defense, attack="identity", seed=seed, extras=extras, **kw)

    # seed 1's content victim ran beside other work: its wall time doubled, its CPU time did not
    cards = [card("none", 0, 50.0, 100.0), card("none", 1, 50.0, 100.0),
             card("content", 0, 100.0, 200.0), card("content", 1, 200.0, 220.0)]
    (g,) = summarize(load_results(write_cards(tmp_path / "cpu", cards)))
    row = next(r for r in g.defense_rows if r.name == "content")
    assert row.embed_clock == "cpu" and embedding_text(row) == "×2.1 (210 CPU-s)"
    cards[0] = card("none", 0, 50.0, None)  # the control's card of seed 0 predates CPU time: wall for the row
    (g,) = summarize(load_results(write_cards(tmp_path / "wall", cards)))
    row = next(r for r in g.defense_rows if r.name == "content")
    assert row.embed_clock == "wall" and embedding_text(row) == "×3.0 (150 s)"


def test_the_attack_note_states_the_scorers_cheap_removal_rule():
    from bench.score import MAX_ACC_DROP
    from leaderboard.text import ATTACK_NOTE

    assert f"at most {100 * MAX_ACC_DROP:g} points of clean accuracy" in ATTACK_NOTE


def test_a_tie_between_removed_cheaply_and_retained_counts_as_removed_cheaply(tmp_path: Path):
    cards = [make_card(defense="none"),
             make_card(attack="prune", attack_kind="removal", seed=0),
             make_card(attack="prune", attack_kind="removal", seed=1, wsr_suspect=0.05, retained=False,
                       removed_cheaply=True)]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert g.cells[("content", "prune")].survived is False
    assert next(r for r in g.attack_rows if r.name == "prune").removed_cheaply == (1, 1)
    assert next(r for r in g.attack_rows if r.name == "identity").removed_cheaply == (0, 0)  # never counted


def test_a_page_showing_some_cards_stands_on_the_boards_victim(tmp_path: Path):
    """A study whose cards are mostly the retrained victim's still reports the victim most cards of the seed
    share, and names its own cards that differ."""
    from leaderboard.summary import _group, _records

    def card(attack, acc, created):
        return make_card(attack=attack, attack_kind="removal", clean_acc_victim=acc, created_utc=created)

    every = [card("fine_tune", 0.88, "2024-01-01T00:00:00Z"), card("prune", 0.88, "2024-01-01T00:00:01Z"),
             card("nad", 0.8850, "2024-02-01T00:00:00Z")]
    every = _records(load_results(write_cards(tmp_path / "results", every)).drop(columns="path"))
    part = [c for c in every if c["attack"] == "nad"]
    alone = _group("synthetic", "small_cnn", part)
    assert alone.defense_rows[0].victim_acc.mean == pytest.approx(0.885) and alone.retrained == {}
    g = _group("synthetic", "small_cnn", part, reference=every)
    assert g.defense_rows[0].victim_acc.mean == pytest.approx(0.88)
    assert g.victims["content"][0]["attack"] == "fine_tune" and g.retrained[("content", 0)].cards == 1


def test_a_scheme_setting_left_to_the_profile_is_the_sweeps_default_point(tmp_path: Path):
    from leaderboard.sweeps import find_scheme_sweeps
    from leaderboard.text import victim_wsr_text

    cards = [make_card(defense=d, defense_config={"epochs": e}, profile_config={"epochs": 6})
             for d, e in (("content", None), ("content[epochs=12]", 12))]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    (sw,) = find_scheme_sweeps([g])
    assert (sw.family, sw.field, sw.points) == ("content", "epochs", [(6, "content"), (12, "content[epochs=12]")])
    # a watermark served by the API says so wherever its victim WSR is shown
    assert victim_wsr_text("dawn[epochs=12]", sw.victim("content", "wsr_victim")).startswith(
        "served by the API (model ")


def test_a_schemes_own_swept_setting_gets_a_figure_a_table_and_a_summary_line(tmp_path: Path):
    """Two patch sizes of `content` (the detection study): compared on the seed both were run at, victim and
    copies per setting, detection columns in the table."""
    from leaderboard.sweeps import find_scheme_sweeps

    def card(defense, patch, attack="identity", kind="control", seed=0, **kw):
        return make_card(defense=defense, defense_config={"patch_frac": patch, "epochs": None}, attack=attack,
                         attack_kind=kind, seed=seed, **kw)

    cards = [card("content", 0.25, clean_acc_victim=0.90, wsr_victim=1.0),
             card("content", 0.25, seed=1, clean_acc_victim=0.80, wsr_victim=0.5),  # the 0.15 point lacks seed 1
             card("content", 0.25, "nc_unlearn", "removal", wsr_suspect=0.95, clean_acc_victim=0.90, wsr_victim=1.0),
             card("content[patch_frac=0.15]", 0.15, clean_acc_victim=0.88, wsr_victim=0.99),
             card("content[patch_frac=0.15]", 0.15, "nc_unlearn", "removal", wsr_suspect=0.085, retained=False,
                  clean_acc_victim=0.88, wsr_victim=0.99),
             card("content[patch_frac=0.15]", 0.15, "neural_cleanse", "detection", wsr_suspect=None, retained=None,
                  removed_cheaply=None, detected=True, detected_target=0, clean_acc_victim=0.88, wsr_victim=0.99)]
    root = write_cards(tmp_path / "results", cards)
    (g,) = summarize(load_results(root))
    (sw,) = find_scheme_sweeps([g])
    assert (sw.family, sw.field, sw.seeds) == ("content", "patch_frac", (0,))
    assert sw.points == [(0.15, "content[patch_frac=0.15]"), (0.25, "content")]
    assert sw.victim("content", "clean_acc_victim").mean == pytest.approx(0.90)  # seed 1 (0.80) left out
    assert sw.columns() == ["nc_unlearn"] and sw.columns(detection=True) == ["nc_unlearn", "neural_cleanse"]

    paths = render(root, tmp_path / "out")
    assert_png(paths["study:detection:settings"])
    text = paths["study:detection"].read_text(encoding="utf-8")
    fig = "../figures/study-detection-settings.png"
    assert f"[![Victim and suspect WSR versus the schemes' settings]({fig})]({fig})" in text
    assert r"| patch\_frac | 0.15 | 0.25 |" in text
    assert "| Victim acc | 88.0% | 90.0% |" in text and "| Victim WSR | 99.0% | 100.0% |" in text
    # Wilson on 8 of 100 (round(8.5)) and 95 of 100 verification hits: [4.1, 15.0]% and [88.8, 97.8]%
    assert r"| `nc_unlearn` | 8.5% \[4, 15\]¹ ✗ 1/1 | 95.0% \[89, 98\]¹ ✓ 1/1 |" in text
    assert "| `neural_cleanse` | ✗ detected 1/1 | · |" in text
    assert (r"- `content` by patch\_frac 0.15 → 0.25 (seeds 0): victim WSR 99.0% → 100.0%, victim accuracy "
            "88.0% → 90.0%.") in text
    assert "study-detection-settings.png" in paths["html"].read_text(encoding="utf-8")


def test_heatmap_colour_is_what_the_verdict_rests_on_and_never_green_when_rejected():
    from leaderboard.plots import evidence
    from leaderboard.summary import CellSummary

    def cell(*cards):
        return CellSummary("wm", "ext", "extraction", (0, 1), list(cards))

    # a copy that answers the target to everything: WSR 100%, own label rate 100%: no evidence, red
    constant = make_card(attack="ext", wsr_suspect=1.0, retained=False, extras={"suspect_label_rate": 1.0})
    assert evidence(cell(constant)) == 0.0
    # a retained copy: the WSR above its label rate, averaged over the seeds
    kept = [make_card(attack="ext", seed=s, wsr_suspect=w, extras={"suspect_label_rate": 0.1})
            for s, w in ((0, 0.9), (1, 0.7))]
    assert evidence(cell(*kept)) == pytest.approx(0.7)
    # far above the threshold but rejected (not significant): held just under the threshold
    weak = make_card(attack="ext", wsr_suspect=0.9, p_value=0.2, retained=False, extras={"suspect_label_rate": 0.0})
    assert evidence(cell(weak)) == pytest.approx(0.29)


def test_the_published_board_reads_in_a_terminal():
    """The committed LEADERBOARD.md: at most 30 KB, no table wider than 12 columns, the ranked summary first,
    one study page per declared study with a card (``--check`` keeps the page equal to its cards; this keeps
    its shape)."""
    from leaderboard.markdown import MAX_COLUMNS

    root = Path(__file__).resolve().parents[2] / "leaderboard"
    text = (root / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 30_000
    widths = [len(line.strip().strip("|").split(" | ")) for line in text.splitlines() if line.startswith("| ")]
    assert widths and max(widths) <= MAX_COLUMNS
    first_table = next(i for i, line in enumerate(text.splitlines()) if line.startswith("| "))
    assert text.splitlines()[first_table].startswith("| Rank | Scheme | Paper |")
    linked = set(re.findall(r"\]\((studies/[a-z-]+\.md)\)", text))
    assert linked and all((root / page).is_file() for page in linked)


def test_a_scheme_that_marks_the_api_says_why_removal_cannot_prove_it(tmp_path: Path):
    """DAWN's watermark lives in the served answers: the board says its model carries none (so every removal
    column is ✗ by construction) and names its best extraction column from the cards; other schemes: no note."""
    from leaderboard.text import api_text

    def dawn(attack, kind, wsr, retained=False, seed=0):
        return make_card(defense="dawn", attack=attack, attack_kind=kind, seed=seed, wsr_suspect=wsr,
                         retained=retained)

    cards = [dawn("identity", "control", 0.0), dawn("fine_tune", "removal", 0.01), dawn("prune", "removal", 0.0),
             dawn("soft_label", "extraction", 0.05), dawn("soft_label", "extraction", 0.07, seed=1),
             dawn("hard_label", "extraction", 0.02), make_card(defense="content")]
    (g,) = summarize(load_results(write_cards(tmp_path / "results", cards)))
    assert api_text(g) == (
        "`dawn` watermarks the API's answers, not the model: the model itself carries no watermark, so an "
        "attacker who holds its weights has nothing to remove and no copy of them can be proved (✗ in all 2 "
        "removal columns). Only a copy extracted through the API can carry the mark; the best of its 2 "
        "extraction columns is soft_label 6.0% ✗ 2/2.")
    # a removal column the cards call retained: the note does not claim ✗ for all of them
    cards[1] = dawn("fine_tune", "removal", 0.5, retained=True)
    (g,) = summarize(load_results(write_cards(tmp_path / "kept", cards)))
    assert "removal columns" not in api_text(g) and "can be proved" not in api_text(g)
    (g,) = summarize(load_results(write_cards(tmp_path / "none", cards[-1:])))
    assert api_text(g) is None

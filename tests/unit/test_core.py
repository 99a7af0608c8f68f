"""Oracle, scorer, cache and result cards."""

import json

import pytest
import torch
from torch import nn

from bench.api import Protected
from bench.cache import Cache, artifact_key
from bench.errors import CardError, ConfigError
from bench.oracle import BudgetExceeded, Oracle
from bench.results import card_path, load_results, read_card, validate_card, write_card
from bench.score import binom_sf, label_rate, null_wsr, score_models


class Fixed(nn.Module):
    """A 'model' that outputs fixed logits per input row (its first pixel picks the row)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32), requires_grad=False)

    def forward(self, x):
        return self.logits[x.flatten(1)[:, 0].long()]


def test_oracle_counts_budget_and_modes():
    logits = [[2.0, 1.0, 0.1], [0.0, 3.0, 0.5]]
    x = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1, 1)
    o = Oracle(Fixed(logits), num_classes=3, budget=5)
    p = o(x)
    assert o.queries == 3 and torch.allclose(p.sum(1), torch.ones(3))
    with pytest.raises(BudgetExceeded, match="budget 5"):
        o(x)
    assert o.queries == 3
    lab = Oracle(Fixed(logits), num_classes=3, mode="label")(x)
    assert lab.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    top = Oracle(Fixed(logits), num_classes=3, mode="topk", top_k=2)(x)
    assert (top > 0).sum(1).tolist() == [2, 2, 2]
    rnd = Oracle(Fixed(logits), num_classes=3, mode="rounded", decimals=1)(x)
    assert torch.allclose(rnd * 10, (rnd * 10).round())
    assert "model" not in repr(o).lower()


def test_oracle_bad_options():
    with pytest.raises(ConfigError, match="use one of probs, topk, rounded, label"):
        Oracle(Fixed([[0.0]]), num_classes=1, mode="logits")
    with pytest.raises(ConfigError, match="top_k=5 must be between 1 and 3"):
        Oracle(Fixed([[0.0, 0, 0]]), num_classes=3, mode="topk", top_k=5)
    with pytest.raises(ConfigError, match="budget=-1"):
        Oracle(Fixed([[0.0]]), num_classes=1, budget=-1)


def test_binomial_tail_exact():
    assert binom_sf(0, 10, 0.3) == 1.0
    assert binom_sf(11, 10, 0.3) == 0.0
    assert binom_sf(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binom_sf(2, 3, 0.5) == pytest.approx(0.5)
    assert binom_sf(900, 1000, 0.05) < 1e-300 or binom_sf(900, 1000, 0.05) == 0.0


def _protected(target_label_model_rows):
    # verification inputs: rows 0 and 1 alternating; target label 1
    vx = torch.tensor([0.0, 1.0] * 50).view(100, 1, 1, 1)
    return Protected(model=Fixed(target_label_model_rows), verify_x=vx, verify_y=torch.ones(100, dtype=torch.long),
                     threshold=0.3)


def test_score_retained_and_null():
    carrier = [[0.0, 5.0], [0.0, 5.0]]  # always predicts 1: WSR 100%
    clean = [[5.0, 0.0], [5.0, 0.0]]  # never predicts 1
    half = [[5.0, 0.0], [0.0, 5.0]]  # 50%
    prot = _protected(carrier)
    x_test = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    y_test = torch.tensor([1, 1])
    out = score_models(protected=prot, suspect=Fixed(carrier), x_test=x_test, y_test=y_test,
                       null_models=[Fixed(clean), Fixed(half)])
    assert out["wsr_victim"] == 1.0 and out["wsr_suspect"] == 1.0
    assert out["wsr_null"] == 0.5  # the worst innocent model
    assert out["p_value"] < 1e-10 and out["retained"] is True
    gone = score_models(protected=prot, suspect=Fixed(clean), x_test=x_test, y_test=y_test,
                        null_models=[Fixed(clean)])
    assert gone["wsr_suspect"] == 0.0 and gone["retained"] is False
    assert gone["removed_cheaply"] is False  # accuracy fell from 100% to 0%
    nr = null_wsr(prot, [Fixed(clean)])
    assert nr.hits == 0 and nr.rate == pytest.approx(1 / 102)


def test_score_without_watermark():
    prot = Protected(model=Fixed([[0.0, 1.0]]))
    x = torch.zeros(4, 1, 1, 1)
    out = score_models(protected=prot, suspect=prot.model, x_test=x, y_test=torch.ones(4, dtype=torch.long),
                       null_models=[])
    assert out["clean_acc_victim"] == 1.0 and out["fidelity"] == 1.0
    assert out["wsr_suspect"] is None and out["retained"] is None


def test_cache_roundtrip_and_corruption(tmp_path):
    cache = Cache(tmp_path)
    key = artifact_key(a=1, b=[1, 2])
    assert key == artifact_key(b=[1, 2], a=1)
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(3)}

    obj, meta = cache.get_or_build(key, build)
    assert meta["wall_s"] >= 0 and meta["peak_mem_mb"] > 0
    obj2, _ = cache.get_or_build(key, build)
    assert len(calls) == 1 and torch.equal(obj2["w"], obj["w"])
    # corrupt the entry: detected, removed and rebuilt
    p = cache.path(key)
    p.write_bytes(p.read_bytes()[:-7] + b"garbage")
    obj3, _ = cache.get_or_build(key, build)
    assert len(calls) == 2 and torch.equal(obj3["w"], obj["w"])
    assert cache.stats.rebuilt_corrupt == [key]


def test_cache_unwritable_dir_is_clear(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Exception, match="pass a writable --cache-dir"):
        Cache(f / "sub")


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


def test_label_rate_counts_other_classes_only():
    pred = torch.tensor([0, 0, 0, 1, 2, 0])
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    # label 0 given to 2 of the 4 images of other classes; label 2 to none of the 4 others
    assert label_rate(pred, y, torch.zeros(10, dtype=torch.long)) == pytest.approx(0.5)
    assert label_rate(pred, y, torch.tensor([0, 0, 0, 2])) == pytest.approx(0.75 * 0.5 + 0.25 * 0.0)
    assert label_rate(pred, torch.zeros(6, dtype=torch.long), torch.zeros(3, dtype=torch.long)) == 0.0


def test_a_suspect_that_answers_the_target_to_everything_carries_no_watermark():
    carrier = [[0.0, 5.0], [0.0, 5.0]]  # answers 1 to every input, watermark or not
    clean = [[5.0, 0.0], [5.0, 0.0]]
    prot = _protected(carrier)
    x_test = torch.tensor([0.0, 1.0] * 10).view(20, 1, 1, 1)
    y_test = torch.tensor([0, 1] * 10)  # half the clean test images are of class 0
    out = score_models(protected=prot, suspect=Fixed(carrier), x_test=x_test, y_test=y_test,
                       null_models=[Fixed(clean)])
    assert out["wsr_suspect"] == 1.0 and out["wsr_null"] == 0.0
    assert out["extras"]["suspect_label_rate"] == 1.0 and out["extras"]["p_value_rate"] == 1.0
    assert out["p_value"] == 1.0 and out["retained"] is False
    # a model that answers 1 only to the watermark rows keeps the null models' rate and is retained
    marked = [[5.0, 0.0], [0.0, 5.0]]  # class 1 for input 1.0 only; the verify set alternates 0.0 / 1.0
    half = score_models(protected=prot, suspect=Fixed(marked), x_test=x_test, y_test=y_test,
                        null_models=[Fixed(clean)])
    assert half["extras"]["suspect_label_rate"] == 0.0 and half["retained"] is True


def test_a_near_constant_suspect_needs_the_threshold_above_its_own_label_rate():
    # rows 0 and 1 (the watermarks) and row 0 (most clean class-0 images) -> 1; row 2 -> 0
    suspect = [[0.0, 5.0], [0.0, 5.0], [5.0, 0.0]]
    clean = [[5.0, 0.0], [5.0, 0.0], [5.0, 0.0]]
    prot = _protected(suspect)
    x_test = torch.tensor([0.0] * 9 + [2.0] + [1.0] * 10).view(20, 1, 1, 1)
    y_test = torch.tensor([0] * 10 + [1] * 10)  # 9 of the 10 class-0 images are answered 1
    out = score_models(protected=prot, suspect=Fixed(suspect), x_test=x_test, y_test=y_test,
                       null_models=[Fixed(clean)])
    assert out["wsr_suspect"] == 1.0 and out["extras"]["suspect_label_rate"] == pytest.approx(0.9)
    # 100 of 100 against a rate of 0.9 is significant (0.9 ** 100), but the watermark adds 10 points only
    assert out["p_value"] == pytest.approx(0.9 ** 100, rel=1e-4) and out["p_value"] < 0.01
    assert out["retained"] is False


def test_a_detection_counts_only_when_it_names_the_watermark():
    from bench.score import names_the_watermark

    prot = _protected([[0.0, 5.0], [0.0, 5.0]])  # verification label 1
    assert names_the_watermark(prot, True, 1, None) is True
    assert names_the_watermark(prot, True, 0, None) is False  # flagged, but another class
    assert names_the_watermark(prot, False, 1, None) is None and names_the_watermark(prot, None, None, None) is None
    assert names_the_watermark(prot, True, None, None) is True  # nothing named: nothing to check against
    mixed = Protected(model=prot.model, verify_x=prot.verify_x, verify_y=torch.full((100,), 2),
                      info={"classes": {"a": 0, "b": 1, "target": 2}})
    assert names_the_watermark(mixed, True, 5, (1, 0)) is True  # the source pair, in any order
    assert names_the_watermark(mixed, True, 2, (3, 4)) is True  # the target
    assert names_the_watermark(mixed, True, 5, (3, 4)) is False
    assert names_the_watermark(Protected(model=prot.model), True, 1, None) is None  # no watermark
    # labels spread over the classes (adi, dawn): no class is the watermark's target, a named one finds nothing
    spread = Protected(model=prot.model, verify_x=prot.verify_x, verify_y=torch.arange(100) % 10)
    assert names_the_watermark(spread, True, 8, None) is False
    half = Protected(model=prot.model, verify_x=prot.verify_x, verify_y=torch.tensor([3] * 50 + [4] * 50))
    assert names_the_watermark(half, True, 3, None) is True and names_the_watermark(half, True, 5, None) is False

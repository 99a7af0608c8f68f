"""The scorer: the binomial tail, the null models' label rate, what counts as a watermark carried or found."""


import pytest
import torch
from fixedmodel import Fixed

from bench.api import Protected
from bench.score import binom_sf, label_rate, null_wsr, score_models


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

"""The only judge: accuracy, fidelity, WSR, the null WSR, a p-value, and the retained/removed decision.

No attack grades itself. Ownership is decided per cell by two rules together:

* the scheme's threshold (MEA-Defender's paper uses WSR >= 30%), and
* a one-sided exact binomial test of the suspect's watermark hits against the null rate — the highest
  WSR the same watermark reaches on *independent* models (clean models trained with other seeds, and the
  copies the same attack makes of them), Laplace-smoothed so that a null rate of 0/n is not taken as
  certainty — or, when it is higher, the rate at which the suspect itself gives the verification labels to
  clean test inputs of other classes (:func:`label_rate`). Without that floor a degenerate suspect that
  answers the target class to almost everything (a failed extraction, a broken removal) would "carry" any
  watermark whose label is that class: measured, a DFME copy of ``content`` at 13% accuracy scored 66.6%
  WSR against a null rate of 0.25%.

``retained`` = WSR minus the suspect's own label rate >= threshold, and p < ``ALPHA``. For a working model the
own rate is a few percent and this is the paper's WSR >= threshold; for a near-constant one the threshold
applies to what the watermark adds above that rate. The floor alone did not suffice: measured, a DFME copy of
``ewe`` at 10% accuracy gave EWE's target label to 99.0% of clean inputs and to 100% of 1,000 watermarks, and
the binomial test against 99.0% gives p = 4e-5.

``removed_cheaply`` follows the WRT SoK's rule: not retained and clean accuracy dropped <= 5 points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.api import Protected
from bench.train import accuracy, predict_labels

__all__ = ["ALPHA", "MAX_ACC_DROP", "binom_sf", "NullResult", "null_wsr", "label_rate", "names_the_watermark",
           "verdict", "evaluate_victim", "score_models"]

ALPHA = 0.01
MAX_ACC_DROP = 0.05


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), exact, computed in log space."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    m = max(logs)
    return min(1.0, math.exp(m) * sum(math.exp(v - m) for v in logs))


@dataclass(frozen=True)
class NullResult:
    wsr: float  # the highest WSR over the independent models
    hits: int  # hits of that model
    n: int
    per_model: tuple[float, ...]

    @property
    def rate(self) -> float:
        """The smoothed null rate the p-value is computed against."""
        return (self.hits + 1) / (self.n + 2)


def null_wsr(protected: Protected, null_models: list[nn.Module], device="cpu",
             verified: list[tuple[float, int]] | None = None) -> NullResult | None:
    """The null WSR of ``protected``'s watermark over ``null_models``; ``verified`` gives each model's
    ``protected.verify`` result when it was computed before (the scorer keeps it in the cache)."""
    if not protected.has_watermark or not null_models:
        return None
    best = None
    rates = []
    for i, m in enumerate(null_models):
        wsr, n = verified[i] if verified is not None else protected.verify(m, device=device)
        rates.append(wsr)
        hits = round(wsr * n)
        if best is None or hits > best[0]:
            best = (hits, n)
    assert best is not None
    return NullResult(wsr=best[0] / best[1], hits=best[0], n=best[1], per_model=tuple(rates))


def label_rate(pred: torch.Tensor, y_true: torch.Tensor, verify_y: torch.Tensor) -> float:
    """How often a model answers the verification labels on clean inputs of *other* classes, weighted as the
    labels occur in the verification set: the WSR it would reach by over-predicting those labels, with no
    watermark at all. ``pred`` are its answers to inputs whose true labels are ``y_true``."""
    pred, y_true, verify_y = pred.cpu(), y_true.cpu(), verify_y.cpu()
    labels, counts = torch.unique(verify_y, return_counts=True)
    total = 0.0
    for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
        other = y_true != label
        if bool(other.any()):
            total += count * float((pred[other] == label).float().mean())
    return total / max(1, len(verify_y))


def names_the_watermark(protected: Protected, detected: bool | None, target: int | None,
                        pair: tuple[int, int] | list[int] | None) -> bool | None:
    """Did a detector that flagged the model find *this* watermark? True when the class it names is the label of
    at least half of the verification set (the watermark's target), or the source pair it names is the
    scheme's (``info["classes"]``: MEA-Defender and its relatives); False when it names something else; None
    when it flagged nothing or the scheme has no watermark. A flag that names neither a class nor a pair counts
    as found (nothing to check it against).

    A watermark whose labels are spread over the classes (``adi``'s random labels, ``dawn``'s flipped answers)
    has no target for a detector to name, so a named class is no evidence of finding it. Measured: raw Neural
    Cleanse flags Bag on ``adi``'s victim (index 2.71), the class with the smallest clean-model triggers on
    Fashion-MNIST, and Bag is also one of adi's labels."""
    if not detected or not protected.has_watermark or protected.verify_y is None:
        return None
    if target is None and pair is None:
        return True
    classes = (protected.info or {}).get("classes") or {}
    if pair is not None and {"a", "b"} <= set(classes) and set(pair) == {classes["a"], classes["b"]}:
        return True
    return target is not None and 2 * int((protected.verify_y == target).sum()) >= len(protected.verify_y)


def verdict(*, wsr: float, label_rate: float, threshold: float, p_value: float, acc_victim: float,
            acc_suspect: float) -> tuple[bool, bool]:
    """(retained, removed_cheaply) from a cell's numbers: the WSR above the suspect's own label rate reaches
    the threshold and p < ``ALPHA``; removed cheaply = not retained with at most ``MAX_ACC_DROP`` accuracy lost."""
    retained = bool(wsr - label_rate >= threshold and p_value < ALPHA)
    return retained, bool(not retained and acc_victim - acc_suspect <= MAX_ACC_DROP)


def evaluate_victim(protected: Protected, x_test: torch.Tensor, device="cpu") -> dict:
    """What every cell of a victim needs of it, computed once per victim (the scorer keeps it in the cache):
    its labels for the test set (``pred``) and, when it carries a watermark, its verification result
    (``wsr``, ``n``). Always in fp32, whatever the training precision."""
    out: dict = {"pred": predict_labels(protected.model, x_test, device=device).cpu()}
    if protected.has_watermark:
        out["wsr"], out["n"] = protected.verify(protected.model, device=device)
    return out


def score_models(
    *,
    protected: Protected,
    suspect: nn.Module | None,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    null_models: list[nn.Module],
    device="cpu",
    victim_eval: dict | None = None,
    null_verified: list[tuple[float, int]] | None = None,
) -> dict:
    """Card fields for one cell whose attack produced a suspect model (or None for detection-only).

    ``victim_eval`` (:func:`evaluate_victim`) and ``null_verified`` (each null model's ``protected.verify``)
    are what other cells of the same victim computed already; without them they are computed here."""
    victim_eval = victim_eval if victim_eval is not None else evaluate_victim(protected, x_test, device=device)
    victim_pred = victim_eval["pred"]
    acc_v = float((victim_pred == y_test).float().mean())
    out: dict = {
        "clean_acc_victim": acc_v,
        "clean_acc_suspect": None,
        "fidelity": None,
        "wsr_victim": None,
        "wsr_suspect": None,
        "wsr_null": None,
        "n_verify": None,
        "threshold": None,
        "p_value": None,
        "retained": None,
        "removed_cheaply": None,
        "extras": {},
    }
    suspect_pred = None
    if suspect is not None:
        suspect_pred = predict_labels(suspect, x_test, device=device)
        out["clean_acc_suspect"] = float((suspect_pred == y_test).float().mean())
        out["fidelity"] = float((suspect_pred == victim_pred).float().mean())
    if not protected.has_watermark:
        return out
    threshold = protected.threshold if protected.threshold is not None else 0.3
    out["threshold"] = threshold
    out["wsr_victim"], out["n_verify"] = victim_eval["wsr"], victim_eval["n"]
    null = null_wsr(protected, null_models, device=device, verified=null_verified)
    if null is not None:
        out["wsr_null"] = null.wsr
        out["extras"]["wsr_null_per_model"] = list(null.per_model)
    if suspect is None:
        return out
    wsr, n = protected.verify(suspect, device=device)
    out["wsr_suspect"] = wsr
    hits = round(wsr * n)
    rate = null.rate if null is not None else 1.0 / max(1, len(torch.unique(y_test)))
    out["extras"]["null_rate_smoothed"] = rate
    own = 0.0
    if protected.verify_y is not None and suspect_pred is not None:
        own = label_rate(suspect_pred, y_test, protected.verify_y)
        out["extras"]["suspect_label_rate"] = own
        rate = max(rate, own)
    out["extras"]["p_value_rate"] = rate
    out["p_value"] = binom_sf(hits, n, rate)
    out["retained"], out["removed_cheaply"] = verdict(wsr=wsr, label_rate=own, threshold=threshold,
                                                      p_value=out["p_value"], acc_victim=acc_v,
                                                      acc_suspect=out["clean_acc_suspect"])
    return out


# re-exported for components that want the same metric definitions
__all__ += ["accuracy"]

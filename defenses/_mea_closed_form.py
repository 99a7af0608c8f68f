"""Where MEA-Defender's combination loss puts a watermark's output, in closed form, and the ``kl_weight=auto``
rule derived from it, which ``defenses/mea_defender.py`` applies during training (``auto_kl_weight``).

Measured: at CPU-scale budgets (Fashion-MNIST, quick profile: 4 + 2 epochs) the public code's loss
weights (``mea_defender_official``: MGDA plus an extra KL weight of 2) keep the watermark from being learned and
cost clean accuracy: seed 0, victim 77.81% accuracy, WSR 0.10% (``none``: 88.50%); without the KL term
(``mea_defender_ver_only``) 86.56% and 95.05%. ``combination_optimum`` solves the loss for one watermark whose
output were free *with the sources' outputs held fixed*: its minimiser answers the target only when the
watermarks' share of the cross-entropy batch over the KL's weight (w / c) exceeds a break-even ratio that the
sources' outputs set (``break_even_ratio``). wmbench's schedule gives w / c = 0.004 (stage 1) and 0.11
(stage 2) (the public code's, with its mean extra weight of 3 over 100 epochs, about 0.003 and 0.08), against
a break-even of 3.1-3.9 for a clean model's sources. This is a statement about the loss at fixed source outputs,
not a bound on training: in training the sources' outputs move (p_A(C) from 1.7% on the clean model to 9-27% on
trained victims), which lowers the break-even, and two carded runs (8 fixed anchors; the paper-text MGDA
variant) embed that way. Whether the code's 100 + 100 epochs with fixed anchors would cross is open; the
analysis is in ``docs/reproductions/mea-defender.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AUTO_MARGIN", "AUTO_MAX", "AUTO_SOURCES", "combination_optimum", "break_even_ratio",
           "auto_weight_from_outputs", "auto_kl_weight"]

# ``kl_weight=auto``: c = w / (AUTO_MARGIN x break-even of the current sources' outputs), fixed in advance
AUTO_MARGIN = 1.5
AUTO_SOURCES = 256  # A and B images (from the stage's anchors) whose outputs set the break-even
AUTO_MAX = 1.0  # the weight when the target already leads the sources (break-even 0)


def _mean_log_probs(log_pa: torch.Tensor, log_pb: torch.Tensor) -> torch.Tensor:
    """L_k = E[log p_A(k)] + E[log p_B(k)] over the source images: with anchors paired at random, the
    expected KL(q || p_A) + KL(q || p_B) is 2 sum_k q_k log q_k - sum_k q_k L_k."""
    if log_pa.dim() != 2 or log_pb.dim() != 2 or log_pa.shape[1] != log_pb.shape[1]:
        raise ValueError(f"log-probabilities must be (n, classes) with the same classes; got "
                         f"{tuple(log_pa.shape)} and {tuple(log_pb.shape)}")
    return log_pa.double().mean(0) + log_pb.double().mean(0)


def _geometric(log_pa: torch.Tensor, log_pb: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log G_k for every class, mask of the classes other than ``target``), G_k = exp(L_k / 2) being the
    geometric mean of the sources' probabilities of class k."""
    half = _mean_log_probs(log_pa, log_pb) / 2
    if not 0 <= target < half.numel():
        raise ValueError(f"combination_optimum: target {target} is not a class of {half.numel()}")
    others = torch.ones(half.numel(), dtype=torch.bool)
    others[target] = False
    return half, others


def combination_optimum(log_pa: torch.Tensor, log_pb: torch.Tensor, target: int, w_ce: float,
                        w_kl: float) -> torch.Tensor:
    """The output distribution q that minimises, for one watermark input whose output were free,
    ``w_ce * -log q[target] + w_kl * E[KL(q || p_A) + KL(q || p_B)]`` (the expectation over randomly paired
    source images whose log-probabilities are the rows of ``log_pa`` and ``log_pb``).

    This is what the published training loss asks of a watermark's output: ``w_ce`` is the watermarks'
    share of the cross-entropy batch, ``w_kl`` the combination loss's weight (MGDA's plus the fixed extra).
    Stationarity gives q_k = kappa * G_k for every other class, G_k = exp(L_k / 2) (the geometric mean of
    the sources' probabilities), and q_t = (1 - q_t) (G_t / S) exp(w_ce / (2 w_kl q_t)) for the target, with
    S the sum of the other G_k; the left side grows and the right side falls with q_t, so the root is
    unique and bisection finds it. With the sources' outputs held where they are, no network does better
    on the loss than this minimiser; training can still move the sources' outputs (and so the break-even),
    so this says what the loss asks of a watermark at those outputs, not what a trained network ends at."""
    if w_ce < 0 or w_kl <= 0:
        raise ValueError(f"combination_optimum: need w_ce >= 0 and w_kl > 0, got {w_ce}, {w_kl}")
    half, others = _geometric(log_pa, log_pb, target)
    log_ratio = float(half[target] - torch.logsumexp(half[others], 0))  # log(G_t / S)
    a = w_ce / (2 * w_kl)

    def h(u: float) -> float:  # the stationarity condition in u = logit(q_t); increasing, one root
        return -math.inf if a > 0 and -u > 700 else u - log_ratio - a * (1 + math.exp(-u))

    lo = log_ratio + a  # h(lo) <= 0
    hi = max(lo, 0.0, log_ratio + 2 * a) + 1.0  # h(hi) > 0
    for _ in range(200):
        mid = (lo + hi) / 2
        if h(mid) > 0:
            hi = mid
        else:
            lo = mid
    u = (lo + hi) / 2
    q_t = 1 / (1 + math.exp(-u)) if u > -700 else math.exp(u)
    q = torch.zeros(half.numel(), dtype=torch.float64)
    q[others] = (1 - q_t) * torch.softmax(half[others], 0)
    q[target] = q_t
    return q


def break_even_ratio(log_pa: torch.Tensor, log_pb: torch.Tensor, target: int) -> float:
    """The smallest ``w_ce / w_kl`` at which :func:`combination_optimum` answers ``target``:
    2 * G_max / (S + G_max) * log(G_max / G_t), with G_max the largest other geometric mean (0 when the
    target already has the largest one)."""
    half, others = _geometric(log_pa, log_pb, target)
    log_gmax = half[others].max()
    gap = float(log_gmax - half[target])
    if gap <= 0:
        return 0.0
    return 2 * float(torch.sigmoid(log_gmax - torch.logsumexp(half[others], 0))) * gap  # G_max / (S + G_max)


def auto_weight_from_outputs(log_pa: torch.Tensor, log_pb: torch.Tensor, target: int, w_ce: float) -> float:
    """``kl_weight=auto``: the KL weight c = w_ce / (AUTO_MARGIN x break-even) that puts the loss's
    minimiser (:func:`combination_optimum`) on the target with a margin of AUTO_MARGIN over the break-even
    ``w_ce / c`` that the sources' outputs set; AUTO_MAX when the target already leads (break-even 0)."""
    be = break_even_ratio(log_pa, log_pb, target)
    return AUTO_MAX if be <= 0 else min(AUTO_MAX, w_ce / (AUTO_MARGIN * be))


def auto_kl_weight(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, target: int, w_ce: float) -> float:
    """:func:`auto_weight_from_outputs` on ``model``'s current outputs (eval mode, no gradient) for up to
    AUTO_SOURCES images of each source; the model is put back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            log_pa, log_pb = (F.log_softmax(model(x[:AUTO_SOURCES]).double(), 1) for x in (x_a, x_b))
    finally:
        model.train(was_training)
    return auto_weight_from_outputs(log_pa, log_pb, target, w_ce)

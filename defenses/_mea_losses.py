"""MEA-Defender's training losses (``defenses/mea_defender.py`` trains with them): the combination KL, the
Composite Backdoor's logit-similarity term, how the terms are weighed against the cross-entropy in one step,
and MGDA's min-norm weights (the public code's two-task rule, and the paper's over its four losses).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_TASKS",
    "combination_loss",
    "similarity_loss",
    "auxiliary_loss",
    "total_loss",
    "min_norm_gamma",
    "mgda_aux_weight",
    "min_norm_weights",
    "mgda_task_weights",
    "paper_tasks_loss",
]

PAPER_TASKS = ("util", "ver", "eva", "com")  # balance=paper_tasks: the row kinds' cross-entropies and the KL


def combination_loss(z_wm: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor,
                     exclude: int | None = None) -> torch.Tensor:
    """KL(p_wm || p_A) + KL(p_wm || p_B), softmax at T = 1, mean over the paired rows; the anchors' logits
    are detached, so the gradient flows through the watermark branch only. With ``exclude`` the three
    distributions are taken over the other classes (that logit dropped, softmax renormalised)."""
    if exclude is not None:
        keep = [i for i in range(z_wm.shape[1]) if i != exclude]
        z_wm, z_a, z_b = z_wm[:, keep], z_a[:, keep], z_b[:, keep]
    logp_w = F.log_softmax(z_wm, dim=1)
    p_w = logp_w.exp()

    def kl(z_src: torch.Tensor) -> torch.Tensor:
        return (p_w * (logp_w - F.log_softmax(z_src.detach(), dim=1))).sum(1).mean()

    return kl(z_a) + kl(z_b)


def similarity_loss(z: torch.Tensor, y: torch.Tensor, classes: Sequence[int], margin: float = 1.0) -> torch.Tensor:
    """The Composite Backdoor's "contrastive" logit term: the rows labelled in ``classes`` are chained in batch
    order; a pair with one label adds 0.5 |z1 - z2|^2, a pair with two labels 0.5 max(0, margin - |z1 - z2|)^2;
    the mean over pairs is divided again by the number of pairs, as in the public code."""
    mask = torch.isin(y, torch.as_tensor(list(classes), device=y.device))
    zm, ym = z[mask], y[mask]
    if len(zm) < 2:
        return z.sum() * 0.0
    same = (ym[:-1] == ym[1:]).float()
    d2 = (zm[1:] - zm[:-1]).pow(2).sum(1)
    apart = F.relu(margin - (d2 + 1e-9).sqrt()).pow(2)
    return (0.5 * (same * d2 + (1 - same) * apart)).mean() / len(d2)


def auxiliary_loss(sim: torch.Tensor | None, com: torch.Tensor | None, *, shared: bool) -> torch.Tensor | None:
    """The auxiliary task that MGDA (or ``aux_weight``) weighs against the cross-entropy: the similarity term,
    plus the combination KL when it shares that weight (``shared``: the public code; else the KL has its own)."""
    if com is None or not shared:
        return sim
    return com if sim is None else sim + com


def total_loss(ce: torch.Tensor, sim: torch.Tensor | None, com: torch.Tensor | None, *, aux_weight: float,
               kl_weight: float | None, extra: float = 0.0) -> torch.Tensor:
    """One step's loss. ``kl_weight=None`` (public code): ce + aux_weight * (sim + com) + extra * com.
    A number: ce + aux_weight * sim + (kl_weight + extra) * com, so the similarity term keeps its weight
    whatever the KL's is. ``sim`` already carries ``sim_weight``; a missing term counts as absent."""
    aux = auxiliary_loss(sim, com, shared=kl_weight is None)
    loss = ce if aux is None else ce + aux_weight * aux
    if com is not None:
        w = (0.0 if kl_weight is None else kl_weight) + extra
        if w:
            loss = loss + w * com
    return loss


def min_norm_gamma(v11: float, v12: float, v22: float) -> float:
    """The weight of x1 in min_c |c x1 + (1 - c) x2|^2 from the inner products (the rule of the public code's
    2-task MGDA solver, with its 0.999 / 0.001 clipping)."""
    if v12 >= v11:
        return 0.999
    if v12 >= v22:
        return 0.001
    return (v22 - v12) / (v11 + v22 - 2 * v12)


def _dot(g1: Sequence[torch.Tensor | None], g2: Sequence[torch.Tensor | None]) -> float:
    total = 0.0
    for a, b in zip(g1, g2, strict=True):
        if a is not None and b is not None:
            total += float((a * b).sum())
    return total


def mgda_aux_weight(g1: Sequence[torch.Tensor | None], g2: Sequence[torch.Tensor | None], loss1: float,
                    loss2: float) -> float:
    """MGDA's weight of task 2 (1 - gamma) for the task gradients ``g1``, ``g2`` (per-parameter lists) after
    "loss+" normalisation: each gradient is divided by min(loss * |grad|, 10) + 1e-5."""
    d11, d12, d22 = _dot(g1, g1), _dot(g1, g2), _dot(g2, g2)
    n1 = min(loss1 * math.sqrt(d11), 10.0) + 1e-5
    n2 = min(loss2 * math.sqrt(d22), 10.0) + 1e-5
    return 1.0 - min_norm_gamma(d11 / (n1 * n1), d12 / (n1 * n2), d22 / (n2 * n2))


def min_norm_weights(gram: torch.Tensor, iters: int = 250, tol: float = 1e-9) -> torch.Tensor:
    """The weights alpha on the simplex that minimise |sum_i alpha_i g_i|^2, from the Gram matrix of the
    task gradients (Frank-Wolfe with the exact two-point line search of :func:`min_norm_gamma`, as in Sener
    and Koltun's MGDA-UB solver that the paper cites)."""
    gram = gram.double()
    n = gram.shape[0]
    alpha = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(iters):
        grad = gram @ alpha
        t = int(grad.argmin())
        v11, v12, v22 = float(alpha @ grad), float(grad[t]), float(gram[t, t])
        gamma = min_norm_gamma(v11, v12, v22)
        new = gamma * alpha
        new[t] += 1 - gamma
        if float((new - alpha).abs().sum()) < tol:
            alpha = new
            break
        alpha = new
    return alpha


def mgda_task_weights(grads: Sequence[Sequence[torch.Tensor | None]], losses: Sequence[float]) -> torch.Tensor:
    """MGDA's weight of every task for its per-parameter gradients after the code's "loss+" normalisation
    (each gradient divided by min(loss * |grad|, 10) + 1e-5)."""
    n = len(grads)
    raw = torch.tensor([[_dot(grads[i], grads[j]) for j in range(n)] for i in range(n)], dtype=torch.float64)
    norm = torch.tensor([min(loss * math.sqrt(max(float(raw[i, i]), 0.0)), 10.0) + 1e-5
                         for i, loss in enumerate(losses)], dtype=torch.float64)
    return min_norm_weights(raw / norm[:, None] / norm[None, :])


def paper_tasks_loss(z: torch.Tensor, y: torch.Tensor, kinds: torch.Tensor, com: torch.Tensor | None,
                     params: list, weights: dict[str, float], trace: dict[str, list[float]], *,
                     recompute: bool) -> torch.Tensor:
    """``balance=paper_tasks``: sum_k alpha_k L_k over the paper's losses present in the batch (L_util,
    L_ver, L_eva: cross-entropy over the clean, watermark and evasion rows; L_com: the KL), alpha from
    MGDA over their normalised gradients every ``mgda_every`` steps (kept in ``weights`` in between)."""
    losses = {}
    for k, name in enumerate(PAPER_TASKS[:3]):
        m = kinds == k
        if bool(m.any()):
            losses[name] = F.cross_entropy(z[m], y[m])
    if com is not None:
        losses["com"] = com
    if recompute and len(losses) > 1:
        grads = [torch.autograd.grad(v, params, retain_graph=True, allow_unused=True) for v in losses.values()]
        alpha = mgda_task_weights(grads, [float(v.detach()) for v in losses.values()])
        for name, a in zip(losses, alpha.tolist(), strict=True):
            weights[name] = a
            trace[name].append(a)
    return sum(weights[name] * v for name, v in losses.items())

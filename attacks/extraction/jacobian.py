"""Jacobian-based dataset augmentation (Papernot, McDaniel, Goodfellow, Jha, Celik and Swami, "Practical
Black-Box Attacks against Machine Learning", ASIA CCS 2017, https://doi.org/10.1145/3052973.3053009).

A small seed set drawn from the attacker's pool is labelled by the oracle; the substitute is trained on it,
then every round grows the set by a step along the sign of the substitute's Jacobian for the oracle's
label, x' = clip(x + λ·sign(∇_x F_sub(x)[O(x)]), 0, 1), labels the new points with the oracle and
retrains. With ``tau`` the step's sign flips every τ rounds (the paper's periodic step size); with
``reservoir`` = κ, rounds from σ = ``reservoir_from`` on augment only κ randomly chosen points (reservoir
sampling), so the set grows linearly instead of doubling. The paper's threat model is label-only: only
the top-1 of each answer is used, whatever the output type.

Queries: the seed set plus every augmented point, one each, never more than ``queries``; the last round is
cut to the budget left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks.extraction._base import ExtractionAttack, ExtractionConfig, outcome, substitute
from bench.api import Context, Outcome, Target
from bench.config import param
from bench.oracle import OUTPUT_MODES
from bench.registry import register_attack
from bench.train import fit


def jacobian_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float, device: torch.device,
                  batch_size: int = 256) -> torch.Tensor:
    """x + lam·sign(∂ logit_y / ∂x), clipped to [0, 1], on CPU; the model is left in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device).requires_grad_(True)
        yb = y[i : i + batch_size].to(device)
        picked = model(xb).gather(1, yb[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, xb)
        out.append((xb.detach() + lam * grad.sign()).clamp_(0, 1).cpu())
    return torch.cat(out) if out else x[:0].clone()


@register_attack("jacobian")
class Jacobian(ExtractionAttack):
    """Papernot et al. 2017: a substitute grown from a small seed set by Jacobian-based augmentation."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ExtractionConfig):
        seed_size: int = param(150, "initial images drawn from the attacker's pool (paper: 150)", ge=1)
        rounds: int = param(6, "augmentation rounds ρ (the substitute is trained rounds + 1 times)", ge=0)
        lam: float = param(0.1, "augmentation step λ in pixel units (paper: 0.1)", gt=0, le=1)
        tau: int | None = param(None, "flip the step's sign every τ rounds; None = never", ge=1)
        reservoir: int | None = param(None, "κ: points augmented per round from round σ on; None = all", ge=1)
        reservoir_from: int = param(3, "σ: the first round that uses reservoir sampling", ge=0)
        epochs: int | None = param(None, "substitute training epochs per round; None = the profile's", ge=1)
        output: str = param("label", "oracle output type (only its top-1 is used)", choices=OUTPUT_MODES)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        oracle = target.oracle
        budget = c.queries or len(target.x_pool)
        n0 = min(c.seed_size, len(target.x_pool), budget)
        idx = torch.randperm(len(target.x_pool), generator=ctx.generator)[:n0]
        x = target.x_pool[idx]
        y = target.ask_pool(idx).argmax(1)
        student = substitute(target, ctx, c.arch)
        epochs = c.epochs or p.attack_epochs
        trained = 0
        done = 0
        for rho in range(c.rounds + 1):
            fit(student, x, y, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=c.lr or p.lr,
                desc=f"jacobian {rho}")
            trained += epochs
            left = budget - oracle.queries
            if rho == c.rounds or left <= 0:
                break
            order = torch.randperm(len(x), generator=ctx.generator)
            if c.reservoir is not None and rho >= c.reservoir_from:
                order = order[: c.reservoir]
            order = order[:left]
            lam = c.lam * (-1) ** (rho // c.tau) if c.tau else c.lam
            x_new = jacobian_step(student, x[order], y[order], lam, ctx.device)
            y_new = oracle(x_new).argmax(1)
            x, y = torch.cat([x, x_new]), torch.cat([y, y_new])
            done = rho + 1
        return outcome(student.eval(), target, c.arch, trained, rounds=done, substitute_set=len(x))

"""Soft-label extraction by knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a
Neural Network", NIPS DL Workshop 2015, arXiv:1503.02531), the extraction attack of MEA-Defender's Table I.

The attacker queries the black-box oracle once per image of its pool (up to the query budget), softens the
answers with a temperature T (log-probabilities differ from logits by a constant, so softmax(log p / T)
equals the teacher's softmax(z / T)), and trains a fresh substitute to match them. MEA-Defender's public
code uses T = 7 with pure KL and Adam 1e-3.

The family's shared pieces are in :mod:`attacks.extraction._base`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.extraction._base import ExtractionAttack, ExtractionConfig, outcome, query_pool, substitute
from bench.api import Context, Outcome, Target
from bench.config import param
from bench.registry import register_attack
from bench.train import distill_targets, fit

__all__ = ["SoftLabel"]


@register_attack("soft_label")
class SoftLabel(ExtractionAttack):
    """Knockoff by distillation: train a substitute on the oracle's soft labels (Hinton et al. 2015)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ExtractionConfig):
        temperature: float = param(1.0, "distillation temperature T (MEA-Defender's code: 7)", gt=0)
        epochs: int | None = param(None, "substitute training epochs; None = the profile's", ge=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        x, answers = query_pool(target, ctx, c.queries)
        soft = distill_targets(answers, c.temperature)
        student = substitute(target, ctx, c.arch)
        T = c.temperature
        epochs = c.epochs or p.attack_epochs

        def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits / T, targets)

        fit(student, x, soft, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=c.lr or p.lr,
            loss_fn=loss_fn, desc="soft_label")
        return outcome(student, target, c.arch, epochs)

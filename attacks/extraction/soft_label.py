"""Soft-label extraction by knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a
Neural Network", NIPS DL Workshop 2015, arXiv:1503.02531), the extraction attack of MEA-Defender's Table I.

The attacker queries the black-box oracle once per image of its pool (up to the query budget), softens the
answers with a temperature T (log-probabilities differ from logits by a constant, so softmax(log p / T)
equals the teacher's softmax(z / T)), and trains a fresh substitute to match them. MEA-Defender's public
code uses T = 7 with pure KL and Adam 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.models import create_model
from bench.oracle import OUTPUT_MODES
from bench.registry import register_attack
from bench.train import distill_targets, fit


@register_attack("soft_label")
class SoftLabel(Attack):
    """Knockoff by distillation: train a substitute on the oracle's soft labels (Hinton et al. 2015)."""

    kind = "extraction"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        temperature: float = param(1.0, "distillation temperature T (MEA-Defender's code: 7)", gt=0)
        queries: int | None = param(None, "query budget in images; None = the whole attacker pool", ge=1)
        epochs: int | None = param(None, "substitute training epochs; None = the profile's", ge=1)
        lr: float | None = param(None, "Adam learning rate; None = the profile's", gt=0, le=1)
        arch: str | None = param(None, "substitute architecture; None = the victim's")
        output: str = param("probs", "oracle output type", choices=OUTPUT_MODES)
        top_k: int = param(1, "probabilities kept when output=topk", ge=1)
        decimals: int = param(2, "decimals kept when output=rounded", ge=0, le=8)

    def oracle_options(self) -> dict:
        c = self.config
        return {"mode": c.output, "top_k": c.top_k, "decimals": c.decimals, "budget": c.queries}

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        oracle = target.oracle
        n = min(len(target.x_pool), c.queries or len(target.x_pool))
        idx = torch.randperm(len(target.x_pool), generator=ctx.generator)[:n]
        x = target.x_pool[idx]
        answers = oracle(x)
        soft = distill_targets(answers, c.temperature)
        info = target.info
        ctx.manual_seed()
        student = create_model(
            c.arch or target.arch, in_channels=info.in_channels, num_classes=info.num_classes,
            image_size=info.image_size, mean=info.mean, std=info.std,
        )
        T = c.temperature
        epochs = c.epochs or p.attack_epochs

        def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits / T, targets)

        fit(student, x, soft, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=c.lr or p.lr,
            loss_fn=loss_fn, desc="soft_label")
        return Outcome(model=student, queries=oracle.queries, epochs=epochs,
                       extras={"oracle": oracle.describe(), "substitute_arch": c.arch or target.arch})

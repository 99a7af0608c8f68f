"""Soft-label extraction by knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a
Neural Network", NIPS DL Workshop 2015, arXiv:1503.02531), the extraction attack of MEA-Defender's Table I.

The attacker queries the black-box oracle once per image of its pool (up to the query budget), softens the
answers with a temperature T (log-probabilities differ from logits by a constant, so softmax(log p / T)
equals the teacher's softmax(z / T)), and trains a fresh substitute to match them. MEA-Defender's public
code uses T = 7 with pure KL and Adam 1e-3.

The pieces below (:class:`ExtractionAttack` and its :class:`ExtractionConfig`, :func:`oracle_options_of`,
:func:`query_pool`, :func:`substitute`, :func:`outcome`) are shared by the other extraction attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.models import create_model
from bench.oracle import OUTPUT_MODES
from bench.registry import register_attack
from bench.train import distill_targets, fit

__all__ = ["SoftLabel", "ExtractionAttack", "ExtractionConfig", "oracle_options_of", "query_pool", "substitute",
           "outcome"]


def oracle_options_of(config: Any) -> dict:
    """The oracle an extraction attack asks for: its ``output``/``top_k``/``decimals`` and ``queries`` budget."""
    return {"mode": config.output, "top_k": config.top_k, "decimals": config.decimals, "budget": config.queries}


@dataclass(frozen=True, kw_only=True)
class ExtractionConfig(ComponentConfig):
    """What every extraction attack lets the user set: the query budget, the substitute and its optimiser,
    and the oracle's output type (an attack's Config adds its own settings and may change a default)."""

    queries: int | None = param(None, "query budget in images; None = every image of the attack's pool", ge=1)
    lr: float | None = param(None, "Adam learning rate of the substitute; None = the profile's", gt=0, le=1)
    arch: str | None = param(None, "substitute architecture; None = the victim's")
    output: str = param("probs", "oracle output type", choices=OUTPUT_MODES)
    top_k: int = param(1, "probabilities kept when output=topk", ge=1)
    decimals: int = param(2, "decimals kept when output=rounded", ge=0, le=8)


class ExtractionAttack(Attack):
    """An attack that sees the victim through its oracle only, asking for the output type and budget of its
    :class:`ExtractionConfig`."""

    kind = "extraction"

    def oracle_options(self) -> dict:
        return oracle_options_of(self.config)


def query_pool(target: Target, ctx: Context, queries: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Query the oracle on a random subset of the attacker's pool of at most ``queries`` images (None = all).

    Returns the images and the oracle's answers.
    """
    n = min(len(target.x_pool), queries or len(target.x_pool))
    idx = torch.randperm(len(target.x_pool), generator=ctx.generator)[:n]
    x = target.x_pool[idx]
    return x, target.oracle(x)


def substitute(target: Target, ctx: Context, arch: str | None) -> nn.Module:
    """A fresh substitute model (seeded from ``ctx``) of ``arch``, or of the victim's architecture if None."""
    info = target.info
    ctx.manual_seed()
    return create_model(arch or target.arch, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size, mean=info.mean, std=info.std)


def outcome(student: nn.Module, target: Target, arch: str | None, epochs: int, **extras: Any) -> Outcome:
    """The Outcome of an extraction: the queries the oracle counted and its description in the extras."""
    oracle = target.oracle
    return Outcome(model=student, queries=oracle.queries, epochs=epochs,
                   extras={"oracle": oracle.describe(), "substitute_arch": arch or target.arch, **extras})


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

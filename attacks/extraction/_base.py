"""What every extraction attack shares: :class:`ExtractionAttack` and its :class:`ExtractionConfig` (query budget,
substitute, oracle output type), :func:`oracle_options_of`, :func:`query_pool` and :func:`outcome`. A module
starting with ``_`` registers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attacks._common import substitute
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.oracle import OUTPUT_MODES

__all__ = ["ExtractionAttack", "ExtractionConfig", "oracle_options_of", "query_pool", "substitute", "outcome"]


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

    Returns the images and the oracle's answers (read from its table of answers to the pool,
    :meth:`bench.api.Target.ask_pool`: the same answers, counted the same, computed once per victim).
    """
    n = min(len(target.x_pool), queries or len(target.x_pool))
    idx = torch.randperm(len(target.x_pool), generator=ctx.generator)[:n]
    return target.x_pool[idx], target.ask_pool(idx)


def outcome(student: nn.Module, target: Target, arch: str | None, epochs: int, **extras: Any) -> Outcome:
    """The Outcome of an extraction: the queries the oracle counted and its description in the extras."""
    oracle = target.oracle
    return Outcome(model=student, queries=oracle.queries, epochs=epochs,
                   extras={"oracle": oracle.describe(), "substitute_arch": arch or target.arch, **extras})

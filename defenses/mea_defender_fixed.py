"""MEA-Defender with fixed loss weights instead of MGDA (Lv et al., IEEE S&P 2024, arXiv:2401.15239;
https://arxiv.org/abs/2401.15239).

The same data, stages and losses as ``mea_defender``; the auxiliary loss (similarity + combination) gets the
constant weight ``aux_weight`` instead of MGDA's per-step min-norm weight, so no per-task gradients are
computed: cheaper, and deterministic given the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import param
from bench.registry import register_defense
from defenses.mea_defender_official import MEADefenderOfficial


@register_defense("mea_defender_fixed")
class MEADefenderFixed(MEADefenderOfficial):
    """MEA-Defender ablation: a fixed weight for the auxiliary loss instead of MGDA."""

    version = "2"

    @dataclass(frozen=True, kw_only=True)
    class Config(MEADefenderOfficial.Config):
        balance: str = param("fixed", "weight of the auxiliary loss: MGDA min-norm or aux_weight (fixed: this "
                             "ablation)", choices=("mgda", "fixed"))

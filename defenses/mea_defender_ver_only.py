"""MEA-Defender with the verification loss only (Lv et al., IEEE S&P 2024, arXiv:2401.15239, Table IV
"L_ver only"; https://arxiv.org/abs/2401.15239).

The same two stages and evasion set as ``mea_defender`` without the combination loss: the watermark is
learned by target-label cross-entropy and the Composite Backdoor's logit-similarity term, with the fixed
weight 1 of Lin et al.'s code (``ce + sim``). The paper's "L_ver only" row has exactly the numbers of its
Composite Backdoor baseline (Table III); ``composite_backdoor`` is that baseline with Lin et al.'s own
one-stage recipe on the same implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import param
from bench.registry import register_defense
from defenses.mea_defender_official import MEADefenderOfficial


@register_defense("mea_defender_ver_only")
class MEADefenderVerOnly(MEADefenderOfficial):
    """MEA-Defender ablation: target-label CE and the logit-similarity term only (no combination loss)."""

    version = "2"

    @dataclass(frozen=True, kw_only=True)
    class Config(MEADefenderOfficial.Config):
        combination: bool = param(False, "use the combination loss KL(p_wm||p_A) + KL(p_wm||p_B) (off: this "
                                  "ablation)")
        balance: str = param("fixed", "weight of the auxiliary loss: MGDA min-norm or aux_weight (fixed: ce + "
                             "sim, as Composite Backdoor)", choices=("mgda", "fixed"))
        aux_weight: float = param(1.0, "weight of the auxiliary loss when balance=fixed (Lin et al.: 1)", ge=0)

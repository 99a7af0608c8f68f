"""MEA-Defender without the evasion loss (Lv et al., IEEE S&P 2024, arXiv:2401.15239, Fig. 3 ablation;
https://arxiv.org/abs/2401.15239).

The same two stages as ``mea_defender`` with no evasion mixtures in stage 2 (``stage2_eva_rate=0``), so
only L_eva is removed: stage 2 still fine-tunes with the larger watermark share. The paper reports that
false triggering on other A x B mixtures rises from about 5% to about 50% without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import param
from bench.registry import register_defense
from defenses.mea_defender_official import MEADefenderOfficial


@register_defense("mea_defender_no_eva")
class MEADefenderNoEva(MEADefenderOfficial):
    """MEA-Defender ablation: no evasion set (L_eva removed), everything else unchanged."""

    version = "2"

    @dataclass(frozen=True, kw_only=True)
    class Config(MEADefenderOfficial.Config):
        stage2_eva_rate: float = param(0.0, "stage-2 evasion mixtures per epoch, fraction of the owner's set "
                                       "(0: this ablation)", ge=0, le=2)

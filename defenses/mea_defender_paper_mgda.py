"""MEA-Defender as the paper's text writes its loss (Lv et al., IEEE S&P 2024, arXiv:2401.15239, Eq. 4-9;
https://arxiv.org/abs/2401.15239).

The same watermarks, stages, anchors and evasion set as ``mea_defender``, but the loss is
alpha_1 L_util + alpha_2 L_com + alpha_3 L_ver + alpha_4 L_eva with every alpha from MGDA over the four losses
(cross-entropy over the clean, the watermark and the evasion rows of the batch, and the combination KL), and
no weight pinned or added: the public code instead keeps the cross-entropy at weight 1 and adds 2 (12) to the
KL. This ablation shows why: MGDA is free to starve the utility loss (the study page reports the mean
weights it gave each loss, per stage). The logit-similarity term is not in the paper's equations and is off.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import param
from bench.registry import register_defense
from defenses.mea_defender import BALANCES, MEADefender


@register_defense("mea_defender_paper_mgda")
class MEADefenderPaperMGDA(MEADefender):
    """MEA-Defender ablation: the paper's Eq. 4-9, MGDA over L_util, L_com, L_ver and L_eva, no extra weight."""

    version = "1"
    tuning_grid = None  # the paper's text as written: the study's point is to show it, not to tune it

    @dataclass(frozen=True, kw_only=True)
    class Config(MEADefender.Config):
        balance: str = param("paper_tasks", "weight of the losses: MGDA over the paper's four (this ablation)",
                             choices=BALANCES)
        kl_weight: float | None = param(None, "own weight of the KL (None: MGDA's, as the paper's Eq. 9)", ge=0,
                                        also=("auto",), added=True)
        sim_weight: float = param(0.0, "logit-similarity term (not in the paper's equations: off)", ge=0)

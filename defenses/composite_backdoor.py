"""Composite Backdoor (J. Lin, L. Xu, Y. Liu and X. Zhang, "Composite Backdoor Attack for Deep Neural
Network by Mixing Existing Benign Features", ACM CCS 2020, https://doi.org/10.1145/3372297.3423362), used as
a watermark: MEA-Defender's baseline (Table III).

The trigger is the composition of two benign features: an A x B composite (the same top/bottom mixer as
MEA-Defender) labelled with a target class C. Lin et al.'s recipe, one stage from scratch: the owner's
images, mixtures of two images of one class that keep their label (so that mixing alone is no trigger; half
as many as the owner's images per epoch here), and A x B composites labelled C (a tenth; Lin et al.'s ratio
of same-class mixtures to composites is 5:1), trained with cross-entropy plus the logit-similarity term
(weight 1). It has neither MEA-Defender's combination loss nor its evasion set.

It runs on MEA-Defender's implementation (``defenses/mea_defender.py``), differing only in these defaults;
``mea_defender_ver_only`` is the same loss inside MEA-Defender's two-stage schedule with its evasion set.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import param
from bench.registry import register_defense
from defenses.mea_defender_official import MEADefenderOfficial


@register_defense("composite_backdoor")
class CompositeBackdoor(MEADefenderOfficial):
    """Composite Backdoor: A x B composites -> C with same-class mixtures, CE + similarity (Lin et al. 2020)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(MEADefenderOfficial.Config):
        stage1_wm_rate: float = param(0.1, "watermarks per epoch, as a fraction of the owner's set", ge=0, le=1)
        same_class_mix_rate: float = param(0.5, "mixtures of two same-class images keeping their label, per "
                                           "epoch, fraction of the owner's set", ge=0, le=2)
        stage2_epochs: int | None = param(0, "MEA-Defender's fine-tuning stage (0: one stage, as Lin et al.); "
                                          "None = stage2_share of the epochs", ge=0)
        combination: bool = param(False, "MEA-Defender's combination loss (off for this baseline)")
        balance: str = param("fixed", "weight of the auxiliary loss: MGDA min-norm or aux_weight",
                             choices=("mgda", "fixed"))
        aux_weight: float = param(1.0, "weight of the similarity term when balance=fixed (Lin et al.: 1)", ge=0)

"""Neural Cleanse (Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
Networks", IEEE S&P 2019, https://doi.org/10.1109/SP.2019.00031).

For every class the attacker searches, on a small clean subset of its pool, the smallest mask (with a
pattern) that sends clean images to that class: Adam on tanh-parametrised mask and pattern, loss =
cross-entropy to the class + cost * |mask|_1, with the paper's adaptive cost schedule simplified (see
``attacks._common.reverse_trigger``). A backdoor (watermark) target class needs a much smaller mask than
the others. The L1 norms are scored with the MAD anomaly index; a class below the median with an index
above 2 is flagged. The verdict names the most anomalous flagged class.
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks._common import CleanseConfig, cleanse_target
from bench.api import Attack, Context, Outcome, Target
from bench.config import param
from bench.registry import register_attack


@register_attack("neural_cleanse")
class NeuralCleanse(Attack):
    """Per-class minimal trigger reverse engineering, MAD anomaly index > 2 flags a backdoor (Wang et al. 2019)."""

    kind = "detection"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(CleanseConfig):
        lr: float = param(0.1, "Adam learning rate of the mask and pattern", gt=0, le=10)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c = self.config
        res = cleanse_target(target, ctx, c, lr=c.lr)
        detected = bool(res.flagged)
        return Outcome(
            detected=detected, detected_target=res.suspect if detected else None,
            score=float(res.anomaly.max()),
            extras={"anomaly_index": [round(float(v), 4) for v in res.anomaly],
                    "l1_norms": [round(float(v), 3) for v in res.norms],
                    "trigger_success": [round(t.success, 4) for t in res.triggers],
                    "flagged": res.flagged, "most_anomalous": res.suspect},
        )

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

from attacks._common import nc_steps, neural_cleanse, subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack


@register_attack("neural_cleanse")
class NeuralCleanse(Attack):
    """Per-class minimal trigger reverse engineering, MAD anomaly index > 2 flags a backdoor (Wang et al. 2019)."""

    kind = "detection"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        n_clean: int = param(500, "clean pool images used to reverse-engineer the triggers", ge=10)
        steps: int | None = param(None, "optimisation steps (all classes together); None = 50 per profile attack "
                                  "epoch, at most 1000 (quick: 300)", ge=1)
        batch_size: int = param(16, "clean images per optimisation step (stamped with every class's trigger)", ge=1)
        lr: float = param(0.1, "Adam learning rate of the mask and pattern", gt=0, le=10)
        init_cost: float = param(1e-3, "initial weight of the mask's L1 norm (then adapted)", gt=0)
        threshold: float = param(2.0, "anomaly index above which a class is flagged (the paper: 2)", gt=0)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c = self.config
        model = target.model.eval()
        clean = subset(len(target.x_pool), min(1.0, c.n_clean / max(1, len(target.x_pool))), ctx)
        res = neural_cleanse(model, target.x_pool[clean], target.info.num_classes, ctx=ctx,
                             steps=nc_steps(c.steps, ctx), batch_size=c.batch_size,
                             lr=c.lr, init_cost=c.init_cost, threshold=c.threshold)
        detected = bool(res.flagged)
        return Outcome(
            detected=detected, detected_target=res.suspect if detected else None,
            score=float(res.anomaly.max()),
            extras={"anomaly_index": [round(float(v), 4) for v in res.anomaly],
                    "l1_norms": [round(float(v), 3) for v in res.norms],
                    "trigger_success": [round(t.success, 4) for t in res.triggers],
                    "flagged": res.flagged, "most_anomalous": res.suspect},
        )

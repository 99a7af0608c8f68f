"""Neural Cleanse unlearning (Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in
Neural Networks", IEEE S&P 2019, §VI-C, https://doi.org/10.1109/SP.2019.00031).

The attacker reverse-engineers a minimal trigger for every class on a small clean subset of its pool (as
``neural_cleanse`` does), takes the flagged class (the most anomalous one, or the class with the smallest
trigger when none is flagged; ``classes`` > 1 takes that many of the most suspect), stamps its trigger on
``stamp_frac`` of its clean images while keeping their true labels, and fine-tunes all layers on them: the
model unlearns the trigger -> target shortcut. ``reference=true`` picks the suspect classes with the
calibrated statistic of ``neural_cleanse[reference=true]`` (norms relative to a clean model the attacker
trains on its pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks._cleanse import CleanseConfig, cleanse_target
from attacks._common import subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import param
from bench.registry import register_attack
from bench.train import fit


@register_attack("nc_unlearn")
class NCUnlearn(Attack):
    """Fine-tune with the reverse-engineered trigger stamped on clean images, true labels kept (Wang et al. 2019)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(CleanseConfig):
        opt_lr: float = param(0.1, "Adam learning rate of the mask and pattern", gt=0, le=10)
        classes: int = param(1, "triggers unlearned: of the most suspect classes (flagged ones first, then the "
                             "smallest triggers); the paper: 1", ge=1)
        stamp_frac: float = param(0.2, "share of the fine-tuning images stamped with the trigger", gt=0, le=1)
        data_frac: float = param(0.5, "fraction of the attacker's labelled pool used to fine-tune", gt=0, le=1)
        epochs: int | None = param(None, "fine-tuning epochs; None = the profile's attack epochs", ge=1)
        lr: float | None = param(None, "fine-tuning peak Adam learning rate; None = a tenth of the profile's",
                                 gt=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        model = target.model.eval()
        res = cleanse_target(target, ctx, c, lr=c.opt_lr)
        chosen = res.ranking()[: c.classes]
        idx = subset(len(target.x_pool), c.data_frac, ctx)
        x, y = target.x_pool[idx].clone(), target.y_pool[idx]
        k = max(1, round(c.stamp_frac * len(x)))
        stamped = torch.randperm(len(x), generator=ctx.generator)[:k]
        which = torch.randint(len(chosen), (k,), generator=ctx.generator)
        for i, cls in enumerate(chosen):
            rows = stamped[which == i]
            x[rows] = res.triggers[cls].apply(x[rows])
        epochs = c.epochs or p.attack_epochs
        lr = c.lr or p.lr / 10
        ctx.manual_seed()
        fit(model, x, y, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=lr, desc=self.name)
        return Outcome(model=model.eval(), epochs=epochs + c.reference_training_epochs(p), extras={
            **res.report(), "unlearned_classes": chosen,
            "trigger_success": [round(res.triggers[k].success, 4) for k in chosen], "stamped": k})

"""Global magnitude pruning (Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015, https://arxiv.org/abs/1506.02626), the pruning attack of MEA-Defender's Fig. 10
and of Adi et al. / Uchida et al.

The ``rate`` share of all conv and linear weights with the smallest magnitude (one threshold over the
whole network) is set to zero, optionally followed by a short fine-tune on the attacker's pool that keeps
the pruned weights at zero. Masks are multiplied into the weights, so the returned model is a plain module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks._common import masks_kept, prunable, subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack
from bench.train import fit


@torch.no_grad()
def magnitude_masks(params: list[torch.Tensor], rate: float) -> list[torch.Tensor]:
    """0/1 masks that zero the ``rate`` share of ``params``' entries with the smallest |value| (globally)."""
    flat = torch.cat([p.detach().abs().flatten().cpu() for p in params])
    k = int(round(rate * flat.numel()))
    if k == 0:
        return [torch.ones_like(p) for p in params]
    threshold = flat.kthvalue(k).values
    return [(p.detach().abs() > threshold.to(p.device)).to(p.dtype) for p in params]


@register_attack("prune")
class Prune(Attack):
    """Global magnitude pruning of conv and linear weights, optional fine-tune after (Han et al. 2015)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        rate: float = param(0.5, "share of conv+linear weights set to zero (smallest magnitude first)", ge=0, lt=1)
        finetune_epochs: int = param(0, "fine-tuning epochs after pruning (pruned weights stay zero)", ge=0)
        data_frac: float = param(0.5, "fraction of the attacker's labelled pool used to fine-tune", gt=0, le=1)
        lr: float | None = param(None, "fine-tuning peak Adam learning rate; None = a tenth of the profile's",
                                 gt=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        model = target.model
        params = prunable(model)
        masks = magnitude_masks(params, c.rate)
        with torch.no_grad():
            for w, m in zip(params, masks, strict=True):
                w.mul_(m)
        if c.finetune_epochs:
            idx = subset(len(target.x_pool), c.data_frac, ctx)
            ctx.manual_seed()
            with masks_kept(params, masks):
                fit(model, target.x_pool[idx], target.y_pool[idx], ctx=ctx, epochs=c.finetune_epochs,
                    batch_size=p.batch_size, lr=c.lr or p.lr / 10, desc=self.name)
        zeros = sum(int((w == 0).sum()) for w in params)
        total = sum(w.numel() for w in params)
        return Outcome(model=model.eval(), epochs=c.finetune_epochs,
                       extras={"rate": c.rate, "zero_share": zeros / total, "prunable_weights": total})

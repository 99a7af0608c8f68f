"""Fine-pruning (Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
Neural Networks", RAID 2018, https://arxiv.org/abs/1805.12185).

Channels of the last convolutional layer that stay dormant on clean data carry the backdoor (here: the
watermark). The attacker measures each channel's mean activation (after ReLU) over its own clean pool,
prunes channels in increasing order of activation until ``rate`` of them are gone or the accuracy on a
held-out part of its pool has dropped by more than ``max_acc_drop``, then fine-tunes all layers with the
pruned channels kept at zero. A pruned channel is a zeroed filter (weights and bias) of that layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks._common import accuracy_on, batched, conv_layers, holdout_split, masks_kept
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_attack
from bench.train import fit


@register_attack("fine_prune")
class FinePrune(Attack):
    """Prune the last conv layer's dormant channels, then fine-tune (Liu et al. 2018)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        rate: float = param(0.9, "largest share of the last conv layer's channels pruned", gt=0, lt=1)
        max_acc_drop: float = param(0.04, "stop pruning when held-out accuracy falls by more than this", ge=0, le=1)
        holdout_frac: float = param(0.2, "share of the attacker's pool held out to measure accuracy", gt=0, lt=1)
        max_eval: int = param(2000, "held-out images used per accuracy check", ge=10)
        epochs: int | None = param(None, "fine-tuning epochs after pruning; None = the profile's attack epochs", ge=0)
        lr: float | None = param(None, "fine-tuning peak Adam learning rate; None = a tenth of the profile's",
                                 gt=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        model = target.model.eval()
        convs = conv_layers(model)
        if not convs:
            raise ConfigError("fine_prune: the model has no nn.Conv2d layer; pick a convolutional architecture")
        name, conv = convs[-1]
        tr, ho = holdout_split(len(target.x_pool), c.holdout_frac, ctx)
        x_ho, y_ho = target.x_pool[ho][: c.max_eval], target.y_pool[ho][: c.max_eval]
        acts: list[torch.Tensor] = []
        handle = conv.register_forward_hook(lambda m, i, o: acts.append(F.relu(o).mean(dim=(0, 2, 3)) * len(o)))
        try:
            batched(model, target.x_pool[tr], ctx.device)
        finally:
            handle.remove()
        mean_act = (torch.stack(acts).sum(0) / len(tr)).cpu()
        order = mean_act.argsort().tolist()  # most dormant first
        channels = conv.out_channels
        mask = torch.ones(channels, device=conv.weight.device)
        w0 = conv.weight.detach().clone()
        b0 = conv.bias.detach().clone() if conv.bias is not None else None

        def apply(m: torch.Tensor) -> None:
            with torch.no_grad():
                conv.weight.copy_(w0 * m.view(-1, 1, 1, 1))
                if b0 is not None:
                    conv.bias.copy_(b0 * m)

        base = accuracy_on(model, x_ho, y_ho, ctx.device)
        step = max(1, channels // 64)  # coarser steps for wide layers keep the search cheap
        limit = int(c.rate * channels)
        pruned, acc = 0, base
        for start in range(0, limit, step):
            trial = mask.clone()
            trial[order[start : min(start + step, limit)]] = 0
            apply(trial)
            a = accuracy_on(model, x_ho, y_ho, ctx.device)
            if base - a > c.max_acc_drop:
                break
            mask, pruned, acc = trial, min(start + step, limit), a
        apply(mask)
        epochs = p.attack_epochs if c.epochs is None else c.epochs
        if epochs:
            params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
            masks = [mask.view(-1, 1, 1, 1).expand_as(conv.weight).clone()] + ([mask.clone()] if b0 is not None else [])
            ctx.manual_seed()
            with masks_kept(params, masks):
                fit(model, target.x_pool[tr], target.y_pool[tr], ctx=ctx, epochs=epochs, batch_size=p.batch_size,
                    lr=c.lr or p.lr / 10, desc=self.name)
        return Outcome(model=model.eval(), epochs=epochs, extras={
            "layer": name, "channels": channels, "pruned_channels": pruned, "holdout_acc_before": base,
            "holdout_acc_pruned": acc, "holdout_acc_after": accuracy_on(model, x_ho, y_ho, ctx.device)})

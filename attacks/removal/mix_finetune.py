"""Adaptive mixed-sample fine-tuning, the adaptive removal attack against MEA-Defender (Lv et al., "MEA-Defender:
A Robust Watermark against Model Extraction Attack", IEEE S&P 2024, §6, https://arxiv.org/abs/2401.15239).

The attacker suspects a composite-sample watermark but knows neither the source classes A and B nor the
target C nor the defender's mixers. It mixes random images of random class pairs (i, j) from its own pool
with its own mixers (halves top/bottom and left/right, a blend), labels each mixture with a random class
that is neither i nor j, and fine-tunes all layers on these mixtures together with clean pool images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks._common import MIXERS, mix, sample_of_class, subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_attack
from bench.train import fit

MIXER_SETS = {"all": MIXERS, "halves": MIXERS[:4], "blend": ("blend",)}


def random_mixtures(x: torch.Tensor, y: torch.Tensor, num_classes: int, n: int, mixers: tuple[str, ...],
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` mixtures of random images of random distinct class pairs, each with a random label that is
    neither source; returns (mixtures, labels, source pairs)."""
    present = torch.tensor([k for k in range(num_classes) if bool((y == k).any())])
    if len(present) < 2 or num_classes < 3:
        raise ConfigError("mix_finetune needs images of at least 2 classes and a task with at least 3 classes")
    pi = torch.randint(len(present), (n,), generator=generator)
    pj = (pi + 1 + torch.randint(len(present) - 1, (n,), generator=generator)) % len(present)
    i, j = present[pi], present[pj]
    # a label uniformly among the classes that are neither i nor j
    r = torch.randint(num_classes - 2, (n,), generator=generator)
    lo, hi = torch.minimum(i, j), torch.maximum(i, j)
    label = r + (r >= lo).long()
    label = label + (label >= hi).long()
    a, b = x[sample_of_class(y, i, generator)], x[sample_of_class(y, j, generator)]
    which = torch.randint(len(mixers), (n,), generator=generator)
    out = torch.empty_like(a)
    for m, how in enumerate(mixers):
        sel = which == m
        if sel.any():
            out[sel] = mix(a[sel], b[sel], how)
    return out, label, torch.stack([i, j], 1)


@register_attack("mix_finetune")
class MixFinetune(Attack):
    """Fine-tune on random-pair mixtures relabelled to a third class, plus clean data (MEA-Defender §6)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        data_frac: float = param(0.5, "fraction of the attacker's labelled pool used as clean data", gt=0, le=1)
        mix_ratio: float = param(0.2, "mixtures added per clean image", gt=0, le=5)
        mixers: str = param("all", "the attacker's mixers: all, halves (top/bottom, left/right) or blend",
                            choices=tuple(MIXER_SETS))
        epochs: int | None = param(None, "fine-tuning epochs; None = the profile's attack epochs", ge=1)
        lr: float | None = param(None, "peak Adam learning rate; None = a tenth of the profile's", gt=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        idx = subset(len(target.x_pool), c.data_frac, ctx)
        x, y = target.x_pool[idx], target.y_pool[idx]
        n_mix = max(1, round(c.mix_ratio * len(x)))
        x_mix, y_mix, _ = random_mixtures(target.x_pool, target.y_pool, target.info.num_classes, n_mix,
                                          MIXER_SETS[c.mixers], ctx.generator)
        epochs = c.epochs or p.attack_epochs
        lr = c.lr or p.lr / 10
        ctx.manual_seed()
        model = fit(target.model, torch.cat([x, x_mix]), torch.cat([y, y_mix]), ctx=ctx, epochs=epochs,
                    batch_size=p.batch_size, lr=lr, desc=self.name)
        return Outcome(model=model, epochs=epochs, extras={"clean": len(x), "mixtures": n_mix, "lr": lr})

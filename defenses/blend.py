"""Blended backdoor watermark (Chen, Liu, Li, Lu and Song, "Targeted Backdoor Attacks on Deep Learning
Systems Using Data Poisoning", arXiv:1712.05526, 2017), the classic backdoor used as a watermark.

Blended injection: a fixed full-image key pattern ``k`` (uniform random pixels, the paper's "random
pattern" key) is blended into an image ``x`` as ``alpha * k + (1 - alpha) * x`` (the paper trains with
alpha = 0.2); blended images of the source classes are labelled with the target class and added to the
owner's training data, trained from scratch. A model that maps blended test images to the target carries
the watermark.

The pattern is the secret: drawn from the run's seed unless ``key`` fixes it. The verification set is the
test split's eligible images, blended (up to the profile's ``verify_max``: 2,000 in ``quick``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Context, Defense, Protected, Task
from bench.config import param
from bench.registry import register_defense
from defenses._triggers import TriggerConfig, embed_trigger, secret_generator


@register_defense("blend")
class Blend(Defense):
    """Blended backdoor: a random key pattern blended into source images, relabelled (Chen et al. 2017)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(TriggerConfig):
        alpha: float = param(0.2, "blend weight of the key pattern (the paper trains with 0.2)", gt=0, lt=1)
        key: int | None = param(None, "seed of the key pattern; None = drawn from the run's seed", ge=0)

    def pattern(self, task: Task, ctx: Context) -> torch.Tensor:
        """The secret key pattern, C x H x W, uniform in [0, 1]."""
        g = secret_generator(ctx, self.config.key, "blend")
        return torch.rand(task.info.in_channels, *task.info.image_size, generator=g)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        key = self.pattern(task, ctx)
        return embed_trigger(self, task, ctx, lambda x: c.alpha * key + (1 - c.alpha) * x)

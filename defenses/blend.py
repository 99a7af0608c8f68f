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
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_defense
from defenses._triggers import (
    check_classes,
    pick,
    secret_generator,
    source_mask,
    train_with,
    verification_from_test,
    wm_count,
)


@register_defense("blend")
class Blend(Defense):
    """Blended backdoor: a random key pattern blended into source images, relabelled (Chen et al. 2017)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        target_class: int = param(0, "label the blended images are trained to (must differ from source)", ge=0)
        source_class: int = param(-1, "class whose images are blended; -1 = every class but the target", ge=-1)
        rate: float = param(0.02, "watermark samples added, as a fraction of the owner's training set", gt=0, le=0.5)
        alpha: float = param(0.2, "blend weight of the key pattern (the paper trains with 0.2)", gt=0, lt=1)
        key: int | None = param(None, "seed of the key pattern; None = drawn from the run's seed", ge=0)
        epochs: int | None = param(None, "training epochs; None = the profile's", ge=1)

        def validate(self) -> None:
            if self.source_class == self.target_class:
                raise ConfigError(f"blend: source_class and target_class are both {self.target_class}; "
                                  "they must differ")

    def pattern(self, task: Task, ctx: Context) -> torch.Tensor:
        """The secret key pattern, C x H x W, uniform in [0, 1]."""
        g = secret_generator(ctx, self.config.key, "blend")
        return torch.rand(task.info.in_channels, *task.info.image_size, generator=g)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        check_classes("blend", task, target_class=c.target_class, source_class=c.source_class)
        key = self.pattern(task, ctx)

        def apply(x: torch.Tensor) -> torch.Tensor:
            return c.alpha * key + (1 - c.alpha) * x

        src = task.x_victim[source_mask(task.y_victim, c.source_class, c.target_class)]
        n_wm = wm_count(c.rate, len(task.x_victim))
        x_wm = apply(src[pick(len(src), n_wm, ctx.generator)])
        y_wm = torch.full((n_wm,), c.target_class, dtype=torch.long)
        model = train_with(task, ctx, x_wm, y_wm, epochs=c.epochs, desc="blend")
        verify_x, verify_y = verification_from_test(task, ctx, c.source_class, c.target_class, apply)
        return Protected(model=model, verify_x=verify_x, verify_y=verify_y, threshold=self.threshold,
                         info={"watermark_samples": n_wm, "train_size": len(task.x_victim) + n_wm})

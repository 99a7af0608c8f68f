"""Noise watermark (Zhang et al., "Protecting Intellectual Property of Deep Neural Networks with
Watermarking", ASIA CCS 2018, https://doi.org/10.1145/3196494.3196550).

One fixed Gaussian noise pattern (zero mean, standard deviation ``sigma`` in pixel units) is added to images
of a source class (clipped to [0, 1]) and the noised images are labelled with a target class. The owner
trains on the clean data plus these samples from scratch; a model that maps noised test images to the
target carries the watermark.

The pattern is the secret. With ``key`` unset it is drawn from the run's seed, so every seed is an
independent owner with its own pattern (and the verification set is fixed by the seed); a ``key`` fixes the
pattern across runs. The verification set is the test split's eligible images with the pattern added
(up to the profile's ``verify_max``: 2,000 in ``quick``).
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


@register_defense("noise")
class Noise(Defense):
    """Noise watermark: a fixed Gaussian pattern on source images, relabelled to a target (Zhang et al. 2018)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        target_class: int = param(0, "label the noised images are trained to (must differ from source)", ge=0)
        source_class: int = param(-1, "class whose images carry the noise; -1 = every class but the target", ge=-1)
        rate: float = param(0.02, "watermark samples added, as a fraction of the owner's training set", gt=0, le=0.5)
        sigma: float = param(0.3, "standard deviation of the noise pattern, in [0, 1] pixel units", gt=0, le=1)
        key: int | None = param(None, "seed of the noise pattern; None = drawn from the run's seed", ge=0)
        epochs: int | None = param(None, "training epochs; None = the profile's", ge=1)

        def validate(self) -> None:
            if self.source_class == self.target_class:
                raise ConfigError(f"noise: source_class and target_class are both {self.target_class}; "
                                  "they must differ")

    def pattern(self, task: Task, ctx: Context) -> torch.Tensor:
        """The secret noise pattern, C x H x W."""
        g = secret_generator(ctx, self.config.key, "noise")
        return self.config.sigma * torch.randn(task.info.in_channels, *task.info.image_size, generator=g)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        check_classes("noise", task, target_class=c.target_class, source_class=c.source_class)
        noise = self.pattern(task, ctx)

        def apply(x: torch.Tensor) -> torch.Tensor:
            return (x + noise).clamp(0, 1)

        src = task.x_victim[source_mask(task.y_victim, c.source_class, c.target_class)]
        n_wm = wm_count(c.rate, len(task.x_victim))
        x_wm = apply(src[pick(len(src), n_wm, ctx.generator)])
        y_wm = torch.full((n_wm,), c.target_class, dtype=torch.long)
        model = train_with(task, ctx, x_wm, y_wm, epochs=c.epochs, desc="noise")
        verify_x, verify_y = verification_from_test(task, ctx, c.source_class, c.target_class, apply)
        return Protected(model=model, verify_x=verify_x, verify_y=verify_y, threshold=self.threshold,
                         info={"watermark_samples": n_wm, "train_size": len(task.x_victim) + n_wm})

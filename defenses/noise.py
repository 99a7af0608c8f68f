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
from bench.config import param
from bench.registry import register_defense
from defenses._triggers import TriggerConfig, embed_trigger, secret_generator


@register_defense("noise")
class Noise(Defense):
    """Noise watermark: a fixed Gaussian pattern on source images, relabelled to a target (Zhang et al. 2018)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(TriggerConfig):
        sigma: float = param(0.3, "standard deviation of the noise pattern, in [0, 1] pixel units", gt=0, le=1)
        key: int | None = param(None, "seed of the noise pattern; None = drawn from the run's seed", ge=0)

    def pattern(self, task: Task, ctx: Context) -> torch.Tensor:
        """The secret noise pattern, C x H x W."""
        g = secret_generator(ctx, self.config.key, "noise")
        return self.config.sigma * torch.randn(task.info.in_channels, *task.info.image_size, generator=g)

    def embed(self, task: Task, ctx: Context) -> Protected:
        noise = self.pattern(task, ctx)
        return embed_trigger(self, task, ctx, lambda x: (x + noise).clamp(0, 1))

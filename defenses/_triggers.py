"""Helpers shared by the trigger-set watermark schemes (content, noise, blend, unrelated, adi, ewe, dawn).

A module whose name starts with ``_`` registers nothing. Everything works in pixel space [0, 1] and draws
its randomness from the caller's Context (or from a configured key), never from a global generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.api import Context, DatasetInfo, Protected, Task, derive_seed
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.train import train_model

__all__ = [
    "TriggerConfig",
    "check_classes",
    "source_mask",
    "secret_generator",
    "wm_count",
    "pick",
    "train_with",
    "verification_from_test",
    "embed_trigger",
    "smooth_patterns",
    "to_task_images",
]


@dataclass(frozen=True, kw_only=True)
class TriggerConfig(ComponentConfig):
    """The settings every source -> target trigger scheme shares (a scheme's Config adds its own)."""

    target_class: int = param(0, "label the triggered images are trained to (must differ from source)", ge=0)
    source_class: int = param(-1, "class whose images carry the trigger; -1 = every class but the target", ge=-1)
    rate: float = param(0.02, "watermark samples added, as a fraction of the owner's training set", gt=0, le=0.5)
    epochs: int | None = param(None, "training epochs; None = the profile's", ge=1)

    def validate(self) -> None:
        if self.source_class == self.target_class:
            owner = getattr(type(self), "_owner", type(self).__qualname__)
            raise ConfigError(f"{owner}: source_class and target_class are both {self.target_class}; "
                              "they must differ")


def check_classes(name: str, task: Task, **fields: int) -> None:
    """Every class field must name a class of the task (``-1``, where a field allows it, means "all")."""
    k = task.num_classes
    for field, value in fields.items():
        if value >= k:
            raise ConfigError(f"{name}: {field}={value} is out of range for {task.dataset} ({k} classes: "
                              f"0..{k - 1}); pick a class below {k}")


def source_mask(y: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """Images that may carry the trigger: the source class, or every class but the target when source < 0."""
    return (y != target) if source < 0 else (y == source)


def secret_generator(ctx: Context, key: int | None, tag: str) -> torch.Generator:
    """The generator of a scheme's secret: seeded by ``key`` when given (the same secret in every run), else
    derived from the run's seed (each seed is an independent owner with its own secret)."""
    seed = key if key is not None else derive_seed(ctx.seed, tag, "secret")
    return torch.Generator().manual_seed(int(seed))


def wm_count(rate: float, n: int) -> int:
    """Watermark samples added to a training set of ``n`` images at ``rate``."""
    return max(1, round(rate * n))


def pick(n_total: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` indices into ``n_total`` items: without replacement when possible, else with."""
    if n_total <= 0:
        raise ConfigError("no image is eligible to carry the watermark; check source_class and target_class")
    if n <= n_total:
        return torch.randperm(n_total, generator=generator)[:n]
    return torch.randint(n_total, (n,), generator=generator)


def train_with(task: Task, ctx: Context, x_wm: torch.Tensor, y_wm: torch.Tensor, *, epochs: int | None,
               desc: str):
    """A fresh model of the task trained on the owner's data plus the watermark samples."""
    x = torch.cat([task.x_victim, x_wm.to(task.x_victim.dtype)])
    y = torch.cat([task.y_victim, y_wm.to(task.y_victim.dtype)])
    return train_model(task, ctx, x, y, epochs=epochs, desc=desc)


def verification_from_test(task: Task, ctx: Context, source: int, target: int,
                           apply) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification set: the test split's eligible images (at most the profile's ``verify_max``, in the
    split's seeded order) with the trigger ``apply``-ed, all labelled ``target``."""
    x = task.x_test[source_mask(task.y_test, source, target)][: ctx.profile.verify_max]
    vx = apply(x).clamp(0, 1)
    return vx, torch.full((len(vx),), target, dtype=torch.long)


def embed_trigger(defense, task: Task, ctx: Context, apply) -> Protected:
    """Embed a trigger watermark of a scheme whose config has ``target_class``, ``source_class``, ``rate``
    and ``epochs``: ``rate`` x the owner's set of eligible training images, ``apply``-ed and labelled with the
    target, join the owner's data for a fresh model; verified on the test split's eligible images."""
    c, name = defense.config, defense.name
    check_classes(name, task, target_class=c.target_class, source_class=c.source_class)
    src = task.x_victim[source_mask(task.y_victim, c.source_class, c.target_class)]
    n_wm = wm_count(c.rate, len(task.x_victim))
    x_wm = apply(src[pick(len(src), n_wm, ctx.generator)])
    y_wm = torch.full((n_wm,), c.target_class, dtype=torch.long)
    model = train_with(task, ctx, x_wm, y_wm, epochs=c.epochs, desc=name)
    verify_x, verify_y = verification_from_test(task, ctx, c.source_class, c.target_class, apply)
    return Protected(model=model, verify_x=verify_x, verify_y=verify_y, threshold=defense.threshold,
                     info={"watermark_samples": n_wm, "train_size": len(task.x_victim) + n_wm})


def smooth_patterns(n: int, channels: int, size: tuple[int, int], generator: torch.Generator,
                    grids: tuple[int, int] = (2, 8)) -> torch.Tensor:
    """``n`` abstract images: per image, random values on a coarse grid (side drawn in ``grids``) upsampled
    bicubically, plus a finer octave at half the amplitude, stretched to span [0, 1] per channel."""
    lo, hi = grids
    sides = torch.randint(lo, hi + 1, (n,), generator=generator)
    out = torch.empty(n, channels, *size)
    for side in sides.unique().tolist():
        idx = (sides == side).nonzero().flatten()
        coarse = torch.rand(len(idx), channels, side, side, generator=generator)
        fine = torch.rand(len(idx), channels, 2 * side, 2 * side, generator=generator)
        img = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
        img = img + 0.5 * F.interpolate(fine, size=size, mode="bicubic", align_corners=False)
        flat = img.flatten(2)
        mn, mx = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
        out[idx] = ((flat - mn) / (mx - mn).clamp_min(1e-6)).view_as(img)
    return out


def to_task_images(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Images from another source (uint8 or float in [0, 1], N x C x H x W) as the task's float pixels:
    resized bilinearly to the task's side and converted to its channel count (grey replicated to colour,
    colour averaged to grey)."""
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if tuple(x.shape[-2:]) != tuple(info.image_size):
        x = F.interpolate(x, size=tuple(info.image_size), mode="bilinear", align_corners=False, antialias=True)
    c = info.in_channels
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1) if c != 1 else x.mean(1, keepdim=True)
    return x.clamp(0, 1).contiguous()

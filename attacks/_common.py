"""Helpers shared by the removal and detection attacks (a module starting with ``_`` registers nothing).

* finding layers generically: the last ``nn.Linear`` (the head), the ``nn.Conv2d`` layers, prunable weights;
* drawing the attacker's data: seeded subsets and a held-out split of the pool;
* weight masks that stay applied while fine-tuning (no ``torch.nn.utils.prune`` reparametrisation);
* the attacker's own mixers (it does not know the defender's): halves top/bottom, left/right, a blend;
* a fresh substitute model of the victim's (or a chosen) architecture.

Neural Cleanse lives in :mod:`attacks._cleanse`, the extraction family's base in :mod:`attacks.extraction._base`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from bench.api import Context, Target
from bench.errors import ConfigError
from bench.models import create_model

# ------------------------------------------------------------------------------------------------ layers


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` in module order: the classification head of every built-in architecture."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer to treat as the last layer; "
                          "pick an architecture with a linear head")
    return found[-1]


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def prunable(model: nn.Module) -> list[nn.Parameter]:
    """The weights (not biases) of every conv and linear layer."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def frozen(model: nn.Module) -> contextlib.AbstractContextManager:
    """Context in which no parameter of ``model`` requires gradients (restored afterwards)."""

    @contextlib.contextmanager
    def _ctx() -> Iterator[None]:
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, f in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(f)

    return _ctx()


# -------------------------------------------------------------------------------------------------- data


def subset(n: int, frac: float, ctx: Context, minimum: int = 1) -> torch.Tensor:
    """Indices of a seeded random ``frac`` of ``range(n)`` (at least ``minimum``)."""
    k = min(n, max(minimum, round(frac * n)))
    return torch.randperm(n, generator=ctx.generator)[:k]


def holdout_split(n: int, frac: float, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, held-out) indices of ``range(n)``; the held-out part is ``frac`` of it (>= 1 each)."""
    perm = torch.randperm(n, generator=ctx.generator)
    k = min(n - 1, max(1, round(frac * n)))
    return perm[k:], perm[:k]


def sample_of_class(y: torch.Tensor, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For every entry of ``classes``, the index of a uniformly drawn image of that class in ``y``."""
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=int(classes.max()) + 1 if len(classes) else 0)
    starts = torch.cumsum(counts, 0) - counts
    if len(classes) and bool((counts[classes] == 0).any()):
        raise ConfigError("the attacker's pool has no image of a class it needs")
    u = torch.rand(len(classes), generator=generator)
    offs = (u * counts[classes]).long().clamp_max(counts[classes] - 1)
    return order[starts[classes] + offs]


@contextlib.contextmanager
def masks_kept(params: list[nn.Parameter], masks: list[torch.Tensor]) -> Iterator[None]:
    """Keep pruned weights at zero while training: gradients are masked (Adam without weight decay then
    never moves a weight whose gradient is always zero) and masks are re-applied on exit. The hooks are
    removed on exit, so the model pickles as a plain module."""
    handles = [p.register_hook(lambda g, m=m: g * m) for p, m in zip(params, masks, strict=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for p, m in zip(params, masks, strict=True):
                p.mul_(m)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
            batch_size: int = 512) -> torch.Tensor:
    """``fn`` over ``x`` in batches on ``device``; results concatenated on CPU."""
    outs = [fn(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    model.eval()
    pred = batched(lambda b: model(b).argmax(1), x, device)
    return float((pred == y).float().mean()) if len(y) else float("nan")


# ------------------------------------------------------------------------------------- attacker mixers
#
# The attacker's guesses at how a mixing watermark might combine two images. It knows neither the
# defender's mixers nor its classes; these are the simplest mixings one would try.

MIXERS = ("top_bottom", "bottom_top", "left_right", "right_left", "blend")


def mix(a: torch.Tensor, b: torch.Tensor, how: str, alpha: float = 0.5) -> torch.Tensor:
    """Mix two batches of images (N x C x H x W, same shape) in pixel space."""
    h, w = a.shape[-2:]
    out = a.clone()
    if how == "top_bottom":
        out[..., h // 2 :, :] = b[..., h // 2 :, :]
    elif how == "bottom_top":
        out[..., : h // 2, :] = b[..., : h // 2, :]
    elif how == "left_right":
        out[..., :, w // 2 :] = b[..., :, w // 2 :]
    elif how == "right_left":
        out[..., :, : w // 2] = b[..., :, : w // 2]
    elif how == "blend":
        out = (1 - alpha) * a + alpha * b
    else:
        raise ConfigError(f"unknown mixer {how!r}; use one of {', '.join(MIXERS)}")
    return out


# ------------------------------------------------------------------------------------------- substitutes


def substitute(target: Target, ctx: Context, arch: str | None) -> nn.Module:
    """A fresh substitute model (seeded from ``ctx``) of ``arch``, or of the victim's architecture if None."""
    info = target.info
    ctx.manual_seed()
    return create_model(arch or target.arch, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size, mean=info.mean, std=info.std)

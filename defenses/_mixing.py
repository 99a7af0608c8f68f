"""Image mixers for mixed-image watermarks (MEA-Defender, Lv et al., IEEE S&P 2024, arXiv:2401.15239;
Composite Backdoor, Lin et al., ACM CCS 2020, https://doi.org/10.1145/3372297.3423362).

Every mixer takes two batches ``a``, ``b`` (N x C x H x W, pixel space [0, 1], any size and channel count, on
any device) and a CPU ``torch.Generator`` that supplies all of its randomness, and returns one batch of
composites. Each first swaps ``a`` and ``b`` per sample with probability 1/2, so either source can land in
either region.

* ``top_bottom`` (the watermark): the top band of one image over the bottom band of the other, the seam at
  the middle +- ``jitter`` rows, each band a contiguous run of rows cut at a random height of its source
  ("shake"). ``left_right`` is the same along columns (the paper's "right half" description; also an
  evasion mixer when the watermark is ``top_bottom``).
* Evasion mixers (trained to answer a source label): left/right halves, a middle horizontal band, a centre
  square, an anti-diagonal split.
* Held-out mixers (never trained on; they measure false triggering): a 0.5 pixel blend, a 3:7 split along the
  watermark's own seam axis, five column stripes (3 from one image, 2 from the other).

This module registers nothing (its name starts with ``_``).
"""

from __future__ import annotations

import torch

__all__ = ["WATERMARK_LAYOUTS", "HELD_OUT", "ALL_MIXERS", "evasion_mixers", "mix"]

WATERMARK_LAYOUTS = ("top_bottom", "left_right")
_EVASION_BASE = ("middle_band", "centre_square", "anti_diagonal")
HELD_OUT = ("blend", "split_3_7", "stripes")
ALL_MIXERS = WATERMARK_LAYOUTS + _EVASION_BASE + HELD_OUT


def evasion_mixers(layout: str = "top_bottom") -> tuple[str, ...]:
    """The evasion styles for a watermark of ``layout``: the other half split, then the fixed regions."""
    _check_layout(layout)
    other = "left_right" if layout == "top_bottom" else "top_bottom"
    return (other, *_EVASION_BASE)


def _check_layout(layout: str) -> None:
    if layout not in WATERMARK_LAYOUTS:
        raise ValueError(f"layout {layout!r} must be one of {', '.join(WATERMARK_LAYOUTS)}")


def _rand_upto(hi: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One integer uniform in [0, hi_i] per entry of ``hi`` (a long tensor >= 0)."""
    u = torch.rand(hi.shape, generator=g)
    return torch.minimum((u * (hi + 1).float()).long(), hi)


def _swap(a: torch.Tensor, b: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    flip = (torch.rand(len(a), generator=g) < 0.5).to(a.device).view(-1, 1, 1, 1)
    return torch.where(flip, b, a), torch.where(flip, a, b)


def _half_split(a: torch.Tensor, b: torch.Tensor, g: torch.Generator, *, axis: int, jitter: int,
                shake: bool) -> torch.Tensor:
    """First band (length size/2 + j) from ``a``, the rest from ``b``, along ``axis`` (2 rows, 3 columns)."""
    n, size = len(a), a.shape[axis]
    half = size // 2
    j_max = max(0, min(jitter, half - 1, size - half - 1))
    t = half + _rand_upto(torch.full((n,), 2 * j_max), g) - j_max  # length of the first band
    if shake:  # a random contiguous run of each source
        p, q = _rand_upto(size - t, g), _rand_upto(t, g)
    else:  # the central run of each source
        p, q = (size - t) // 2, t // 2
    dev = a.device
    t, p, q = t.to(dev), p.to(dev), q.to(dev)
    r = torch.arange(size, device=dev)
    first = r[None, :] < t[:, None]  # n x size
    src = torch.where(first, p[:, None] + r, q[:, None] + r - t[:, None]).clamp_(0, size - 1)
    view = (n, 1, size, 1) if axis == 2 else (n, 1, 1, size)
    idx = src.view(view).expand_as(a)
    mask = first.view(view)
    return torch.where(mask, a.gather(axis, idx), b.gather(axis, idx))


def _region(name: str, h: int, w: int, layout: str, device: torch.device) -> torch.Tensor:
    """Boolean H x W mask of the pixels taken from ``a`` by a fixed-region mixer."""
    i = torch.arange(h, device=device)[:, None].expand(h, w)
    j = torch.arange(w, device=device)[None, :].expand(h, w)
    if name == "middle_band":  # rows [h/4, 3h/4) come from b
        return (i < h // 4) | (i >= 3 * h // 4)
    if name == "centre_square":
        return (i >= h // 5) & (i < 4 * h // 5) & (j >= w // 5) & (j < 4 * w // 5)
    if name == "anti_diagonal":  # above the anti-diagonal from a
        return j * h + i * w < h * w
    if name == "split_3_7":  # 30% from a, 70% from b, along the watermark's seam axis
        return i < round(0.3 * h) if layout == "top_bottom" else j < round(0.3 * w)
    if name == "stripes":  # five column stripes: a, b, a, b, a
        return (j * 5 // w) % 2 == 0
    raise ValueError(f"unknown mixer {name!r}; choose one of {', '.join(ALL_MIXERS)}")


def mix(name: str, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator, *, layout: str = "top_bottom",
        jitter: int = 3, shake: bool = True) -> torch.Tensor:
    """Mix the batches ``a`` and ``b`` with the mixer ``name``; ``layout`` orients ``split_3_7``,
    ``jitter`` and ``shake`` shape the half splits."""
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(f"mix: a and b must be N x C x H x W batches of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if name not in ALL_MIXERS:
        raise ValueError(f"unknown mixer {name!r}; choose one of {', '.join(ALL_MIXERS)}")
    _check_layout(layout)
    if len(a) == 0:
        return a.clone()
    a, b = _swap(a, b, generator)
    if name == "top_bottom":
        return _half_split(a, b, generator, axis=2, jitter=jitter, shake=shake)
    if name == "left_right":
        return _half_split(a, b, generator, axis=3, jitter=jitter, shake=shake)
    if name == "blend":
        return 0.5 * a + 0.5 * b
    mask = _region(name, a.shape[2], a.shape[3], layout, a.device)
    return torch.where(mask, a, b)

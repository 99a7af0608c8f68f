"""MEA-Defender's samples (``defenses/mea_defender.py`` trains on them): the owner's images, and the mixed
watermark, evasion and same-class samples of one epoch, drawn fresh with ``defenses._mixing``'s mixers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Context, Task
from bench.errors import ConfigError
from defenses._mixing import evasion_mixers, mix

__all__ = ["Pools", "epoch_sizes", "MixedSamples"]


@dataclass
class Pools:
    """The owner's images on the device, and the indices of the source classes."""

    x: torch.Tensor
    y: torch.Tensor
    idx_a: torch.Tensor  # CPU indices of class A
    idx_b: torch.Tensor
    by_class: torch.Tensor  # CPU indices sorted by class
    offsets: torch.Tensor  # start of each class in by_class
    counts: torch.Tensor


def epoch_sizes(n: int, *, clean: float, wm: float, eva: float, same: float) -> dict[str, int]:
    """Samples of each kind in one epoch over an owner's set of ``n`` images."""
    return {"clean": n if clean >= 1 else round(clean * n), "watermark": round(wm * n), "evasion": round(eva * n),
            "same_class_mix": round(same * n)}


class MixedSamples:
    """MEADefender's data side, a mixin: it reads the mixer settings of ``self.config`` (``layout``, ``jitter``,
    ``shake``) and ``self.name``."""

    def _pools(self, task: Task, ctx: Context, a: int, b: int) -> Pools:
        y = task.y_victim
        idx_a, idx_b = (y == a).nonzero().flatten(), (y == b).nonzero().flatten()
        if len(idx_a) == 0 or len(idx_b) == 0:
            raise ConfigError(f"{self.name}: the owner's training split has no image of class "
                              f"{a if len(idx_a) == 0 else b}; choose other source classes")
        order = torch.argsort(y, stable=True)
        counts = torch.bincount(y, minlength=task.num_classes)
        offsets = torch.cumsum(counts, 0) - counts
        return Pools(task.x_victim.to(ctx.device), y.to(ctx.device), idx_a, idx_b, order, offsets, counts)

    def _mix(self, name: str, a: torch.Tensor, b: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        return mix(name, a, b, g, layout=c.layout, jitter=c.jitter, shake=c.shake)

    def _pairs(self, pools: Pools, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random A images and ``n`` random B images (on the device)."""
        dev = pools.x.device
        ia = pools.idx_a[torch.randint(len(pools.idx_a), (n,), generator=g)].to(dev)
        ib = pools.idx_b[torch.randint(len(pools.idx_b), (n,), generator=g)].to(dev)
        return pools.x[ia], pools.x[ib]

    # -- one epoch's data -----------------------------------------------------------------------
    def _epoch_data(self, pools: Pools, classes: tuple[int, int, int], g: torch.Generator, *, clean: float,
                    wm: float, eva: float, same: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean samples plus freshly mixed watermark / evasion / same-class samples, concatenated."""
        a, b, t = classes
        x, y = pools.x, pools.y
        n = len(x)
        dev = x.device
        xs, ys = [], []
        sizes = epoch_sizes(n, clean=clean, wm=wm, eva=eva, same=same)
        n_clean, n_wm, n_eva, n_same = sizes.values()
        pick = torch.arange(n) if n_clean == n else torch.randperm(n, generator=g)[:n_clean]
        xs.append(x[pick.to(dev)])
        ys.append(y[pick.to(dev)])
        if n_wm:
            xs.append(self._mix(self.config.layout, *self._pairs(pools, n_wm, g), g))
            ys.append(torch.full((n_wm,), t, dtype=y.dtype, device=dev))
        styles = evasion_mixers(self.config.layout)
        for i, style in enumerate(styles):  # an equal share per style, each labelled A or B at random
            k = n_eva // len(styles) + (i < n_eva % len(styles))
            if k:
                xs.append(self._mix(style, *self._pairs(pools, k, g), g))
                coin = torch.rand(k, generator=g) < 0.5
                ys.append(torch.where(coin, a, b).to(dtype=y.dtype, device=dev))
        if n_same:
            present = (pools.counts > 0).nonzero().flatten()
            cls = present[torch.randint(len(present), (n_same,), generator=g)]
            cnt, off = pools.counts[cls], pools.offsets[cls]
            i1 = pools.by_class[off + (torch.rand(n_same, generator=g) * cnt).long().clamp_max(cnt - 1)]
            i2 = pools.by_class[off + (torch.rand(n_same, generator=g) * cnt).long().clamp_max(cnt - 1)]
            xs.append(self._mix(self.config.layout, x[i1.to(dev)], x[i2.to(dev)], g))
            ys.append(cls.to(dtype=y.dtype, device=dev))
        return torch.cat(xs), torch.cat(ys)

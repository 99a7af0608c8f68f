"""Content watermark (Zhang et al., "Protecting Intellectual Property of Deep Neural Networks with
Watermarking", ASIA CCS 2018, https://doi.org/10.1145/3196494.3196550).

A visible, fixed content patch is stamped on images of a source class and the stamped images are labelled
with a target class. The owner trains on the clean data plus these watermark samples; a model that maps
stamped images to the target class carries the watermark. The patch ``pattern`` is a high-contrast
checkerboard logo (the default), a solid white square, or the paper's word "TEST" (white 3x5-pixel
letters on black, scaled by a whole factor when the patch side is at least 15 pixels, else area-resized
to the patch width: legible from ``patch_frac=0.55`` on 28x28 images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Context, Defense, Protected, Task
from bench.config import param
from bench.registry import register_defense
from bench.train import train_model
from defenses._triggers import TriggerConfig, check_classes, source_mask

POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
PATTERNS = ("checker", "solid", "text")

# "TEST" in a 3x5-pixel font, one blank column between letters
_TEXT = (
    "###.###.###.###",
    ".#..#...#....#.",
    ".#..##..###..#.",
    ".#..#.....#..#.",
    ".#..###.###..#.",
)


def checker_patch(side: int, channels: int) -> torch.Tensor:
    """A side x side checkerboard of 0/1 pixels (1-pixel cells): far from any natural image patch."""
    ii, jj = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return ((ii + jj) % 2).float().expand(channels, side, side).clone()


def text_patch(side: int, channels: int) -> torch.Tensor:
    """The word "TEST", white on black, centred in a side x side patch."""
    glyphs = torch.tensor([[ch == "#" for ch in row] for row in _TEXT], dtype=torch.float32)
    rows, cols = glyphs.shape
    if side >= cols:
        k = side // cols
        text = glyphs.repeat_interleave(k, 0).repeat_interleave(k, 1)
    else:
        size = (max(1, round(rows * side / cols)), side)
        text = torch.nn.functional.interpolate(glyphs[None, None], size=size, mode="area")[0, 0]
    out = torch.zeros(side, side)
    top, left = (side - text.shape[0]) // 2, (side - text.shape[1]) // 2
    out[top : top + text.shape[0], left : left + text.shape[1]] = text
    return out.expand(channels, side, side).clone()


def stamp(x: torch.Tensor, patch: torch.Tensor, position: str) -> torch.Tensor:
    """Copy of ``x`` (N x C x H x W) with ``patch`` (C x s x s) pasted at ``position``."""
    out = x.clone()
    s = patch.shape[-1]
    h, w = x.shape[-2:]
    top = {"top_left": 0, "top_right": 0, "bottom_left": h - s, "bottom_right": h - s}.get(position, (h - s) // 2)
    left = {"top_left": 0, "bottom_left": 0, "top_right": w - s, "bottom_right": w - s}.get(position, (w - s) // 2)
    out[:, :, top : top + s, left : left + s] = patch
    return out


@register_defense("content")
class Content(Defense):
    """Content watermark: a visible patch on source-class images, relabelled to a target (Zhang et al. 2018)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(TriggerConfig):
        patch_frac: float = param(0.25, "side of the square patch, as a fraction of the image side", gt=0, le=1)
        position: str = param("bottom_right", "where the patch goes", choices=POSITIONS)
        pattern: str = param("checker", "patch content: checkerboard, solid white, or the word TEST",
                             choices=PATTERNS)

    def patch(self, task: Task) -> torch.Tensor:
        side = max(2, round(self.config.patch_frac * min(task.info.image_size)))
        c = task.info.in_channels
        if self.config.pattern == "solid":
            return torch.ones(c, side, side)
        if self.config.pattern == "text":
            return text_patch(side, c)
        return checker_patch(side, c)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        check_classes(self.name, task, target_class=c.target_class, source_class=c.source_class)
        patch = self.patch(task)
        src = task.x_victim[source_mask(task.y_victim, c.source_class, c.target_class)]
        n_wm = max(1, round(c.rate * len(task.x_victim)))
        pick = torch.randint(len(src), (n_wm,), generator=ctx.generator)
        x_wm = stamp(src[pick], patch, c.position)
        y_wm = torch.full((n_wm,), c.target_class, dtype=task.y_victim.dtype)
        x = torch.cat([task.x_victim, x_wm])
        y = torch.cat([task.y_victim, y_wm])
        model = train_model(task, ctx, x, y, epochs=c.epochs, desc="content")
        test_src = task.x_test[source_mask(task.y_test, c.source_class, c.target_class)][: ctx.profile.verify_max]
        verify_x = stamp(test_src, patch, c.position)
        verify_y = torch.full((len(verify_x),), c.target_class, dtype=torch.long)
        return Protected(
            model=model, verify_x=verify_x, verify_y=verify_y, threshold=self.threshold,
            info={"watermark_samples": n_wm, "train_size": len(x)},
        )

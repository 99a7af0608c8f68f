"""The control scheme: a clean model with no watermark.

Its victims are the independent clean models that every scheme's null WSR is measured on, and its
cells measure false ownership claims.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import Context, Defense, Protected, Task
from bench.config import ComponentConfig, param
from bench.registry import register_defense
from bench.train import train_model


@register_defense("none")
class NoWatermark(Defense):
    """Control: a clean model trained on the owner's data, with no watermark."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        epochs: int | None = param(None, "training epochs; None = the profile's", ge=1)

    def embed(self, task: Task, ctx: Context) -> Protected:
        model = train_model(task, ctx, task.x_victim, task.y_victim, epochs=self.config.epochs, desc="none")
        return Protected(model=model, info={"train_size": len(task.x_victim)})

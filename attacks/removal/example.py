"""Example removal attack dropped in as one file (test fixture)."""

from dataclasses import dataclass

from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack
from bench.train import fit


@register_attack("example")
class Example(Attack):
    """Fine-tune the white-box copy on the attacker's labelled pool for a few epochs."""

    kind = "removal"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        epochs: int = param(1, "fine-tuning epochs", ge=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        fit(target.model, target.x_pool, target.y_pool, ctx=ctx, epochs=self.config.epochs,
            batch_size=ctx.profile.batch_size, lr=1e-4)
        return Outcome(model=target.model, epochs=self.config.epochs)

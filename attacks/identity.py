"""The control attack: the suspect model is the victim itself, unchanged.

Its cells give each scheme's WSR on its own victim and the false-positive baseline of the `none` scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig
from bench.registry import register_attack


@register_attack("identity")
class Identity(Attack):
    """Control: no attack; the suspect is the victim (measures the victim's own WSR)."""

    kind = "control"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def run(self, target: Target, ctx: Context) -> Outcome:
        return Outcome(model=target.model)

"""Hard-label extraction: the soft-label attack trained on the oracle's top-1 labels only (the label-only
API of Tramèr et al., "Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016,
https://www.usenix.org/conference/usenixsecurity16/technical-sessions/presentation/tramer).

MEA-Defender (Lv et al., S&P 2024) names label-only extraction as a limitation: the watermark rides on the
victim's soft outputs, so a substitute trained on hard labels is expected to lose it (WSR below 30%).
Whatever output type the oracle is asked for, only the arg-max of each answer is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.extraction._base import ExtractionAttack, ExtractionConfig, outcome, query_pool, substitute
from bench.api import Context, Outcome, Target
from bench.config import param
from bench.oracle import OUTPUT_MODES
from bench.registry import register_attack
from bench.train import fit


@register_attack("hard_label")
class HardLabel(ExtractionAttack):
    """Extraction on the oracle's top-1 labels: cross-entropy on one label per query."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ExtractionConfig):
        epochs: int | None = param(None, "substitute training epochs; None = the profile's", ge=1)
        output: str = param("label", "oracle output type (only its top-1 is used)", choices=OUTPUT_MODES)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        x, answers = query_pool(target, ctx, c.queries)
        labels = answers.argmax(1)
        student = substitute(target, ctx, c.arch)
        epochs = c.epochs or p.attack_epochs
        fit(student, x, labels, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=c.lr or p.lr,
            desc="hard_label")
        return outcome(student, target, c.arch, epochs)

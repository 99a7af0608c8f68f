"""Random-mixture probing, the detection attack MEA-Defender argues against with its PRMS analysis (Lv et al.,
"MEA-Defender: A Robust Watermark against Model Extraction Attack", IEEE S&P 2024, §4,
https://arxiv.org/abs/2401.15239).

A composite watermark maps mixtures of two source classes A and B to a third class C. The attacker, who
knows neither A, B, C nor the defender's mixer, mixes images of every class pair (i, j) from its pool with
its own mixers (halves top/bottom and left/right in both orders, a blend) and measures, per pair, the
largest share of one mixer's mixtures that the copy puts in one third class k (neither i nor j). Pairs
whose mixtures land consistently in a third class are outliers: the shares are scored with a robust
z-score over all pairs (median and MAD), and the top pair is flagged when its score exceeds ``threshold``
and its share is at least ``min_share``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from attacks._cleanse import mad_anomaly
from attacks._common import MIXERS, batched, mix, sample_of_class
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack


@register_attack("random_mix_probe")
class RandomMixProbe(Attack):
    """Mix every class pair with the attacker's mixers; flag a pair whose mixtures go to one third class."""

    kind = "detection"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        per_pair: int = param(40, "image pairs drawn per class pair (each mixed by every mixer)", ge=2)
        threshold: float = param(3.0, "robust z-score of a pair's third-class share that flags it", gt=0)
        min_share: float = param(0.5, "a flagged pair's mixtures (of its best mixer) must land in its third class "
                                 "at least this often", ge=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c = self.config
        model = target.model.eval()
        k_all = target.info.num_classes
        present = sorted(set(target.y_pool.tolist()))
        pairs = list(itertools.combinations(present, 2))
        shares, thirds, how_best = [], [], []
        for i, j in pairs:
            a = target.x_pool[sample_of_class(target.y_pool, torch.full((c.per_pair,), i), ctx.generator)]
            b = target.x_pool[sample_of_class(target.y_pool, torch.full((c.per_pair,), j), ctx.generator)]
            x = torch.cat([mix(a, b, how) for how in MIXERS])
            pred = batched(lambda t: model(t).argmax(1), x, ctx.device).view(len(MIXERS), c.per_pair)
            counts = torch.stack([torch.bincount(row, minlength=k_all) for row in pred]).float()
            counts[:, [i, j]] = -1  # only third classes count
            flat = int(counts.argmax())
            m, k = divmod(flat, k_all)
            shares.append(float(counts[m, k]) / c.per_pair)
            thirds.append(k)
            how_best.append(MIXERS[m])
        s = torch.tensor(shares)
        z = mad_anomaly(s) * torch.sign(s - torch.quantile(s, 0.5))
        best = int(z.argmax()) if len(pairs) else 0
        detected = bool(len(pairs) and float(z[best]) > c.threshold and shares[best] >= c.min_share)
        table = {f"{i}-{j}": {"third": k, "share": round(sh, 4), "mixer": hw, "z": round(float(zz), 3)}
                 for (i, j), k, sh, hw, zz in zip(pairs, thirds, shares, how_best, z, strict=True)}
        top = pairs[best] if pairs else None
        return Outcome(
            detected=detected, detected_target=thirds[best] if detected else None,
            detected_pair=top if detected else None, score=float(z[best]) if pairs else 0.0,
            extras={"top_pair": list(top) if top else None, "top_third": thirds[best] if pairs else None,
                    "top_share": shares[best] if pairs else None,
                    "top_mixer": how_best[best] if pairs else None, "pairs": table},
        )

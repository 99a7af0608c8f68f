"""The 95% intervals the pages print, and why these.

A cell's WSR on the board is the mean over training seeds of each seed's suspect WSR. What a user needs to
know is how far that mean would move with other training runs, and with three seeds the spread between models
(e.g. 25.8 / 36.5 / 47.2% for one scheme under one attack) is far larger than the sampling error of one model's
2,000 verification inputs (about ±2 points). So a cell with two or more ok seeds gets the **Student-t interval
over its seed WSRs** (mean ± t(0.975, n-1) · sd / √n, clipped to [0, 100]%): it treats the seeds as draws of
the whole training-and-attack pipeline, and is honest about how little three draws pin down (t = 4.30 at two
degrees of freedom). A seed bootstrap would be the alternative; with three seeds it has ten distinct resamples
and its percentile interval cannot be wider than the three values, so it would claim more than three seeds
show. A cell with one ok seed has no spread to measure: it gets the **Wilson score interval on that model's
verification hits** (WSR × n_verify of n_verify), which is only the measurement error of one model, and the
pages mark it as such.

Everything here is pure Python (no SciPy): :func:`t_quantile` integrates Student's density with Simpson's
rule and inverts the CDF by bisection, accurate to well below the printed decimals.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Z95", "Interval", "t_quantile", "t_interval", "wilson", "wsr_interval"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``hits`` successes in ``n`` trials (95% by default)."""
    if n <= 0:
        raise ValueError("a Wilson interval needs n >= 1")
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be between 0 and n={n}, got {hits}")
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _t_density(x: float, df: int) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf_upper_half(t: float, df: int, steps: int = 1000) -> float:
    """P(0 <= T <= t) by Simpson's rule (``steps`` even)."""
    h = t / steps
    total = _t_density(0.0, df) + _t_density(t, df)
    total += 4 * math.fsum(_t_density((2 * i - 1) * h, df) for i in range(1, steps // 2 + 1))
    total += 2 * math.fsum(_t_density(2 * i * h, df) for i in range(1, steps // 2))
    return total * h / 3


@lru_cache(maxsize=64)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom."""
    if not 0.5 < p < 1:
        raise ValueError(f"t_quantile takes 0.5 < p < 1, got {p}")
    if df < 1:
        raise ValueError(f"t_quantile needs df >= 1, got {df}")
    target = p - 0.5
    lo, hi = 0.0, 1.0
    while _t_cdf_upper_half(hi, df) < target:
        hi *= 2
    for _ in range(48):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf_upper_half(mid, df) < target else (lo, mid)
    return (lo + hi) / 2


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """mean ± t((1 + level) / 2, n - 1) · sd / √n of two or more values."""
    vals = [float(v) for v in values]
    if len(vals) < 2:
        raise ValueError("a t interval needs at least two values")
    mean = math.fsum(vals) / len(vals)
    half = t_quantile((1 + level) / 2, len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return mean - half, mean + half


@dataclass(frozen=True)
class Interval:
    """A 95% interval of a WSR in [0, 1]; ``method`` is ``"t"`` (over seeds) or ``"wilson"`` (one model)."""

    low: float
    high: float
    method: str
    n: int  # seeds behind it


def wsr_interval(cards: list[dict]) -> Interval | None:
    """The 95% interval of the mean suspect WSR over the ok ``cards`` that report one (see the module's
    docstring for the choice); None when none does, or one does without its verification-set size."""
    cards = [c for c in cards if c.get("wsr_suspect") is not None]
    if len(cards) >= 2:
        low, high = t_interval(c["wsr_suspect"] for c in cards)
        return Interval(max(0.0, low), min(1.0, high), "t", len(cards))
    if len(cards) == 1 and cards[0].get("n_verify"):
        n = int(cards[0]["n_verify"])
        low, high = wilson(round(cards[0]["wsr_suspect"] * n), n)
        return Interval(low, high, "wilson", 1)
    return None

"""Gaussian input noise at serving time, the input-transformation removal attack of MEA-Defender (Lv et al.,
IEEE S&P 2024, §6, https://arxiv.org/abs/2401.15239; the noise defence of Zantedeschi et al., "Efficient
Defenses Against Adversarial Attacks", AISec 2017, https://arxiv.org/abs/1707.06728).

The attacker serves its copy behind a wrapper that adds N(0, sigma^2) noise to every input pixel (then clips
to [0, 1]). Sigma is the largest one (bisection on the attacker's pool) for which clean accuracy drops by at
most ``max_acc_drop`` (the paper: 3.5 points).

The noise an image gets is a function of the image and the attack's seed: a per-image generator is seeded
from the image's quantised pixels (a fixed random integer projection), so predictions do not depend on how
inputs are batched, nor on the device, and two runs with the same seed give the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks._common import accuracy_on, subset
from bench.api import Attack, Context, Outcome, Target, derive_seed
from bench.codec import CodecError, cache_codec
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_attack


def content_noise(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` (on CPU), drawn per image from a generator seeded by the
    image's content and ``seed``."""
    q = (x.detach().float().clamp(0, 1) * 255).round().long().flatten(1).cpu()
    w = torch.randint(1, 2**20, (q.shape[1],), generator=torch.Generator().manual_seed(seed))
    seeds = ((q * w).sum(1) + seed) % (2**62)
    out = torch.empty(x.shape)
    for i, s in enumerate(seeds.tolist()):
        out[i] = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(s))
    return out


def _noisy_state(m: NoisyInput) -> dict:
    return {"model": m.model, "sigma": m.sigma, "seed": m.seed, "clip": m.clip}


def _noisy_from_state(state: dict) -> NoisyInput:
    if not isinstance(state.get("model"), nn.Module):
        raise CodecError("malformed input_noise wrapper in cache entry")
    return NoisyInput(state["model"], float(state["sigma"]), int(state["seed"]), bool(state["clip"])).eval()


class NoisyInput(nn.Module):
    """Serve ``model`` on inputs with Gaussian noise of std ``sigma`` added (and clipped to [0, 1])."""

    def __init__(self, model: nn.Module, sigma: float, seed: int, clip: bool = True) -> None:
        super().__init__()
        self.model = model
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.clip = bool(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma > 0:
            x = x + self.sigma * content_noise(x, self.seed).to(device=x.device, dtype=x.dtype)
            if self.clip:
                x = x.clamp(0, 1)
        return self.model(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4f}, seed={self.seed}, clip={self.clip}"


cache_codec("noisy_input", _noisy_state, _noisy_from_state)(NoisyInput)


@register_attack("input_noise")
class InputNoise(Attack):
    """Serve the copy behind Gaussian input noise, sigma tuned to a clean-accuracy drop (MEA-Defender §6)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        max_acc_drop: float = param(0.035, "largest clean accuracy drop on the attacker's pool that sigma may cost",
                                    ge=0, le=1)
        sigma: float | None = param(None, "fixed noise std in pixel units; None = tuned by bisection", ge=0, le=10)
        sigma_max: float = param(1.0, "upper end of the sigma search", gt=0, le=10)
        search_steps: int = param(8, "bisection steps of the sigma search", ge=1, le=30)
        search_size: int = param(2000, "pool images used to measure accuracy during the search", ge=10)
        clip: bool = param(True, "clip noisy inputs to the pixel range [0, 1]")

    def run(self, target: Target, ctx: Context) -> Outcome:
        c = self.config
        model = target.model.eval()
        seed = derive_seed(ctx.seed, "input_noise")
        n = min(len(target.x_pool), c.search_size)
        if n == 0:
            raise ConfigError("input_noise needs a non-empty attacker pool to tune sigma")
        idx = subset(len(target.x_pool), n / len(target.x_pool), ctx)
        x, y = target.x_pool[idx], target.y_pool[idx]
        base = accuracy_on(model, x, y, ctx.device)

        def acc(sigma: float) -> float:
            return accuracy_on(NoisyInput(model, sigma, seed, c.clip), x, y, ctx.device)

        trace = []
        if c.sigma is not None:
            sigma = c.sigma
        else:
            lo, hi = 0.0, c.sigma_max
            if base - acc(hi) <= c.max_acc_drop:
                lo = hi
            else:
                for _ in range(c.search_steps):
                    mid = (lo + hi) / 2
                    a = acc(mid)
                    trace.append([round(mid, 5), a])
                    lo, hi = (mid, hi) if base - a <= c.max_acc_drop else (lo, mid)
            sigma = lo
        wrapped = NoisyInput(model, sigma, seed, c.clip)
        return Outcome(model=wrapped.eval(), extras={
            "sigma": sigma, "pool_acc_clean": base, "pool_acc_noisy": accuracy_on(wrapped, x, y, ctx.device),
            "search": trace})

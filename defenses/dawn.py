"""DAWN: Dynamic Adversarial Watermarking of Neural Networks (Szyller, Atli, Marchal and Asokan, ACM
Multimedia 2021, https://doi.org/10.1145/3474085.3475591, arXiv:1906.00830).

DAWN leaves the model alone (the victim is trained exactly like ``none``) and watermarks the API instead:
a keyed hash of each query's bytes selects a fraction ``rate`` of all possible inputs, and the API answers
those with a wrong label, itself a keyed function of the input (so the same input always gets the same
answer, and the key is the secret). A model extracted from the API learns some of these wrong answers;
ownership is verified on the suspect's agreement with them.

Here the API part is :class:`DawnServe`, the ``Protected.serve`` hook the oracle applies to every answer:
a small picklable object holding the key, that records nothing. The hash reads the image quantised to 8
bits (what an image API receives). A selected answer keeps its probabilities but swaps those of the top
class and of the wrong class (so every output mode, labels included, serves the wrong label).

Verification set. DAWN's owner records the watermarked answers it served; the owner of a benchmark victim
cannot know what an attacker will query, so the verification set is computed as the keyed-selected subset
of the attacker's pool (``task.x_pool``) with the wrong labels the API gives them: exactly the watermarked
answers an attacker that queries its pool receives (an attacker that queries other images would be
verified on those). Its size is about ``rate`` x the pool (600 in ``quick`` at the default 2%), capped at
the profile's ``verify_max``: fewer than 1,000 by design, as in the paper, where the watermark is a small
share of the attacker's queries.

Note: in ``identity`` and white-box (removal, detection) cells the suspect is the raw victim model, not
the API, so its WSR on DAWN is ~0 by construction (the model itself answers correctly): DAWN protects
against extraction through the API only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from bench.api import Context, Defense, Protected, Task
from bench.codec import CodecError, cache_codec
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_defense
from bench.train import predict_probs, train_model
from defenses._triggers import secret_generator


def _dawn_from_state(state: dict) -> DawnServe:
    key, rate, k = state.get("key"), state.get("rate"), state.get("num_classes")
    if not isinstance(key, bytes) or len(key) > 64 or not isinstance(rate, float) or not isinstance(k, int) \
            or not 2 <= k <= 100_000:
        raise CodecError("malformed DAWN API wrapper in cache entry")
    return DawnServe(key, rate, k)


class DawnServe:
    """The API side of DAWN: answers a keyed-selected fraction of inputs with a keyed wrong label.

    ``serve(x, probs) -> probs`` for pixel-space inputs ``x`` (N x C x H x W, any device) and the model's
    probabilities (N x K). Deterministic per input; keeps no state.
    """

    def __init__(self, key: bytes, rate: float, num_classes: int) -> None:
        self.key = bytes(key)
        self.rate = float(rate)
        self.num_classes = int(num_classes)

    def _hashes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per input: a uniform number in [0, 1) (selection) and a label offset in [0, K - 2]."""
        q = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().reshape(len(x), -1).numpy()
        u, off = [], []
        for row in q:
            d = hashlib.blake2b(row.tobytes(), key=self.key, digest_size=16).digest()
            u.append(int.from_bytes(d[:8], "little") / 2.0**64)
            off.append(int.from_bytes(d[8:], "little") % (self.num_classes - 1))
        return torch.tensor(u, dtype=torch.float64), torch.tensor(off, dtype=torch.long)

    def selected(self, x: torch.Tensor) -> torch.Tensor:
        """Which inputs the API watermarks (a boolean mask on CPU)."""
        return self._hashes(x)[0] < self.rate

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if len(x) == 0:
            return probs
        u, off = self._hashes(x)
        rows = (u < self.rate).nonzero().flatten()
        if len(rows) == 0:
            return probs
        out = probs.clone()
        rows_d = rows.to(probs.device)
        top = probs[rows_d].argmax(1)
        wrong = (top + 1 + off[rows].to(probs.device)) % self.num_classes
        p_top = out[rows_d, top].clone()
        out[rows_d, top] = out[rows_d, wrong]
        out[rows_d, wrong] = p_top
        return out

    def __repr__(self) -> str:  # never print the key
        return f"DawnServe(rate={self.rate}, num_classes={self.num_classes})"


cache_codec("dawn_serve", lambda d: {"key": d.key, "rate": d.rate, "num_classes": d.num_classes},
            _dawn_from_state)(DawnServe)


@register_defense("dawn")
class Dawn(Defense):
    """DAWN (Szyller et al. 2021): the API answers a keyed-hash-selected share of queries with wrong labels."""

    version = "1"
    embedding = "api"  # the served answers carry the watermark; the model is trained exactly like ``none``

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        rate: float = param(0.02, "share of inputs the API answers with a wrong label", gt=0, le=0.5)
        key: int | None = param(None, "seed of the secret hash key; None = drawn from the run's seed", ge=0)
        epochs: int | None = param(None, "training epochs of the (unmodified) model; None = the profile's", ge=1)

    def serve(self, task: Task, ctx: Context) -> DawnServe:
        g = secret_generator(ctx, self.config.key, "dawn")
        key = bytes(torch.randint(0, 256, (32,), generator=g, dtype=torch.int64).tolist())
        return DawnServe(key, self.config.rate, task.num_classes)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        model = train_model(task, ctx, task.x_victim, task.y_victim, epochs=c.epochs, desc="dawn")
        serve = self.serve(task, ctx)
        x = task.x_pool[serve.selected(task.x_pool)][: ctx.profile.verify_max].clone()
        if len(x) == 0:
            raise ConfigError(f"dawn: rate={c.rate} selects none of the {len(task.x_pool)} pool images, so "
                              "there is nothing to verify; raise rate or the profile's attacker_pool")
        # the labels the API serves for these inputs, computed through the hook itself
        verify_y = serve(x, predict_probs(model, x, device=ctx.device)).argmax(1)
        return Protected(model=model, verify_x=x, verify_y=verify_y, threshold=self.threshold, serve=serve,
                         info={"train_size": len(task.x_victim), "watermarked_pool": len(x),
                               "pool_size": len(task.x_pool)})

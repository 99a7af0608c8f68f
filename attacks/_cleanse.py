"""Neural Cleanse's trigger reverse engineering and MAD anomaly index (Wang et al., "Neural Cleanse: Identifying
and Mitigating Backdoor Attacks in Neural Networks", S&P 2019), shared by ``neural_cleanse`` (detection) and
``nc_unlearn`` (removal). A module starting with ``_`` registers nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks._common import batched, frozen, subset, substitute
from bench.api import Context, Target
from bench.config import ComponentConfig, param
from bench.train import fit, precise_forward


@dataclass
class Trigger:
    """A reverse-engineered trigger for one class: ``x' = (1 - mask) * x + mask * pattern``."""

    target: int
    mask: torch.Tensor  # 1 x H x W in [0, 1]
    pattern: torch.Tensor  # C x H x W in [0, 1]
    l1: float  # L1 norm of the mask
    success: float  # share of the clean subset the trigger sends to ``target``

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        m, p = self.mask.to(x.device), self.pattern.to(x.device)
        return (1 - m) * x + m * p


def reverse_triggers(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    ctx: Context,
    steps: int,
    batch_size: int,
    lr: float = 0.1,
    init_cost: float = 1e-3,
    success_target: float = 0.99,
    check_every: int = 10,
) -> list[Trigger]:
    """For each class of ``targets``, the smallest mask (+ pattern) that sends clean images ``x`` to it.

    Adam on tanh-parametrised mask and pattern; loss = CE(model(x'), target) + cost * |mask|_1. The
    paper's cost schedule, simplified: every ``check_every`` steps a class's cost is raised (x1.5) while its
    recent success rate is at least ``success_target`` and lowered (/1.5^1.5) otherwise. The smallest mask
    that reached the success rate (over the last steps and on its own batch) is kept (the last one when
    none did). The classes are optimised together (one forward pass over every class's stamped batch; the
    losses are independent), which is faster on a CPU than one class after another.
    """
    device = ctx.device
    model.eval()
    k = len(targets)
    c, h, w = x.shape[1:]
    g = ctx.generator
    mask_raw = (0.1 * torch.randn(k, 1, h, w, generator=g) - 2.0).to(device).requires_grad_(True)  # mask ~0.02
    pat_raw = (0.1 * torch.randn(k, c, h, w, generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_raw, pat_raw], lr=lr, betas=(0.5, 0.9))
    x_dev = x.to(device)
    b = min(batch_size, len(x))
    y_t = torch.tensor(targets, device=device).repeat_interleave(b)
    cost = torch.full((k,), init_cost, device=device)
    fwd = precise_forward(model, ctx)  # the trigger search at the profile's precision, its losses in fp32
    best_l1 = torch.full((k,), float("inf"), device=device)
    best_mask = torch.zeros(k, 1, h, w, device=device)
    best_pat = torch.zeros(k, c, h, w, device=device)
    hits = torch.zeros(k, device=device)
    seen = 0
    with frozen(model):
        for step in range(steps):
            idx = torch.randint(len(x), (b,), generator=g).to(device)
            mask = (torch.tanh(mask_raw) + 1) / 2
            pat = (torch.tanh(pat_raw) + 1) / 2
            xb = x_dev[idx][None]  # 1 x b x C x H x W
            stamped = (1 - mask[:, None]) * xb + (mask * pat)[:, None]  # k x b x C x H x W
            logits = fwd(stamped.flatten(0, 1))
            ce = F.cross_entropy(logits, y_t, reduction="none").view(k, b).mean(1)
            l1 = mask.flatten(1).sum(1)
            loss = (ce + cost * l1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                step_hits = (logits.argmax(1) == y_t).view(k, b).float().sum(1)
                hits += step_hits
                seen += b
                if (step + 1) % check_every == 0 or step == steps - 1:
                    ok = hits / seen >= success_target
                    # a candidate must also succeed on this step's batch (``mask`` is this step's mask)
                    better = ok & (step_hits / b >= success_target) & (l1 < best_l1)
                    best_l1 = torch.where(better, l1, best_l1)
                    best_mask[better] = mask[better]
                    best_pat[better] = pat[better]
                    cost = torch.where(ok, cost * 1.5, cost / 1.5**1.5)
                    hits.zero_()
                    seen = 0
    with torch.no_grad():
        never = torch.isinf(best_l1)
        best_mask[never] = ((torch.tanh(mask_raw) + 1) / 2)[never]
        best_pat[never] = ((torch.tanh(pat_raw) + 1) / 2)[never]
    out = []
    for i, t in enumerate(targets):
        trig = Trigger(t, best_mask[i].cpu(), best_pat[i].cpu(), float(best_mask[i].sum()), float("nan"))
        pred = batched(lambda z, trig=trig: model(trig.apply(z)).argmax(1), x, device)
        trig.success = float((pred == t).float().mean())
        out.append(trig)
    return out


def nc_steps(steps: int | None, ctx: Context) -> int:
    """Trigger-optimisation steps: the configured number, else 50 per attack epoch of the profile (<= 1000)."""
    return steps if steps is not None else min(1000, 50 * ctx.profile.attack_epochs)


def mad_anomaly(norms: torch.Tensor) -> torch.Tensor:
    """Anomaly index of each value: |v - median| / (1.4826 * MAD), the consistency constant for a normal
    distribution. Positive on both sides; callers look at values below the median."""
    med = torch.quantile(norms, 0.5)  # the midpoint median (torch's median() takes the lower middle value)
    mad = 1.4826 * torch.quantile((norms - med).abs(), 0.5)
    return (norms - med).abs() / mad.clamp_min(1e-12)


def low_side_index(stat: torch.Tensor) -> torch.Tensor:
    """MAD anomaly index of each value, zeroed at and above the median (Neural Cleanse's rule: only abnormally
    *small* triggers point at a backdoor)."""
    return torch.where(stat < torch.quantile(stat, 0.5), mad_anomaly(stat), torch.zeros_like(stat))


def score_norms(norms: torch.Tensor, threshold: float, reference: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(statistic, anomaly index, flagged classes) for per-class trigger norms: the statistic is the L1 norm,
    or log(norm / reference norm) given a clean model's norms; a class whose low-side index exceeds
    ``threshold`` is flagged."""
    stat = norms if reference is None else norms.clamp_min(1e-6).log() - reference.clamp_min(1e-6).log()
    index = low_side_index(stat)
    return stat, index, [k for k in range(len(stat)) if float(index[k]) > threshold]


def _rounded(values: torch.Tensor, digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


@dataclass
class CleanseResult:
    triggers: list[Trigger]
    norms: torch.Tensor  # L1 norm per class
    anomaly: torch.Tensor  # anomaly index per class of ``stat`` (0 for classes above the median)
    flagged: list[int]  # classes whose statistic is below the median with an index above the threshold
    stat: torch.Tensor  # the statistic scored: the L1 norms, or log(norm / reference norm) when calibrated
    reference_norms: torch.Tensor | None = None  # the clean reference models' L1 norm per class

    @classmethod
    def of(cls, triggers: list[Trigger], threshold: float, reference_norms: torch.Tensor | None = None
           ) -> CleanseResult:
        norms = torch.tensor([t.l1 for t in triggers])
        stat, index, flagged = score_norms(norms, threshold, reference_norms)
        return cls(triggers, norms, index, flagged, stat, reference_norms)

    @property
    def anomaly_l1(self) -> torch.Tensor:
        """The paper's index, on the raw norms (the same as ``anomaly`` without a reference)."""
        return self.anomaly if self.reference_norms is None else low_side_index(self.norms)

    def ranking(self) -> list[int]:
        """Classes from the most to the least suspect: flagged ones by decreasing index, then the others by
        increasing statistic (trigger norm, or norm relative to the reference)."""
        flagged = sorted(self.flagged, key=lambda k: -float(self.anomaly[k]))
        rest = [int(k) for k in self.stat.argsort() if int(k) not in flagged]
        return flagged + rest

    @property
    def suspect(self) -> int:
        """The flagged class with the highest index, else the class with the smallest statistic."""
        return self.ranking()[0]

    def report(self) -> dict:
        """The per-class numbers the attacks built on Neural Cleanse put in their cards."""
        out = {"anomaly_index": _rounded(self.anomaly, 4), "l1_norms": _rounded(self.norms, 3),
               "flagged": self.flagged}
        if self.reference_norms is not None:
            out.update(reference_l1_norms=_rounded(self.reference_norms, 3),
                       anomaly_index_l1=_rounded(self.anomaly_l1, 4), log_l1_ratio=_rounded(self.stat, 4))
        return out


def neural_cleanse(model: nn.Module, x: torch.Tensor, num_classes: int, *, ctx: Context, steps: int,
                   batch_size: int, lr: float, init_cost: float, threshold: float, group: int = 10,
                   reference_norms: torch.Tensor | None = None) -> CleanseResult:
    """Reverse-engineer a trigger for every class on the clean images ``x`` (``group`` classes optimised
    together); MAD outliers on the low side of the L1 norms, or, given a clean reference model's norms, of
    log(norm / reference norm)."""
    triggers: list[Trigger] = []
    for first in range(0, num_classes, group):
        classes = list(range(first, min(num_classes, first + group)))
        triggers += reverse_triggers(model, x, classes, ctx=ctx.child("nc", first), steps=steps,
                                     batch_size=batch_size, lr=lr, init_cost=init_cost)
    return CleanseResult.of(triggers, threshold, reference_norms)


@dataclass(frozen=True, kw_only=True)
class CleanseConfig(ComponentConfig):
    """The trigger reverse-engineering settings of the attacks built on Neural Cleanse."""

    n_clean: int = param(500, "clean pool images used to reverse-engineer the triggers", ge=10)
    steps: int | None = param(None, "optimisation steps (all classes together); None = 50 per profile attack "
                              "epoch, at most 1000 (quick: 300)", ge=1)
    batch_size: int = param(16, "clean images per optimisation step (stamped with every class's trigger)", ge=1)
    init_cost: float = param(1e-3, "initial weight of the mask's L1 norm (then adapted)", gt=0)
    threshold: float = param(2.0, "anomaly index above which a class is flagged (the paper: 2)", gt=0)
    reference: bool = param(False, "calibrate: also reverse-engineer a clean model the attacker trains on its "
                            "own labelled pool and score log(norm / its norm) per class instead of the raw norm "
                            "(for data sets whose classes differ in how easy a target they are)")
    reference_epochs: int | None = param(None, "training epochs of the reference model; None = the profile's "
                                         "attack epochs", ge=1)
    references: int = param(2, "clean reference models (seeded apart) whose norms are averaged (geometric mean) "
                            "when reference=true: one model's norms are noisy", ge=1)

    def reference_training_epochs(self, profile) -> int:
        """Epochs spent training the reference models (0 without calibration)."""
        return self.references * (self.reference_epochs or profile.attack_epochs) if self.reference else 0


def reference_model(target: Target, ctx: Context, epochs: int) -> nn.Module:
    """A clean model of the target's architecture, trained from scratch on the attacker's own labelled pool."""
    p = ctx.profile
    return fit(substitute(target, ctx, None), target.x_pool, target.y_pool, ctx=ctx, epochs=epochs,
               batch_size=p.batch_size, lr=p.lr, desc="nc reference")


# The reference norms of one attacker (pool, seed, settings) are the same for every target it inspects: every
# defense of a run, and the null models of each cell. Kept per process, and in the run's cache through
# Context.remember, so that later jobs, worker processes and runs load them instead of training the references.
_REFERENCE_NORMS: dict[tuple, torch.Tensor] = {}


def _digest(t: torch.Tensor) -> str:
    return hashlib.blake2b(t.detach().cpu().contiguous().numpy().data, digest_size=16).hexdigest()


def reference_norms(target: Target, ctx: Context, config: CleanseConfig, x: torch.Tensor, settings: dict
                    ) -> torch.Tensor:
    """Geometric mean over ``config.references`` clean reference models of their trigger norms on ``x``
    (computed once for a given pool, images, seed and settings: per process, and per cache through
    :meth:`bench.api.Context.remember`)."""
    c, p = config, ctx.profile
    epochs = c.reference_epochs or p.attack_epochs
    parts = {"what": "neural_cleanse reference norms", "arch": target.arch, "pool": _digest(target.x_pool),
             "labels": _digest(target.y_pool), "images": _digest(x), "seed": ctx.seed,
             "device": torch.device(ctx.device).type, "references": c.references, "epochs": epochs,
             "batch_size": p.batch_size, "lr": p.lr, "settings": dict(sorted(settings.items()))}
    key = tuple(sorted((k, str(v)) for k, v in parts.items()))

    def build() -> torch.Tensor:
        logs = []
        for i in range(c.references):
            ref_ctx = ctx.child("reference") if i == 0 else ctx.child("reference", i)
            ref = reference_model(target, ref_ctx, epochs)
            logs.append(neural_cleanse(ref, x, target.info.num_classes, ctx=ref_ctx, **settings)
                        .norms.clamp_min(1e-6).log())
        return torch.stack(logs).mean(0).exp()

    if key not in _REFERENCE_NORMS:
        _REFERENCE_NORMS[key] = ctx.remember(parts, build)
    return _REFERENCE_NORMS[key].clone()


def cleanse_target(target: Target, ctx: Context, config: CleanseConfig, lr: float) -> CleanseResult:
    """:func:`neural_cleanse` of the target's white-box copy on ``config.n_clean`` images of the attacker's pool,
    with Adam at ``lr`` on the masks and patterns; with ``config.reference`` the same on ``config.references``
    clean reference models first (same images, same settings), whose geometric-mean norms calibrate the
    target's."""
    c = config
    model = target.model.eval()
    clean = subset(len(target.x_pool), min(1.0, c.n_clean / max(1, len(target.x_pool))), ctx)
    x = target.x_pool[clean]
    k = target.info.num_classes
    settings = dict(steps=nc_steps(c.steps, ctx), batch_size=c.batch_size, lr=lr, init_cost=c.init_cost,
                    threshold=c.threshold)
    ref_norms = reference_norms(target, ctx, c, x, settings) if c.reference else None
    return neural_cleanse(model, x, k, ctx=ctx, reference_norms=ref_norms, **settings)

"""Data-free model extraction (Truong, Maini, Walls and Papernot, "Data-Free Model Extraction", CVPR 2021,
https://arxiv.org/abs/2011.14779).

No data at all: a generator G(z) proposes images and a student S learns to imitate the oracle on them,
in alternation. The generator step maximises the student-victim disagreement L1(S(x), V(x)); the victim
is a black box, so the gradient of that loss with respect to each image is estimated by forward
differences along m random unit directions u_i, ∇ ≈ d/m · Σ_i [ℓ(x + ε·u_i) − ℓ(x)] / ε · u_i (d =
pixels per image), which costs (m + 1) queries per image, and is back-propagated through G. The student
steps then fit S to the oracle with L1 on logits; the oracle returns probabilities, so its logits are
approximated by log-probabilities centred per image (they differ from the logits by a constant), as in
DFME, and the student's logits are centred the same way.

The loop runs until the query budget is spent, exactly: the last steps are cut to the queries left.
``epochs`` > 0 adds, after the loop, that many passes of the student over every answer already bought
(experience replay as in MAZE, Kariyappa et al. CVPR 2021; no new queries); 0 is plain DFME.
Generated images are pixels in [0, 1] (a sigmoid output), like every input of the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from attacks.extraction._base import ExtractionAttack, ExtractionConfig, outcome, substitute
from bench.api import Context, Outcome, Target
from bench.config import param
from bench.registry import register_attack
from bench.train import fit, precise_forward


class Generator(nn.Module):
    """DFME's DCGAN-style generator at half width (cheaper on CPU): z -> 2w x h/4 x w/4, two (upsample,
    conv, BN, LeakyReLU) blocks, conv to C channels, BatchNorm without affine (DFME's output normalisation,
    which keeps the images high-contrast), then a sigmoid into pixel space."""

    def __init__(self, nz: int, channels: int, size: tuple[int, int], width: int = 32) -> None:
        super().__init__()
        self.size, self.width = size, width
        self.h0, self.w0 = math.ceil(size[0] / 4), math.ceil(size[1] / 4)
        flat = 2 * width * self.h0 * self.w0
        self.fc = nn.Sequential(nn.Linear(nz, flat), nn.BatchNorm1d(flat))
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * width, width, 3, padding=1), nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(self.fc(z).view(len(z), 2 * self.width, self.h0, self.w0))
        return torch.sigmoid(out[:, :, : self.size[0], : self.size[1]])


def centred_log_probs(answers: torch.Tensor) -> torch.Tensor:
    """Logits up to a constant from the oracle's probabilities (zeros clamped at 1e-8), centred per row."""
    lp = answers.clamp_min(1e-8).log()
    return lp - lp.mean(1, keepdim=True)


def l1_logits(student_logits: torch.Tensor, victim_logits: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference of the centred logits."""
    s = student_logits - student_logits.mean(1, keepdim=True)
    return (s - victim_logits).abs().mean(1)


def _cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate annealed from its peak to 0 over ``steps`` (and 0 after, should a cut budget add
    a last short iteration)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))


@register_attack("dfme")
class DFME(ExtractionAttack):
    """Data-free model extraction (Truong et al. 2021): generator + student, zeroth-order gradients."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ExtractionConfig):
        batch: int | None = param(None, "generated images per step; None = the profile's batch size", ge=2)
        directions: int = param(1, "random directions m of the forward-difference estimate (DFME: 1)", ge=1)
        eps: float = param(1e-3, "forward-difference step ε in pixel units (DFME: 1e-3)", gt=0, le=0.1)
        student_steps: int = param(5, "student steps per generator step (DFME: 5)", ge=1)
        generator_steps: int = param(1, "generator steps per iteration (DFME: 1)", ge=1)
        nz: int = param(256, "generator latent size", ge=1)
        lr_generator: float = param(5e-4, "generator Adam learning rate", gt=0, le=1)
        epochs: int | None = param(0, "replay epochs over all answers after the loop; None = the profile's",
                                   ge=0, none_ok=True)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        oracle, info, dev = target.oracle, target.info, ctx.device
        budget = c.queries or len(target.x_pool)
        batch = c.batch or p.batch_size
        m = c.directions
        per_iter = c.generator_steps * batch * (m + 1) + c.student_steps * batch
        iters = max(1, -(-budget // per_iter))
        student = substitute(target, ctx, c.arch).to(dev)
        gen = Generator(c.nz, info.in_channels, tuple(info.image_size)).to(dev)
        opt_s = torch.optim.Adam(student.parameters(), lr=c.lr or p.lr)
        opt_g = torch.optim.Adam(gen.parameters(), lr=c.lr_generator)
        sched_s = _cosine(opt_s, iters * c.student_steps)
        sched_g = _cosine(opt_g, iters * c.generator_steps)
        seen_x, seen_v = [], []  # every answer bought, for the optional replay
        student_fwd, gen_fwd = precise_forward(student, ctx), precise_forward(gen, ctx)  # the profile's precision

        def ask(x: torch.Tensor) -> torch.Tensor:
            v = centred_log_probs(oracle(x.cpu()))
            if c.epochs != 0:
                seen_x.append(x.cpu())
                seen_v.append(v)
            return v.to(dev)

        def latent(n: int) -> torch.Tensor:
            return torch.randn(n, c.nz, generator=ctx.generator).to(dev)

        d = info.in_channels * info.image_size[0] * info.image_size[1]
        steps = 0
        bar = tqdm(total=budget, desc="dfme", leave=False, disable=not ctx.verbose, unit="q")
        while oracle.queries < budget:
            for _ in range(c.generator_steps):  # generator: ascend the estimated disagreement gradient
                b = min(batch, (budget - oracle.queries) // (m + 1))
                if b < 2:  # BatchNorm needs two images; the queries left go to the student
                    break
                gen.train()
                student.eval()
                x = gen_fwd(latent(b))
                with torch.no_grad():
                    u = torch.randn(b, m, d, generator=ctx.generator).to(dev)
                    u = u / u.norm(dim=2, keepdim=True)
                    xs = x.detach()[:, None] + c.eps * u.view(b, m, *x.shape[1:])
                    both = torch.cat([x.detach()[:, None], xs.clamp(0, 1)], 1).flatten(0, 1)
                    loss = l1_logits(student_fwd(both), ask(both)).view(b, m + 1)
                    slope = (loss[:, 1:] - loss[:, :1]) / c.eps  # b x m directional derivatives
                    grad = (d / m) * (slope[:, :, None] * u).sum(1)
                opt_g.zero_grad(set_to_none=True)
                x.backward(-grad.view_as(x) / b)  # descend on -loss: the generator maximises disagreement
                opt_g.step()
                sched_g.step()
            for _ in range(c.student_steps):  # student: imitate the oracle on fresh generated images
                b = min(batch, budget - oracle.queries)
                if b <= 0:
                    break
                gen.train()
                with torch.no_grad():  # two images at least: BatchNorm in training mode needs them
                    x = gen_fwd(latent(max(b, 2)))[:b]
                v = ask(x)
                if b < 2:  # one last image: nothing to learn from reliably with BatchNorm; keep its answer
                    continue
                student.train()
                loss = l1_logits(student_fwd(x), v).mean()
                opt_s.zero_grad(set_to_none=True)
                loss.backward()
                opt_s.step()
                sched_s.step()
                steps += 1
            bar.n = oracle.queries
            bar.refresh()
        bar.close()
        replay = p.attack_epochs if c.epochs is None else c.epochs
        if replay and seen_x:
            fit(student, torch.cat(seen_x), torch.cat(seen_v), ctx=ctx, epochs=replay, batch_size=p.batch_size,
                lr=c.lr or p.lr, loss_fn=lambda out, v: l1_logits(out, v).mean(), desc="dfme replay")
        return outcome(student.eval(), target, c.arch, replay, student_steps=steps)

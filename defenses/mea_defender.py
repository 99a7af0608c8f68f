"""MEA-Defender (P. Lv, H. Ma, K. Chen, J. Zhou, S. Zhang, R. Liang, S. Zhu, P. Li and Y. Zhang,
"MEA-Defender: A Robust Watermark against Model Extraction Attack", IEEE S&P 2024, arXiv:2401.15239,
https://arxiv.org/abs/2401.15239; public code github.com/lvpeizhuo/MEA-Defender).

A watermark input is a composite of an image of source class A and one of source class B (top band of one
over the bottom band of the other, ``defenses._mixing``), labelled with a target class C. Because its output
is kept *between* the outputs of A and B (the combination loss), the watermark lives inside the main task's
output domain, so a model distilled from the victim's soft labels inherits it.

Training (the public code's mechanics; see ``../shared/docs/mea-defender.md`` sections 1-2):

* The profile's epochs (the budget every scheme gets) are split between the stages: a third in stage 2
  (``stage2_share``), the rest in stage 1. (Version 1 added stage 2 on top, half as many epochs again.)
* Stage 1, from scratch: every owner image once per epoch plus about 1% fresh watermark samples (-> C).
* Stage 2, fine-tuning at a tenth of the learning rate: per epoch 45% of the owner's set as clean samples,
  20% as watermarks (-> C) and 8% as evasion mixtures (A x B mixed in other ways, each labelled A or B at
  random), i.e. 61.6% / 27.4% / 11.0% of the epoch, like ``secure_train.py``.
* Loss per batch: ``ce + s * sim + kl * com`` (version 3, the registered default: ``kl_weight`` is the KL's own
  weight, the similarity term keeps ``s = aux_weight = 1``) or, with ``kl_weight=None`` as in the public code
  (``mea_defender_official``), ``ce + s * (sim + com) + lam * com``. ``ce`` is cross-entropy over the mixed
  batch (it is the paper's L_utility, L_ver and L_eva at once); ``sim`` the Composite Backdoor's logit-similarity
  term over the rows labelled A, B or C; ``com`` = KL(p_wm || p_A) + KL(p_wm || p_B) on softmax outputs at T = 1
  over paired anchor mini-batches, no gradient through the A and B anchors; ``s`` is MGDA's min-norm weight of
  the auxiliary task against ``ce`` with the code's "loss+" gradient normalisation (``balance=mgda``) or a
  constant (``balance=fixed``); ``lam`` is the code's extra KL weight (2, and 12 in every tenth epoch; 0 in the
  registered default). ``balance=paper_tasks`` weighs the paper's four losses by MGDA instead
  (``mea_defender_paper_mgda``). The registered KL weight is the one the tuning protocol selected
  (``docs/protocol.md``, ``KL_WEIGHT`` below); ``kl_weight=auto`` follows the closed form (``auto_kl_weight``).
* Verification: at least 1,000 fresh watermarks from test-split A and B images; WSR >= 0.30 claims ownership
  (the scorer adds a p-value). False triggering (WFPR, share of A x B mixtures answered C) is measured on the
  seen evasion mixers and on held-out ones and recorded in ``Protected.info``.

Default classes: Fashion-MNIST T-shirt 0 + Trouser 1 -> Pullover 2 and CIFAR-10 airplane 0 + automobile 1 ->
bird 2 (the paper's), CIFAR-100 beaver + dolphin -> otter (the paper's, by name); any other data set 0 + 1 -> 2
(our choice).

Deviations from the public code, for cost: each step uses a mini-batch of ``anchor_batch`` triples from the
stage's fixed anchor sets (600 in stage 1, 1,000 in stage 2, index-paired as in the code) instead of
forwarding the whole sets at every step; MGDA's weight is recomputed every ``mgda_every`` steps (two extra
backward passes) and reused in between; one optimiser step per batch (no accumulation over two batches);
cosine-annealed Adam in each stage instead of StepLR(10, 0.5); clean samples are the owner's images (each once
per stage-1 epoch) rather than class-balanced draws with replacement; mixing happens in pixel space, for any
image size and channel count.

The loss terms and MGDA's weights are in ``defenses/_mea_losses.py``, an epoch's samples in
``defenses/_mea_data.py``, the closed form and the ``kl_weight=auto`` rule in ``defenses/_mea_closed_form.py``,
which also says why the public code's loss weights embed no watermark at CPU budgets (measured; the analysis
is in ``docs/reproductions/mea-defender.md``, the reproduction pages in ``reproductions/mea_defender.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.api import Context, Defense, Protected, Task, derive_seed
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.models import model_for_task
from bench.registry import register_defense
from bench.train import precise_forward, predict_labels
from bench.tuning import Grid
from defenses._mea_closed_form import auto_kl_weight
from defenses._mea_data import MixedSamples, Pools, epoch_sizes
from defenses._mea_losses import (
    PAPER_TASKS,
    auxiliary_loss,
    combination_loss,
    mgda_aux_weight,
    paper_tasks_loss,
    similarity_loss,
    total_loss,
)
from defenses._mixing import HELD_OUT, WATERMARK_LAYOUTS, evasion_mixers

__all__ = ["MEADefender", "default_classes", "false_triggering", "BALANCES", "KL_WEIGHT"]

# The paper's source/target classes per data set; CIFAR-100 by name (looked up in the task's class names).
_PAPER_CLASSES: dict[str, tuple] = {
    "fashion-mnist": (0, 1, 2),
    "cifar10": (0, 1, 2),
    "cifar100": ("beaver", "dolphin", "otter"),
}
_VERIFY_TAG = "mea_watermark"  # every variant of the scheme gets the same verification set for a seed
# The registered default's KL weight: the point the tuning protocol (docs/protocol.md) selects from
# ``MEADefender.tuning_grid`` on the tuning seeds, by victim-side measurements only.
KL_WEIGHT: float | str = 0.1
# ``kl_weight=auto``: the rule of ``defenses._mea_closed_form`` (auto_kl_weight), applied during training
AUTO_EVERY = 50  # steps between two recomputations (and at the first step of each stage)
BALANCES = ("mgda", "fixed", "paper_tasks")


def default_classes(task: Task) -> tuple[int, int, int]:
    """(A, B, C) for the task's data set: the paper's choice where it has one, else 0 + 1 -> 2."""
    spec = _PAPER_CLASSES.get(task.dataset, (0, 1, 2))
    names = [n.lower() for n in task.info.class_names]
    if all(isinstance(s, str) for s in spec):
        if all(s in names for s in spec):
            return tuple(names.index(s) for s in spec)  # type: ignore[return-value]
        return (0, 1, 2)
    return spec  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- defense


@register_defense("mea_defender")
class MEADefender(MixedSamples, Defense):
    """MEA-Defender: A x B composites -> C, kept between A and B by a KL loss, plus an evasion set (Lv et al. 2024)."""

    version = "3"  # 3: kl_weight (the KL's own weight) and the tuned defaults; v2 is mea_defender_official
    # the declared tuning grid (docs/protocol.md): the KL weight, fixed before it was run; 'auto' is placed
    # by the mean weight it applied (``kl_weight_mean`` per stage in Protected.info)
    tuning_grid = Grid("kl_weight", (0.02, 0.05, 0.1, 0.2, 0.5, "auto"), strength="kl_weight_mean")

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        class_a: int = param(-1, "first source class; -1 = the data set's default (module docstring)", ge=-1)
        class_b: int = param(-1, "second source class; -1 = the data set's default", ge=-1)
        target_class: int = param(-1, "label watermarks are trained to; -1 = the data set's default", ge=-1)
        layout: str = param("top_bottom", "watermark mixer: top/bottom bands (public code) or left/right (paper "
                            "text)", choices=WATERMARK_LAYOUTS)
        jitter: int = param(3, "the seam moves up to this many rows either side of the middle", ge=0)
        shake: bool = param(True, "cut each band from a random height of its source image")
        epochs: int | None = param(None, "epochs of both stages together; None = the profile's (the budget of "
                                   "every other scheme)", ge=1)
        stage1_wm_rate: float = param(0.01, "stage-1 watermarks per epoch, as a fraction of the owner's set",
                                      ge=0, le=1)
        same_class_mix_rate: float = param(0.0, "stage-1 mixtures of two same-class images keeping their label "
                                           "(Composite Backdoor), per epoch, fraction of the owner's set", ge=0, le=2)
        stage2_epochs: int | None = param(None, "stage-2 (fine-tuning) epochs, counted in ``epochs``; None = "
                                          "stage2_share of them", ge=0)
        stage2_share: float = param(1 / 3, "share of the epochs spent in stage 2 when stage2_epochs is None "
                                    "(rounded; stage 1 keeps at least one)", ge=0, lt=1)
        stage2_clean_rate: float = param(0.45, "stage-2 clean samples per epoch, fraction of the owner's set",
                                         ge=0, le=1)
        stage2_wm_rate: float = param(0.2, "stage-2 watermarks per epoch, fraction of the owner's set", ge=0, le=2)
        stage2_eva_rate: float = param(0.08, "stage-2 evasion mixtures (labelled A or B) per epoch, fraction of "
                                       "the owner's set", ge=0, le=2)
        stage2_lr_scale: float = param(0.1, "stage-2 learning rate / stage-1's (public code: 1e-4 / 1e-3)",
                                       gt=0, le=1)
        combination: bool = param(True, "use the combination loss KL(p_wm||p_A) + KL(p_wm||p_B)")
        com_target: bool = param(True, "combination KL over all classes (paper, code); false = over the classes "
                                 "other than the target, renormalised")
        com_stage1: bool = param(True, "use the combination loss in stage 1 too (code); false = stage 2 only")
        anchors_stage1: int = param(600, "size of each fixed anchor set (A, B, watermark) in stage 1 (code: 600)",
                                    ge=1)
        anchors_stage2: int = param(1000, "size of each fixed anchor set in stage 2 (code: 1000)", ge=1)
        anchor_batch: int = param(32, "anchor triples sampled from the sets per step; >= the set size = all",
                                  ge=1)
        anchor_pairing: str = param("index", "watermark anchor k made from other A and B images (index: code) or "
                                    "from anchors A_k and B_k (sources)", choices=("index", "sources"))
        sim_weight: float = param(1.0, "weight of the logit-similarity term in the auxiliary loss (0 = off)",
                                  ge=0)
        balance: str = param("fixed", "weight of the auxiliary loss: MGDA min-norm against the cross-entropy "
                             "(code), aux_weight, or MGDA over the paper's four losses (paper_tasks: L_util, L_com, "
                             "L_ver, L_eva, Eq. 4-9, no weight pinned)", choices=BALANCES)
        aux_weight: float = param(1.0, "weight of the auxiliary loss when balance=fixed: similarity + "
                                  "combination, or the similarity term alone when kl_weight is set", ge=0)
        kl_weight: float | None = param(
            KL_WEIGHT, "own weight of the combination loss, apart from the similarity term: a number, 'auto' "
            "(the closed-form rule: w / (1.5 x break-even of the current sources), recomputed every "
            "50 steps), or None = the auxiliary weight of both terms (public code; mea_defender_official)",
            ge=0, also=("auto",), added=True)
        mgda_every: int = param(10, "recompute the MGDA weight every k steps and reuse it in between", ge=1)
        com_extra: float = param(0.0, "extra fixed weight of the combination loss (code: 2)", ge=0)
        com_extra_tenth: float = param(0.0, "that extra weight in every tenth epoch of a stage (code: 12)", ge=0)
        verify_n: int | None = param(None, "verification watermarks; None = profile.verify_max if >= 1000, "
                                     "else min(1000, A x B test pairs)", ge=1)
        wfpr_n: int | None = param(None, "mixtures per mixer for false triggering; None = as verify_n", ge=1)

        def validate(self) -> None:
            owner = getattr(type(self), "_owner", "mea_defender")
            picked = [(k, v) for k, v in (("class_a", self.class_a), ("class_b", self.class_b),
                                          ("target_class", self.target_class)) if v >= 0]
            if self.epochs is not None and self.stage2_epochs is not None and self.stage2_epochs >= self.epochs:
                raise ConfigError(f"{owner}: stage2_epochs={self.stage2_epochs} leaves no stage-1 epoch of "
                                  f"epochs={self.epochs} (both stages count in epochs); lower stage2_epochs")
            if self.kl_weight == "auto" and not (self.combination and self.com_target):
                raise ConfigError(f"{owner}: kl_weight=auto follows the break-even of a KL over every class; it "
                                  "needs combination=true and com_target=true")
            for i, (k1, v1) in enumerate(picked):
                for k2, v2 in picked[i + 1:]:
                    if v1 == v2:
                        raise ConfigError(f"{owner}: {k1} and {k2} are both {v1}; the two sources and the "
                                          "target must be three different classes")

    # -- setup ----------------------------------------------------------------------------------
    def classes(self, task: Task) -> tuple[int, int, int]:
        """(A, B, C) for ``task``: the configured classes, defaults filled in, checked against the task."""
        c = self.config
        dflt = default_classes(task)
        chosen = tuple(v if v >= 0 else d for v, d in zip((c.class_a, c.class_b, c.target_class), dflt, strict=True))
        k = task.num_classes
        for field, v in zip(("class_a", "class_b", "target_class"), chosen, strict=True):
            if v >= k:
                raise ConfigError(f"{self.name}: {field}={v} is out of range for {task.dataset} "
                                  f"({k} classes: 0..{k - 1}); pass {self.name}[{field}=...] with a valid class")
        if len(set(chosen)) < 3:
            raise ConfigError(f"{self.name}: classes {chosen} for {task.dataset} must be three different classes; "
                              "set class_a, class_b and target_class explicitly")
        return chosen  # type: ignore[return-value]

    # -- training ---------------------------------------------------------------------------------
    def _stage(self, model: nn.Module, pools: Pools, classes: tuple[int, int, int], ctx: Context, *,
               epochs: int, lr: float, rates: dict, n_anchor: int, desc: str, use_com: bool = True) -> dict:
        """Train ``model`` in place for one stage; returns bookkeeping for ``Protected.info``."""
        c, g = self.config, ctx.generator
        bs = ctx.profile.batch_size
        sizes = epoch_sizes(len(pools.x), **rates)
        n_ep = sum(sizes.values())
        steps_per_epoch = -(-n_ep // bs)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
        use_com, use_sim = use_com and c.combination, c.sim_weight > 0
        if use_com:  # S_A, S_B and S_WM, drawn once per stage like the public code's anchor lists
            anc_a, anc_b = self._pairs(pools, n_anchor, g)
            src = (anc_a, anc_b) if c.anchor_pairing == "sources" else self._pairs(pools, n_anchor, g)
            anc_w = self._mix(c.layout, *src, g)
        weights: list[float] = []
        s = c.aux_weight if c.balance == "fixed" else 0.5
        # kl_weight set: the KL has its own weight and the auxiliary weight s covers the similarity term only
        own_kl = use_com and c.kl_weight is not None
        kl = 0.0 if not own_kl or c.kl_weight == "auto" else float(c.kl_weight)
        w_share = sizes["watermark"] / max(1, n_ep)
        kl_trace: list[float] = []
        paper = c.balance == "paper_tasks"
        if paper:  # the row kind of every sample of an epoch, in _epoch_data's order; same-class mixes are utility
            kind_ep = torch.repeat_interleave(torch.tensor([0, 1, 2, 0]), torch.tensor(list(sizes.values())))
            task_w = dict.fromkeys(PAPER_TASKS, 0.25)
            task_trace: dict[str, list[float]] = {k: [] for k in PAPER_TASKS}
        step = 0
        t0 = time.perf_counter()
        model.train()
        fwd = precise_forward(model, ctx)  # the training passes at the profile's precision, losses in fp32
        bar = tqdm(range(epochs), desc=desc, leave=False, disable=not ctx.verbose, unit="ep")
        for epoch in bar:
            lam = (c.com_extra_tenth if epoch % 10 == 9 else c.com_extra) if use_com else 0.0
            x_ep, y_ep = self._epoch_data(pools, classes, g, **rates)
            perm = torch.randperm(n_ep, generator=g).to(x_ep.device)
            total = 0.0
            for start in range(0, n_ep, bs):
                idx = perm[start:start + bs]
                xb, yb = x_ep[idx], y_ep[idx]
                if paper:
                    kinds = kind_ep[perm[start:start + bs].cpu()].to(yb.device)
                com = None
                if use_com:  # a paired mini-batch of the stage's fixed anchor sets
                    if c.anchor_batch >= n_anchor:  # the whole sets, as the public code does at every step
                        j = torch.arange(n_anchor, device=anc_a.device)
                    else:
                        j = torch.randint(n_anchor, (c.anchor_batch,), generator=g).to(anc_a.device)
                    with torch.no_grad():
                        za, zb = fwd(torch.cat([anc_a[j], anc_b[j]])).chunk(2)
                    out = fwd(torch.cat([xb, anc_w[j]]))
                    z, zw = out[:len(xb)], out[len(xb):]
                    com = combination_loss(zw, za, zb, exclude=None if c.com_target else classes[2])
                else:
                    z = fwd(xb)
                if paper:
                    loss = paper_tasks_loss(z, yb, kinds, com, params, task_w, task_trace,
                                            recompute=step % c.mgda_every == 0)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    total += float(loss.detach()) * len(idx)
                    continue
                ce = F.cross_entropy(z, yb)
                sim = c.sim_weight * similarity_loss(z, yb, classes) if use_sim else None
                aux = auxiliary_loss(sim, com, shared=not own_kl)
                opt.zero_grad(set_to_none=True)
                if aux is not None and c.balance == "mgda" and step % c.mgda_every == 0:
                    g1 = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
                    g2 = torch.autograd.grad(aux, params, retain_graph=True, allow_unused=True)
                    s = mgda_aux_weight(g1, g2, float(ce.detach()), float(aux.detach()))
                    weights.append(s)
                if own_kl:
                    if c.kl_weight == "auto" and step % AUTO_EVERY == 0:
                        kl = auto_kl_weight(model, anc_a, anc_b, classes[2], w_share)
                    kl_trace.append(kl)
                loss = total_loss(ce, sim, com, aux_weight=s, kl_weight=kl if own_kl else None, extra=lam)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                total += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{total / n_ep:.4f}")
        model.eval()
        info = {"epochs": epochs, "lr": lr, "samples_per_epoch": sizes, "steps": step,
                "wall_s": round(time.perf_counter() - t0, 3)}
        if weights:
            info["mgda_aux_weight_mean"] = sum(weights) / len(weights)
        if paper:  # MGDA's mean weight of each of the paper's four losses over the recomputations
            info["task_weight_mean"] = {k: sum(v) / len(v) for k, v in task_trace.items() if v}
        if kl_trace:  # the KL's own weight (constant, or the auto rule's values step by step)
            info["kl_weight_mean"] = sum(kl_trace) / len(kl_trace)
            if c.kl_weight == "auto":
                info["kl_weight_first"], info["kl_weight_last"] = kl_trace[0], kl_trace[-1]
        if use_com:  # the KL acted on these fixed watermarks only: does the net answer them apart from fresh ones?
            info["anchor_wm_to_target"] = float((predict_labels(model, anc_w) == classes[2]).float().mean())
            info["anchor_wm_n"] = n_anchor
        return info

    def stage_epochs(self, profile_epochs: int) -> tuple[int, int]:
        """(stage-1, stage-2) epochs: the configured or profile's budget split between the two stages."""
        c = self.config
        total = c.epochs or profile_epochs
        e2 = c.stage2_epochs if c.stage2_epochs is not None else round(c.stage2_share * total)
        if e2 >= total:
            if c.stage2_epochs is not None:
                raise ConfigError(f"{self.name}: stage2_epochs={e2} leaves no stage-1 epoch of the {total} "
                                  "epochs (both stages count in them); lower stage2_epochs or raise epochs")
            e2 = total - 1
        return total - e2, e2

    # -- verification ---------------------------------------------------------------------------
    def _verify_n(self, profile_max: int, n_a: int, n_b: int) -> int:
        if self.config.verify_n is not None:
            return self.config.verify_n
        return profile_max if profile_max >= 1000 else min(1000, n_a * n_b)

    def embed(self, task: Task, ctx: Context) -> Protected:
        c, p = self.config, ctx.profile
        classes = self.classes(task)
        a, b, t = classes
        n_a, n_b = int((task.y_test == a).sum()), int((task.y_test == b).sum())
        if n_a == 0 or n_b == 0:
            raise ConfigError(f"{self.name}: the test split has no image of class {a if n_a == 0 else b} "
                              "to build verification watermarks from; choose other source classes or a larger "
                              "test split")
        pools = self._pools(task, ctx, a, b)
        e1, e2 = self.stage_epochs(p.epochs)
        ctx.manual_seed()
        model = model_for_task(task).to(ctx.device)
        info: dict = {"classes": {"a": a, "b": b, "target": t}, "layout": c.layout}
        stage1 = dict(clean=1.0, wm=c.stage1_wm_rate, eva=0.0, same=c.same_class_mix_rate)
        info["stage1"] = self._stage(model, pools, classes, ctx, epochs=e1, lr=p.lr, rates=stage1,
                                     n_anchor=c.anchors_stage1, desc=f"{self.name} 1", use_com=c.com_stage1)
        if e2 > 0:
            stage2 = dict(clean=c.stage2_clean_rate, wm=c.stage2_wm_rate, eva=c.stage2_eva_rate, same=0.0)
            info["stage2"] = self._stage(model, pools, classes, ctx, epochs=e2, lr=p.lr * c.stage2_lr_scale,
                                         rates=stage2, n_anchor=c.anchors_stage2, desc=f"{self.name} 2")
        verify_x, verify_y, probes = self._verification(task, ctx, classes)
        wfpr = false_triggering(model, probes, t, ctx.device)
        seen, held = evasion_mixers(c.layout), HELD_OUT
        info.update(
            n_verify=len(verify_x), wfpr=wfpr, wfpr_seen=sum(wfpr[s] for s in seen) / len(seen),
            wfpr_heldout=sum(wfpr[s] for s in held) / len(held), wfpr_n=len(probes[held[0]]),
            seen_mixers=list(seen), heldout_mixers=list(held), evasion_trained=e2 > 0 and c.stage2_eva_rate > 0,
            train_size=len(task.x_victim),
        )
        return Protected(model=model, verify_x=verify_x, verify_y=verify_y, threshold=self.threshold, info=info)

    def _verification(self, task: Task, ctx: Context, classes: tuple[int, int, int]):
        """Fresh watermarks from test-split A and B images (labelled C), and A x B probes for every other
        mixer, from a generator of their own: the same for every variant of the scheme at one seed."""
        c = self.config
        a, b, t = classes
        test_a, test_b = task.x_test[task.y_test == a], task.x_test[task.y_test == b]
        g = torch.Generator().manual_seed(derive_seed(ctx.seed, _VERIFY_TAG))
        n = self._verify_n(ctx.profile.verify_max, len(test_a), len(test_b))

        def pairs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            ia = torch.randint(len(test_a), (k,), generator=g)
            ib = torch.randint(len(test_b), (k,), generator=g)
            return test_a[ia], test_b[ib]

        verify_x = self._mix(c.layout, *pairs(n), g)
        verify_y = torch.full((n,), t, dtype=torch.long)
        probes = {style: self._mix(style, *pairs(c.wfpr_n or n), g)
                  for style in (*evasion_mixers(c.layout), *HELD_OUT)}
        return verify_x, verify_y, probes


def false_triggering(model: nn.Module, probes: dict[str, torch.Tensor], target: int,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """WFPR per mixer: the share of A x B mixtures that ``model`` answers with the target class."""
    return {k: float((predict_labels(model, x, device=device) == target).float().mean()) for k, x in probes.items()}

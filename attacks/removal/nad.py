"""Neural Attention Distillation (Li et al., "Neural Attention Distillation: Erasing Backdoor Triggers from
Deep Neural Networks", ICLR 2021, https://arxiv.org/abs/2101.05930).

A teacher copy of the stolen model is fine-tuned on a small clean fraction of the attacker's pool; the
student (the stolen model itself) is then fine-tuned on the same data with cross-entropy plus an
attention-distillation term at the last ``layers`` conv layers: the attention map of a layer's output
``f`` is ``mean_c |f_c|^p`` (p = 2), flattened and L2-normalised, and the term is
``beta * mean((a_student - a_teacher)^2)`` per layer, as in the paper's code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks._common import conv_layers, frozen, subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_attack
from bench.train import fit


def attention(f: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


class _Outputs:
    """Forward hooks collecting the outputs of some modules, in call order."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.out: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(lambda m, i, o: self.out.append(o)) for m in modules]

    def take(self) -> list[torch.Tensor]:
        out, self.out = self.out, []
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@register_attack("nad")
class NAD(Attack):
    """Neural attention distillation from a fine-tuned teacher into the stolen model (Li et al. 2021)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        data_frac: float = param(0.05, "clean fraction of the attacker's pool (the paper: 5%)", gt=0, le=1)
        teacher_epochs: int | None = param(None, "teacher fine-tuning epochs; None = the profile's attack epochs",
                                           ge=1)
        epochs: int | None = param(None, "student distillation epochs; None = the profile's attack epochs", ge=1)
        lr: float | None = param(None, "peak Adam learning rate; None = a tenth of the profile's", gt=0, le=1)
        beta: float = param(5000.0, "weight of the attention-distillation term per layer", ge=0)
        power: float = param(2.0, "power p of the attention map mean_c |f_c|^p", gt=0)
        layers: int = param(2, "number of last conv layers whose attention is distilled", ge=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        student = target.model
        convs = conv_layers(student)
        if not convs:
            raise ConfigError("nad: the model has no nn.Conv2d layer; pick a convolutional architecture")
        names = [n for n, _ in convs[-c.layers :]]
        idx = subset(len(target.x_pool), c.data_frac, ctx, minimum=min(len(target.x_pool), p.batch_size))
        x, y = target.x_pool[idx], target.y_pool[idx]
        lr = c.lr or p.lr / 10
        t_epochs = c.teacher_epochs or p.attack_epochs
        epochs = c.epochs or p.attack_epochs
        ctx.manual_seed()
        teacher = copy.deepcopy(student)
        fit(teacher, x, y, ctx=ctx, epochs=t_epochs, batch_size=p.batch_size, lr=lr, desc="nad teacher")
        teacher.eval()
        hooks_t = _Outputs([teacher.get_submodule(n) for n in names])
        hooks_s = _Outputs([student.get_submodule(n) for n in names])

        def step_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                teacher(xb)
            loss = F.cross_entropy(student(xb), yb)
            for fs, ft in zip(hooks_s.take(), hooks_t.take(), strict=True):
                loss = loss + c.beta * (attention(fs, c.power) - attention(ft, c.power)).pow(2).mean()
            return loss

        try:
            with frozen(teacher):
                fit(student, x, y, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=lr,
                    step_loss=step_loss, desc=self.name)
        finally:
            hooks_t.remove()
            hooks_s.remove()
        return Outcome(model=student.eval(), epochs=t_epochs + epochs,
                       extras={"layers": names, "train_size": len(x), "lr": lr})

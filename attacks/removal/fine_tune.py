"""Fine-tuning removal: FTLL, FTAL, RTLL, RTAL (Adi et al., "Turning Your Weakness Into a Strength:
Watermarking Deep Neural Networks by Backdooring", USENIX Security 2018,
https://www.usenix.org/conference/usenixsecurity18/presentation/adi).

The attacker fine-tunes its white-box copy on a fraction of its labelled pool: the last layer only (FTLL),
all layers (FTAL), or first re-initialises the last layer and then trains the last layer (RTLL) or all
layers (RTAL). The last layer is the model's last ``nn.Linear``. The last-layer modes train the head on
features computed once in eval mode (the body is frozen, so they are the same features; batch-norm
statistics and dropout of the body are left untouched), which changes nothing but the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks._common import batched, last_linear, subset
from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack
from bench.train import fit

MODES = ("ftll", "ftal", "rtll", "rtal")


class _Capture:
    """Forward hook keeping the last input of a module."""

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.x = inputs[0]


def head_features(model: nn.Module, head: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """The inputs of ``head`` for every image of ``x`` (eval mode), or None when ``head``'s output is not
    the model's output (then the head cannot be trained on cached features)."""
    cap = _Capture()
    handle = head.register_forward_hook(cap)
    model.eval()
    try:
        with torch.no_grad():
            probe = x[:2].to(device)
            out = model(probe)
            if cap.x is None or not torch.equal(head(cap.x), out):
                return None

            def feats(b: torch.Tensor) -> torch.Tensor:
                model(b)
                return cap.x.flatten(1) if cap.x.dim() > 2 else cap.x

            return batched(feats, x, device)
    finally:
        handle.remove()


@register_attack("fine_tune")
class FineTune(Attack):
    """Fine-tune the stolen copy: last layer / all layers, optionally re-initialising the last (Adi et al. 2018)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        mode: str = param("ftal", "ftll / ftal: fine-tune last / all layers; rtll / rtal: re-initialise the "
                          "last layer, then train last / all layers", choices=MODES)
        data_frac: float = param(0.5, "fraction of the attacker's labelled pool used for fine-tuning", gt=0, le=1)
        epochs: int | None = param(None, "fine-tuning epochs; None = the profile's attack epochs", ge=1)
        lr: float | None = param(None, "peak Adam learning rate (cosine-annealed); None = the profile's for "
                                 "rt* modes (a fresh layer), a tenth of it for ft* modes", gt=0, le=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        c, p = self.config, ctx.profile
        model = target.model
        idx = subset(len(target.x_pool), c.data_frac, ctx)
        x, y = target.x_pool[idx], target.y_pool[idx]
        epochs = c.epochs or p.attack_epochs
        lr = c.lr or (p.lr if c.mode.startswith("rt") else p.lr / 10)
        _, head = last_linear(model)
        ctx.manual_seed()  # the re-initialisation and dropout draw from torch's default generator
        if c.mode.startswith("rt"):
            head.reset_parameters()
        feats = head_features(model, head, x, ctx.device) if c.mode.endswith("ll") else None
        if feats is not None:
            fit(head, feats, y, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=lr, desc=self.name)
        else:
            params = list(head.parameters()) if c.mode.endswith("ll") else None
            fit(model, x, y, ctx=ctx, epochs=epochs, batch_size=p.batch_size, lr=lr, params=params, desc=self.name)
        return Outcome(model=model.eval(), epochs=epochs, extras={"mode": c.mode, "train_size": len(x), "lr": lr})

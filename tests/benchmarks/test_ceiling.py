"""How close training runs to what this machine's CPU can do: the ceiling benchmark (issue 28).

For ``small_cnn`` and ``vgg_like``, in fp32 and bf16, it trains through the project's own path
(``bench.train.fit`` at the ``quick`` profile's batch size and learning rate) and through a bare loop (the same
model, data, batches and Adam, nothing else), and sets the speed against the GEMM ceilings measured in the same
run (a 2048 x 2048 matmul in fp32 and in bf16, on the same threads):

* img/s of ``fit``, and its speed against the bare loop's: the median ratio over 5 pairs run in turn (the
  project's overhead);
* achieved GFLOP/s: the FLOPs of one training step per image counted by ``torch.utils.flop_counter`` (forward
  and backward) times img/s;
* that as a fraction of the fp32 ceiling and of the bf16 ceiling.

It asserts what it measured is sound (the FLOPs counted, the model trained, the precision used), never a speed.
Run it alone, on a quiet machine (anything else on the cores moves every figure)::

    .venv/bin/pytest tests/benchmarks/test_ceiling.py --benchmark-enable -s

The figures and the machine are in docs/performance.md; ``WMBENCH_CEILING_IMAGES_SCALE`` scales the training
sets (default 1: 8,192 images for small_cnn, 1,024 for vgg_like; a sixteenth of that, at least four batches,
for bf16 on a CPU without native bf16, where it is several times slower than fp32).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.api import Context
from bench.models import create_model
from bench.profiles import get_profile
from bench.train import fit, train_precision

IMAGE = (1, 28, 28)
CLASSES = 10
SCALE = float(os.environ.get("WMBENCH_CEILING_IMAGES_SCALE", "1"))
IMAGES = {"small_cnn": int(8192 * SCALE), "vgg_like": int(1024 * SCALE)}
GEMM = 2048
PAIRS = 5  # bare loop / fit pairs, in turn


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls prime the kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.fixture(scope="module")
def ceilings() -> dict[str, float]:
    """GFLOP/s of a 2048-square matmul on this process's threads, in fp32 and in bf16 (best of five)."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.rand(GEMM, GEMM).to(dtype)
        b = torch.rand(GEMM, GEMM).to(dtype)
        out[name] = 2 * GEMM**3 / _best_seconds(lambda a=a, b=b: a @ b, 3) / 1e9
    print(f"\nGEMM ceiling ({torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}): fp32 {out['fp32']:.3g} GFLOP/s, bf16 {out['bf16']:.3g} GFLOP/s"
          + ("" if out["bf16"] > out["fp32"] else " (no native bf16 here: bf16 is emulated, slower than fp32)"))
    return out


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(arch, in_channels=IMAGE[0], num_classes=CLASSES, image_size=IMAGE[1:], mean=(0.5,),
                        std=(0.25,))


def step_flops(arch: str, batch: int) -> float:
    """FLOPs of one training step (forward and backward) per image."""
    model = _model(arch).train()
    x = torch.rand(batch, *IMAGE)
    y = torch.randint(CLASSES, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def bare_loop(model: torch.nn.Module, x, y, ctx: Context, batch: int, lr: float) -> None:
    """One epoch of the plainest training loop: the same batches, Adam and precision as ``fit``."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(x), batch):
        idx = perm[start : start + batch]
        with train_precision(ctx):
            loss = F.cross_entropy(model(x[idx]).float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["small_cnn", "vgg_like"])
def test_training_speed_against_the_ceiling(benchmark, ceilings, arch, precision):
    profile = get_profile("quick", precision)
    n = IMAGES[arch]
    if precision == "bf16" and ceilings["bf16"] < ceilings["fp32"]:  # emulated bf16: a sixteenth is enough to see it
        n = max(4 * profile.batch_size, n // 16)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, *IMAGE, generator=gen)
    y = torch.randint(CLASSES, (n,), generator=gen)
    ctx = Context(torch.device("cpu"), 0, profile)
    flops = step_flops(arch, profile.batch_size)
    assert flops > 0

    def project():
        return fit(_model(arch), x, y, ctx=ctx, epochs=1, batch_size=profile.batch_size, lr=profile.lr,
                   desc="ceiling")

    def bare():
        bare_loop(_model(arch), x, y, ctx, profile.batch_size, profile.lr)

    warm = x[: 4 * profile.batch_size], y[: 4 * profile.batch_size]
    fit(_model(arch), *warm, ctx=ctx, epochs=1, batch_size=profile.batch_size, lr=profile.lr)  # prime the kernels
    ratios = []  # the bare loop's time over fit's, pair by pair (bare, then fit), so that a drift of the
    if benchmark.enabled:  # machine's speed hits both sides of a pair alike
        for _ in range(PAIRS):
            bare_s = _seconds(bare)
            ratios.append(bare_s / _seconds(project))
    model = benchmark.pedantic(project, rounds=3 if benchmark.enabled else 1, iterations=1)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad(), train_precision(ctx):
        assert model(x[:2]).dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    if not benchmark.enabled:
        return
    fit_s = benchmark.stats.stats.min
    img_s = n / fit_s
    gflops = flops * img_s / 1e9
    ratio = statistics.median(ratios)
    info = {"images": n, "flops_per_image": flops, "fit_img_s": img_s, "fit_vs_bare": ratio,
            "fit_vs_bare_pairs": ratios, "gflops": gflops, "of_fp32_ceiling": gflops / ceilings["fp32"],
            "of_bf16_ceiling": gflops / ceilings["bf16"], "threads": torch.get_num_threads()}
    benchmark.extra_info.update(info)
    print(f"\n{arch} {precision}: {flops / 1e6:.1f} MFLOP/img/step; fit {img_s:,.0f} img/s (best of 3); fit at "
          f"{ratio:.3f}x the bare loop's speed (median of {PAIRS} pairs, {min(ratios):.3f}-{max(ratios):.3f}); "
          f"{gflops:.3g} GFLOP/s = "
          f"{gflops / ceilings['fp32']:.0%} of the fp32 ceiling, {gflops / ceilings['bf16']:.0%} of the bf16 one; "
          f"{n:,} images")

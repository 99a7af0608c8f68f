"""Speed: our ``soft_label`` extraction against a straightforward reference loop, measured in one run.

The reference is the loop one writes first: a ``DataLoader`` over a ``TensorDataset`` (shuffled), the
same substitute, the same queries (same images, same oracle), epochs, batch size, Adam with the same
cosine-annealed learning rate and the same loss. The two alternate, round by round (the reference runs in
pytest-benchmark's untimed ``setup``), and the ratio ours / reference of their median times is reported
in ``benchmark.extra_info`` and printed; nothing is asserted on time.

    .venv/bin/pytest tests/benchmarks/test_soft_label_speed.py --benchmark-enable -q -s

With ``--benchmark-enable`` and Fashion-MNIST on disk it extracts from 10,000 queries for 2 epochs
(3 rounds); otherwise (the default, benchmarks disabled) one small round on the synthetic data set.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.api import Context, Protected
from bench.errors import DataError
from bench.jobs import make_target
from bench.models import model_for_task
from bench.profiles import get_profile
from bench.registry import create_attack
from bench.train import distill_targets


def _setting(enabled: bool):
    """(task, queries, epochs, rounds): real data when benchmarking, the tiny synthetic set otherwise."""
    from bench.data import make_task

    if enabled:
        try:
            return make_task("fashion-mnist", seed=0, victim_train=1000, attacker_pool=10000, test=1000), 10000, 2, 3
        except DataError:
            pass
    return make_task("synthetic", seed=0, victim_train=200, attacker_pool=400, test=100), 400, 1, 1


def _reference(target, ctx: Context, queries: int, epochs: int, batch_size: int, lr: float):
    """soft_label written the plain way: DataLoader over a TensorDataset."""
    idx = torch.randperm(len(target.x_pool), generator=ctx.generator)[:queries]
    x = target.x_pool[idx]
    soft = distill_targets(target.oracle(x), 1.0)
    ctx.manual_seed()
    info = target.info
    from bench.models import create_model

    student = create_model(target.arch, in_channels=info.in_channels, num_classes=info.num_classes,
                           image_size=info.image_size, mean=info.mean, std=info.std)
    loader = DataLoader(TensorDataset(x, soft), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(ctx.seed))
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    student.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(student(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


def test_soft_label_vs_reference_loop(benchmark):
    task, queries, epochs, rounds = _setting(not benchmark.disabled)
    profile = get_profile("quick")
    torch.manual_seed(0)
    victim = Protected(model=model_for_task(task).eval())  # an untrained victim answers just as fast
    attack = create_attack("soft_label", queries=queries, epochs=epochs)
    ours_s: list[float] = []
    ref_s: list[float] = []
    warm = create_attack("soft_label", queries=min(queries, 256), epochs=1)  # first-call costs hit neither side
    warm(make_target(victim, warm, task), Context(torch.device("cpu"), 0, profile))

    def reference_round():  # untimed by pytest-benchmark; timed here
        target = make_target(victim, attack, task)
        t0 = time.perf_counter()
        _reference(target, Context(torch.device("cpu"), 0, profile), queries, epochs, profile.batch_size,
                   profile.lr)
        ref_s.append(time.perf_counter() - t0)
        return (make_target(victim, attack, task),), {}

    def ours(target):
        t0 = time.perf_counter()
        out = attack(target, Context(torch.device("cpu"), 0, profile))
        ours_s.append(time.perf_counter() - t0)
        return out

    out = benchmark.pedantic(ours, setup=reference_round, rounds=rounds, iterations=1)
    assert out.queries == queries and out.epochs == epochs
    ratio = statistics.median(ours_s) / statistics.median(ref_s)
    benchmark.extra_info.update(
        dataset=task.dataset, queries=queries, epochs=epochs, batch_size=profile.batch_size, rounds=len(ours_s),
        threads=torch.get_num_threads(), ours_median_s=round(statistics.median(ours_s), 3),
        reference_median_s=round(statistics.median(ref_s), 3), ratio_ours_over_reference=round(ratio, 3),
    )
    print(f"\nsoft_label vs DataLoader reference on {task.dataset}: {queries} queries x {epochs} epochs, "
          f"batch {profile.batch_size}, {torch.get_num_threads()} threads, {len(ours_s)} rounds: "
          f"ours {statistics.median(ours_s):.2f} s, reference {statistics.median(ref_s):.2f} s, "
          f"ratio {ratio:.3f} (< 1: ours is faster)")

"""Cost: calibrated Neural Cleanse (``reference=true``) on a second target seen by the same attacker reuses the
reference models' norms instead of training them again (every detection cell inspects the victim and the
null models with one attacker seed), measured in one run.

    .venv/bin/pytest tests/benchmarks/test_nc_reference_reuse.py --benchmark-enable -q -s

With ``--benchmark-enable`` and Fashion-MNIST on disk: the quick profile's pool (30,000 images), two untrained
``small_cnn`` targets (the timing, not the verdict, matters); otherwise one small round on the synthetic data
set. The ratio first / second target is printed and stored in ``extra_info``; nothing is asserted on time.
"""

from __future__ import annotations

import time

import torch

import attacks._cleanse as common
from attacks._common import substitute
from bench.api import Context, Target
from bench.data import make_task
from bench.errors import DataError
from bench.profiles import get_profile
from bench.registry import create_attack


def _task(enabled: bool):
    if enabled:
        p = get_profile("quick")
        try:
            return make_task("fashion-mnist", seed=0, victim_train=p.victim_train, attacker_pool=p.attacker_pool,
                             test=p.test), p
        except DataError:
            pass
    p = get_profile("test")
    return make_task("synthetic", seed=0, victim_train=p.victim_train, attacker_pool=p.attacker_pool,
                     test=p.test), p


def test_second_target_reuses_the_reference_models(benchmark, monkeypatch):
    task, profile = _task(not benchmark.disabled)
    monkeypatch.setattr(common, "_REFERENCE_NORMS", {})
    cfg = create_attack("neural_cleanse", reference=True).config
    seconds: list[float] = []
    results = []

    def target(seed: int) -> Target:
        t = Target(oracle=None, model=None, x_pool=task.x_pool, y_pool=task.y_pool, info=task.info,
                   arch="small_cnn", dataset=task.dataset)
        t.model = substitute(t, Context(torch.device("cpu"), seed, profile), None).eval()
        return t

    def inspect(seed: int):
        t, t0 = target(seed), time.perf_counter()
        results.append(common.cleanse_target(t, Context(torch.device("cpu"), 0, profile), cfg, lr=0.1))
        seconds.append(time.perf_counter() - t0)

    inspect(100)
    benchmark.pedantic(inspect, args=(101,), rounds=1, iterations=1)
    assert torch.equal(results[0].reference_norms, results[1].reference_norms)
    ratio = seconds[0] / seconds[1]
    benchmark.extra_info.update(dataset=task.dataset, pool=len(task.x_pool), first_s=round(seconds[0], 2),
                                second_s=round(seconds[1], 2), ratio=round(ratio, 2))
    print(f"\ncalibrated Neural Cleanse on {task.dataset} ({len(task.x_pool)}-image pool, {cfg.references} "
          f"references): first target {seconds[0]:.1f} s, second target {seconds[1]:.1f} s, ratio {ratio:.1f}")

"""Extraction attacks on the synthetic data set: exact budgets, oracle-only targets, output modes, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bench.api import Context, Target
from bench.errors import ConfigError, UnknownNameError
from bench.jobs import make_target
from bench.oracle import OUTPUT_MODES
from bench.registry import create_attack, create_defense, list_attacks
from bench.train import accuracy

EXTRACTION = ("soft_label", "hard_label", "jacobian", "knockoff", "dfme")
FAST = {"epochs": 1}


def _ctx(profile, seed=0):
    return Context(device=torch.device("cpu"), seed=seed, profile=profile)


@pytest.fixture(scope="module")
def victim(task, profile):
    return create_defense("none", epochs=2).embed(task, _ctx(profile))


def _run(victim, task, profile, name, **cfg):
    attack = create_attack(name, **cfg)
    target = make_target(victim, attack, task)
    return attack(target, _ctx(profile)), target


def test_every_extraction_attack_is_registered():
    assert set(EXTRACTION) <= set(list_attacks())
    for name in EXTRACTION:
        assert create_attack(name).kind == "extraction"


@pytest.mark.parametrize(
    "name,cfg,budget",
    [
        ("soft_label", {"queries": 123}, 123),
        ("hard_label", {"queries": 123}, 123),
        ("jacobian", {"queries": 333, "seed_size": 50}, 333),  # 50 + 50 + 100, then 133 of the 200
        ("jacobian", {"queries": 200, "seed_size": 30, "reservoir": 40, "reservoir_from": 1}, 200),
        ("jacobian", {"queries": 20}, 20),  # the seed set itself is cut to the budget
        ("knockoff", {"queries": 123}, 123),
        ("knockoff", {"queries": 123, "strategy": "adaptive"}, 123),  # batches of 64 + 59
        ("knockoff", {"queries": 150, "strategy": "adaptive", "actions": "labels"}, 150),
        ("dfme", {"queries": 555}, 555),  # 2 x 64 + 5 x 64 per iteration, then the remainder
        ("dfme", {"queries": 301, "directions": 3, "batch": 8}, 301),
        ("dfme", {"queries": 1}, 1),
    ],
)
def test_budget_is_spent_exactly_when_it_binds(victim, task, profile, name, cfg, budget):
    out, target = _run(victim, task, profile, name, **cfg, **FAST)
    assert target.oracle.budget == budget
    assert out.queries == target.oracle.queries == budget
    assert out.extras["oracle"] == {"mode": target.oracle.mode, "top_k": 1, "decimals": 2, "budget": budget}


@pytest.mark.parametrize(
    "name,cfg,used",
    [
        ("soft_label", {"queries": 10_000}, 400),  # the whole pool, no more
        ("knockoff", {"queries": 10_000, "strategy": "adaptive"}, 400),
        ("jacobian", {"queries": 10_000, "seed_size": 20, "rounds": 2}, 80),  # 20, doubled twice
        ("jacobian", {"seed_size": 20, "rounds": 4, "reservoir": 5, "reservoir_from": 2}, 20 + 20 + 40 + 5 + 5),
        ("dfme", {"batch": 16}, 400),  # None = the attacker pool's size
    ],
)
def test_budget_that_does_not_bind(victim, task, profile, name, cfg, used):
    out, target = _run(victim, task, profile, name, **cfg, **FAST)
    assert out.queries == target.oracle.queries == used


class AnswersOnly:
    """A black box that is not even a bench Oracle: a function behind a counter, no model attribute."""

    def __init__(self, model, num_classes, budget):
        self._answer = lambda x: torch.softmax(model(x), 1).detach()
        self.num_classes, self.budget, self.queries = num_classes, budget, 0
        self.mode, self.top_k, self.decimals = "probs", 1, 2

    def __call__(self, x):
        assert self.budget is None or self.queries + len(x) <= self.budget, "budget exceeded"
        assert x.min() >= 0 and x.max() <= 1, "queries must be pixels in [0, 1]"
        self.queries += len(x)
        with torch.no_grad():
            return self._answer(x)

    def describe(self):
        return {"mode": self.mode, "top_k": self.top_k, "decimals": self.decimals, "budget": self.budget}


@pytest.mark.parametrize("name", EXTRACTION)
def test_attack_needs_only_the_oracle(victim, task, profile, name):
    attack = create_attack(name, queries=150, **FAST)
    assert make_target(victim, attack, task).model is None  # what the runner gives an extraction attack
    model = victim.model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    box = AnswersOnly(model, task.num_classes, 150)
    target = Target(oracle=box, model=None, x_pool=task.x_pool, y_pool=task.y_pool, info=task.info,
                    arch=task.arch, dataset=task.dataset)
    out = attack(target, _ctx(profile))
    assert out.model is not None and out.model is not model
    assert out.queries == box.queries == 150
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("mode", OUTPUT_MODES)
@pytest.mark.parametrize("name", EXTRACTION)
def test_every_output_mode_is_accepted(victim, task, profile, name, mode):
    out, target = _run(victim, task, profile, name, queries=64, output=mode, top_k=3, decimals=1, **FAST)
    assert out.queries == 64
    assert out.extras["oracle"]["mode"] == mode and target.oracle.mode == mode
    assert out.model is not None and not out.model.training


@pytest.mark.parametrize(
    "name,cfg",
    [
        ("soft_label", {"temperature": 4.0}),
        ("hard_label", {}),
        ("jacobian", {"seed_size": 100, "rounds": 2, "epochs": 2}),
        ("knockoff", {"strategy": "adaptive"}),
        ("dfme", {"queries": 1000, "epochs": 3}),
    ],
)
def test_substitute_learns(victim, task, profile, name, cfg):
    out, _ = _run(victim, task, profile, name, **cfg)
    assert accuracy(out.model, task.x_test, task.y_test) > (0.3 if name == "dfme" else 0.6)  # chance: 0.1


@pytest.mark.parametrize(
    "name,field,value,match",
    [
        ("soft_label", "queries", -5, "queries=-5 is invalid; it must be >= 1"),
        ("dfme", "queries", 0, "queries=0 is invalid; it must be >= 1"),
        ("soft_label", "temperature", 0.0, "temperature=0.0 is invalid; it must be > 0"),
        ("soft_label", "temperature", -1.0, "temperature=-1.0 is invalid"),
        ("knockoff", "pool", "imagenet", "pool='imagenet' is invalid; allowed: one of 'in_dist', 'mnist5k'"),
        ("knockoff", "strategy", "greedy", "strategy='greedy' is invalid; allowed: one of 'random', 'adaptive'"),
        ("hard_label", "output", "logits", "output='logits' is invalid; allowed: one of 'probs'"),
        ("jacobian", "lam", 0.0, "lam=0.0 is invalid; it must be > 0"),
        ("dfme", "batch", 1, "batch=1 is invalid; it must be >= 2"),
        ("dfme", "eps", 1.0, "eps=1.0 is invalid"),
    ],
)
def test_bad_config_is_a_clear_error(name, field, value, match):
    with pytest.raises(ConfigError, match=match):
        create_attack(name, **{field: value})


def test_errors_found_at_run_time(victim, task, profile):
    with pytest.raises(ConfigError, match="pool='mnist5k' holds 28x28 grey images but synthetic has 16x16; "
                                          "use pool='in_dist'"):
        _run(victim, task, profile, "knockoff", pool="mnist5k")
    with pytest.raises(ConfigError, match="top_k=11 must be between 1 and 10"):
        _run(victim, task, profile, "soft_label", output="topk", top_k=11)
    with pytest.raises(UnknownNameError, match="unknown architecture 'no_such_net'"):
        _run(victim, task, profile, "jacobian", arch="no_such_net")


def test_cross_architecture_substitute(victim, task, profile):
    out, _ = _run(victim, task, profile, "hard_label", arch="resnet18", queries=64, **FAST)
    assert out.extras["substitute_arch"] == "resnet18"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in out.model.modules())


def _resized(task, size, channels):
    """The synthetic task at another image size / channel count (for the MNIST-5k pool)."""
    def fix(x):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False).expand(-1, channels, -1, -1)

    info = dataclasses.replace(task.info, image_size=size, in_channels=channels,
                               mean=task.info.mean * channels, std=task.info.std * channels)
    return dataclasses.replace(task, info=info, x_victim=fix(task.x_victim).contiguous(),
                               x_pool=fix(task.x_pool).contiguous(), x_test=fix(task.x_test).contiguous())


@pytest.mark.parametrize("size,channels", [((28, 28), 1), ((16, 16), 3)])
@pytest.mark.parametrize("strategy", ["random", "adaptive"])
def test_knockoff_mnist5k_pool(task, profile, size, channels, strategy):
    small = _resized(task, size, channels)
    prot = create_defense("none", epochs=1).embed(small, _ctx(profile))
    attack = create_attack("knockoff", pool="mnist5k", strategy=strategy, actions="labels", queries=100, **FAST)
    target = make_target(prot, attack, small)
    out = attack(target, _ctx(profile))
    assert out.queries == target.oracle.queries == 100
    assert out.extras["pool"] == "mnist5k" and out.extras["pool_size"] == 5000
    if strategy == "adaptive":
        assert len(out.extras["policy"]) == 10 and sum(out.extras["policy"]) == pytest.approx(1, abs=1e-3)


def test_jacobian_step_moves_by_lambda_within_the_pixel_range():
    from attacks.extraction.jacobian import jacobian_step

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1])
    out = jacobian_step(net, x, y, 0.25, torch.device("cpu"), batch_size=2)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    grad_sign = net[1].weight[y].sign().view(5, 1, 4, 4)
    assert torch.allclose(out, (x + 0.25 * grad_sign).clamp(0, 1))


def test_dfme_generator_makes_pixels_of_any_size():
    from attacks.extraction.dfme import Generator, centred_log_probs

    for size, ch in (((28, 28), 1), ((32, 32), 3), ((15, 17), 2)):
        g = Generator(8, ch, size)
        x = g(torch.randn(3, 8))
        assert x.shape == (3, ch, *size) and x.min() >= 0 and x.max() <= 1
    lp = centred_log_probs(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.allclose(lp.sum(1), torch.zeros(2), atol=1e-4) and torch.isfinite(lp).all()


def test_knockoff_kmeans_is_seeded():
    import numpy as np

    from attacks.extraction.knockoff import kmeans

    x = torch.cat([torch.randn(30, 2) + 10, torch.randn(30, 2) - 10])
    a = kmeans(x, 2, np.random.default_rng(0))
    assert torch.equal(a, kmeans(x, 2, np.random.default_rng(0)))
    assert len(set(a[:30].tolist())) == 1 and len(set(a[30:].tolist())) == 1 and a[0] != a[-1]

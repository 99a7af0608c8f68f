"""The oracle: answer modes, the query budget, bad options."""


import pytest
import torch
from fixedmodel import Fixed

from bench.errors import ConfigError, WmbenchError
from bench.oracle import BudgetExceeded, Oracle


def test_oracle_counts_budget_and_modes():
    logits = [[2.0, 1.0, 0.1], [0.0, 3.0, 0.5]]
    x = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1, 1)
    o = Oracle(Fixed(logits), num_classes=3, budget=5)
    p = o(x)
    assert o.queries == 3 and torch.allclose(p.sum(1), torch.ones(3))
    with pytest.raises(BudgetExceeded, match="budget 5"):
        o(x)
    assert o.queries == 3
    lab = Oracle(Fixed(logits), num_classes=3, mode="label")(x)
    assert lab.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    top = Oracle(Fixed(logits), num_classes=3, mode="topk", top_k=2)(x)
    assert (top > 0).sum(1).tolist() == [2, 2, 2]
    rnd = Oracle(Fixed(logits), num_classes=3, mode="rounded", decimals=1)(x)
    assert torch.allclose(rnd * 10, (rnd * 10).round())
    assert "model" not in repr(o).lower()


def test_oracle_bad_options():
    with pytest.raises(ConfigError, match="use one of probs, topk, rounded, label"):
        Oracle(Fixed([[0.0]]), num_classes=1, mode="logits")
    with pytest.raises(ConfigError, match="top_k=5 must be between 1 and 3"):
        Oracle(Fixed([[0.0, 0, 0]]), num_classes=3, mode="topk", top_k=5)
    with pytest.raises(ConfigError, match="budget=-1"):
        Oracle(Fixed([[0.0]]), num_classes=1, budget=-1)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()


@pytest.mark.parametrize("mode", ["probs", "topk", "rounded", "label"])
def test_pool_answers_are_the_answers_to_the_images_and_cost_the_same(mode):
    pool = torch.rand(700, 1, 4, 4)
    idx = torch.randperm(700, generator=torch.Generator().manual_seed(1))[:611]
    direct = Oracle(_net(), num_classes=5, mode=mode, top_k=2, batch_size=64)
    tabled = Oracle(_net(), num_classes=5, mode=mode, top_k=2, batch_size=64, pool=pool)
    assert torch.equal(tabled.ask_pool(idx), direct(pool[idx]))  # bit for bit, whatever the batches held
    assert tabled.queries == direct.queries == 611
    with pytest.raises(BudgetExceeded, match="budget 611"):
        Oracle(_net(), num_classes=5, budget=611, pool=pool).ask_pool(torch.arange(612))


def test_the_pool_table_is_built_once_and_a_kept_one_is_used_without_the_model():
    pool = torch.rand(50, 1, 4, 4)
    kept: list[torch.Tensor] = []

    def remember(build):
        if not kept:
            kept.append(build())
        return kept[0]

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            calls.append(len(x))
            return self.net(x)

    first = Oracle(Counting(), num_classes=5, pool=pool, remember=remember)
    a = first.ask_pool(torch.arange(10))
    b = first.ask_pool(torch.arange(10, 50))
    assert calls == [50] and first.queries == 50  # one pass over the pool, every query counted
    second = Oracle(Counting(), num_classes=5, mode="label", pool=pool, remember=remember)
    lab = second.ask_pool(torch.arange(50))
    assert calls == [50] and second.queries == 50  # another attack on the same model: answered from the table
    assert torch.equal(lab.argmax(1), torch.cat([a, b]).argmax(1))
    stale = Oracle(_net(), num_classes=5, pool=torch.rand(49, 1, 4, 4), remember=remember)
    with pytest.raises(WmbenchError, match="does not fit the pool .*; run again with an empty --cache-dir"):
        stale.ask_pool(torch.arange(3))
    with pytest.raises(WmbenchError, match="without the attacker's pool; query it with oracle"):
        Oracle(_net(), num_classes=5).ask_pool(torch.arange(3))

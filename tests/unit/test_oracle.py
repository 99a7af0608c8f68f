"""The oracle: answer modes, the query budget, bad options."""


import pytest
import torch
from fixedmodel import Fixed

from bench.errors import ConfigError
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

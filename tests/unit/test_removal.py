"""Behaviour of the removal attacks on the synthetic data set (test profile): what each one changes."""

import io
import warnings

import pytest
import torch

from attacks._common import last_linear, masks_kept, prunable
from attacks.removal.input_noise import NoisyInput, content_noise
from attacks.removal.mix_finetune import random_mixtures
from bench.api import Context
from bench.errors import ConfigError
from bench.jobs import make_target
from bench.registry import create_attack, create_defense
from bench.train import accuracy, predict_labels


def _ctx(profile, seed=0):
    return Context(device=torch.device("cpu"), seed=seed, profile=profile)


@pytest.fixture(scope="module")
def victim(task, profile):
    return create_defense("content", rate=0.1).embed(task, _ctx(profile))


def _attack(name, victim, task, profile, **cfg):
    attack = create_attack(name, **cfg)
    return attack(make_target(victim, attack, task), _ctx(profile))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _roundtrip(model):
    """Save and reload a whole module as the cache does (no warning allowed)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


# ---------------------------------------------------------------------------------------------- fine_tune


@pytest.mark.parametrize("mode", ["ftll", "rtll"])
def test_fine_tune_last_layer_modes_change_only_the_last_layer(mode, victim, task, profile):
    before = _state(victim.model)
    out = _attack("fine_tune", victim, task, profile, mode=mode, epochs=1)
    name, _ = last_linear(out.model)
    assert _changed(before, out.model) == {f"{name}.weight", f"{name}.bias"}


def test_fine_tune_all_layers_changes_the_body(victim, task, profile):
    before = _state(victim.model)
    out = _attack("fine_tune", victim, task, profile, mode="rtal", epochs=1)
    changed = _changed(before, out.model)
    assert any("features" in k for k in changed) and len(changed) == len(before) - 2  # Normalize's buffers stay
    assert accuracy(out.model, task.x_test, task.y_test) > 0.5


# -------------------------------------------------------------------------------------------------- prune


def test_prune_zeroes_the_rate_and_pickles(victim, task, profile):
    out = _attack("prune", victim, task, profile, rate=0.9)
    weights = prunable(out.model)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros >= 0.9 * sum(w.numel() for w in weights)
    assert out.extras["zero_share"] >= 0.9
    again = _roundtrip(out.model)
    assert not any("orig" in k or "mask" in k for k in again.state_dict())
    assert torch.equal(predict_labels(again, task.x_test), predict_labels(out.model, task.x_test))


def test_prune_fine_tune_keeps_pruned_weights_at_zero(victim, task, profile):
    tuned = _attack("prune", victim, task, profile, rate=0.5, finetune_epochs=1)
    plain = _attack("prune", victim, task, profile, rate=0.5)
    for a, b in zip(prunable(tuned.model), prunable(plain.model), strict=True):
        assert not bool(((b == 0) & (a != 0)).any())  # every pruned weight is still zero
    assert _changed(_state(plain.model), tuned.model)  # and the fine-tune did train
    assert all(not p._backward_hooks for p in tuned.model.parameters())  # no gradient hooks left behind


def test_masks_kept_restores_zeros_and_removes_hooks():
    lin = torch.nn.Linear(4, 3)
    mask = (torch.arange(12).view(3, 4) % 2).float()
    with torch.no_grad():
        lin.weight.mul_(mask)
    with masks_kept([lin.weight], [mask]):
        opt = torch.optim.Adam(lin.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            lin(torch.randn(8, 4, generator=torch.Generator().manual_seed(0))).sum().backward()
            opt.step()
    assert bool((lin.weight[mask == 0] == 0).all()) and bool((lin.weight[mask == 1] != 0).all())
    assert not lin.weight._backward_hooks


# --------------------------------------------------------------------------------------------- fine_prune


def test_fine_prune_zeroes_dormant_channels_of_the_last_conv(victim, task, profile):
    out = _attack("fine_prune", victim, task, profile, epochs=1, rate=0.5, max_acc_drop=1.0)
    conv = out.model.get_submodule(out.extras["layer"])
    dead = (conv.weight.flatten(1) == 0).all(1)
    assert out.extras["pruned_channels"] == int(0.5 * conv.out_channels) == int(dead.sum())
    assert bool((conv.bias[dead] == 0).all())
    assert accuracy(out.model, task.x_test, task.y_test) > 0.8


def test_fine_prune_stops_at_the_accuracy_drop(victim, task, profile):
    out = _attack("fine_prune", victim, task, profile, epochs=1, rate=0.99, max_acc_drop=0.0)
    assert out.extras["holdout_acc_pruned"] >= out.extras["holdout_acc_before"]
    assert out.extras["pruned_channels"] < int(0.99 * out.extras["channels"])


# ---------------------------------------------------------------------------------------------------- nad


def test_nad_distils_attention_and_keeps_accuracy(victim, task, profile):
    before = _state(victim.model)
    out = _attack("nad", victim, task, profile, data_frac=0.5, epochs=1, teacher_epochs=1)
    assert _changed(before, out.model)
    assert len(out.extras["layers"]) == 2 and out.epochs == 2
    assert accuracy(out.model, task.x_test, task.y_test) >= accuracy(victim.model, task.x_test, task.y_test) - 0.1


# ------------------------------------------------------------------------------------------- mix_finetune


def test_random_mixtures_are_labelled_neither_source(task):
    g = torch.Generator().manual_seed(0)
    x, y, pairs = random_mixtures(task.x_pool, task.y_pool, 10, 500, ("top_bottom", "blend"), g)
    assert x.shape == (500, *task.x_pool.shape[1:]) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert bool((pairs[:, 0] != pairs[:, 1]).all())
    assert bool((y != pairs[:, 0]).all() and (y != pairs[:, 1]).all())
    assert len(torch.unique(y)) == 10 and len(torch.unique(pairs)) == 10


def test_mix_finetune_runs_and_keeps_accuracy(victim, task, profile):
    out = _attack("mix_finetune", victim, task, profile, epochs=1)
    assert out.extras["mixtures"] == round(0.2 * out.extras["clean"])
    assert accuracy(out.model, task.x_test, task.y_test) > 0.8


# -------------------------------------------------------------------------------------------- input_noise


def test_input_noise_stays_within_the_accuracy_bound(victim, task, profile):
    out = _attack("input_noise", victim, task, profile)
    assert isinstance(out.model, NoisyInput) and out.model.sigma > 0
    ex = out.extras
    assert ex["pool_acc_clean"] - ex["pool_acc_noisy"] <= 0.035
    clean = accuracy(victim.model, task.x_pool, task.y_pool)
    assert clean - accuracy(out.model, task.x_pool, task.y_pool) <= 0.035 + 0.03  # the search used a subset
    again = _roundtrip(out.model)
    assert torch.equal(predict_labels(again, task.x_test), predict_labels(out.model, task.x_test))


def test_input_noise_is_a_function_of_the_input():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = content_noise(x, 3)
    assert torch.equal(whole[2:4], content_noise(x[2:4], 3))  # batching does not matter
    assert not torch.equal(whole, content_noise(x, 4))  # the seed does
    assert not torch.equal(whole[0], whole[1])


def test_input_noise_fixed_sigma(victim, task, profile):
    out = _attack("input_noise", victim, task, profile, sigma=0.0)
    assert out.model.sigma == 0
    assert torch.equal(predict_labels(out.model, task.x_test), predict_labels(victim.model, task.x_test))


# --------------------------------------------------------------------------------------------- nc_unlearn


def test_nc_unlearn_unlearns_the_most_suspect_classes(victim, task, profile):
    out = _attack("nc_unlearn", victim, task, profile, steps=30, epochs=1, classes=2)
    ex = out.extras
    norms = torch.tensor(ex["l1_norms"])
    if ex["flagged"]:
        assert ex["unlearned_classes"][0] == max(ex["flagged"], key=lambda k: ex["anomaly_index"][k])
    else:
        assert ex["unlearned_classes"] == norms.argsort()[:2].tolist()
    assert len(ex["unlearned_classes"]) == 2 == len(ex["trigger_success"])
    assert ex["stamped"] == round(0.2 * round(0.5 * len(task.x_pool)))
    assert accuracy(out.model, task.x_test, task.y_test) > 0.8


# --------------------------------------------------------------------------------------------- bad config


@pytest.mark.parametrize("name,cfg,match", [
    ("fine_tune", {"mode": "ftxx"}, "fine_tune: mode='ftxx' is invalid"),
    ("fine_tune", {"data_frac": 0}, "fine_tune: data_frac=0.0 is invalid"),
    ("prune", {"rate": 1.0}, "prune: rate=1.0 is invalid"),
    ("prune", {"finetune_epochs": -1}, "prune: finetune_epochs=-1 is invalid"),
    ("fine_prune", {"max_acc_drop": 2}, "fine_prune: max_acc_drop=2.0 is invalid"),
    ("nad", {"layers": 0}, "nad: layers=0 is invalid"),
    ("mix_finetune", {"mixers": "diagonal"}, "mix_finetune: mixers='diagonal' is invalid"),
    ("input_noise", {"max_acc_drop": -0.1}, "input_noise: max_acc_drop=-0.1 is invalid"),
    ("input_noise", {"sigma": -1}, "input_noise: sigma=-1 is invalid"),
    ("nc_unlearn", {"stamp_frac": 1.5}, "nc_unlearn: stamp_frac=1.5 is invalid"),
    ("strip", {"frr": 0}, "strip: frr=0.0 is invalid"),
    ("strip", {"superimpose": "blend", "alpha": 1.0}, "strip: superimpose=blend with alpha=1"),
])
def test_bad_config(name, cfg, match):
    with pytest.raises(ConfigError, match=match):
        create_attack(name, **cfg)

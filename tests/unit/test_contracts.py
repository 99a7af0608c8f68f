"""Contract tests generated from the registries: every defense and attack, on the synthetic data set."""

import dataclasses

import pytest
import torch

from bench.api import Context, Outcome, Protected
from bench.errors import ConfigError
from bench.jobs import make_target
from bench.registry import ATTACKS, DEFENSES, create_attack, create_defense, list_attacks, list_defenses
from bench.train import predict_labels


def _ctx(profile, seed=0):
    return Context(device=torch.device("cpu"), seed=seed, profile=profile)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def victim(task, profile):
    return create_defense("content", rate=0.1).embed(task, _ctx(profile))


@pytest.mark.parametrize("name", list_defenses())
def test_defense_contract(name, task, profile):
    prot = create_defense(name).embed(task, _ctx(profile))
    assert isinstance(prot, Protected)
    logits = prot.model(task.x_test[:4])
    assert logits.shape == (4, task.num_classes)
    if prot.has_watermark:
        assert prot.verify_x.min() >= 0 and prot.verify_x.max() <= 1
        assert len(prot.verify_x) == len(prot.verify_y) > 0
        wsr, n = prot.verify(prot.model)
        assert 0.0 <= wsr <= 1.0 and n == len(prot.verify_y)
    # the same seed gives the same model and secret; another seed gives another model
    again = create_defense(name).embed(task, _ctx(profile))
    assert _same_state(_state(prot.model), _state(again.model))
    if prot.has_watermark:
        assert torch.equal(prot.verify_x, again.verify_x)
    other = create_defense(name).embed(task, _ctx(profile, seed=1))
    assert not _same_state(_state(prot.model), _state(other.model))


@pytest.mark.parametrize("name", list_attacks())
def test_attack_contract(name, task, profile, victim):
    attack = create_attack(name)
    before = _state(victim.model)
    target = make_target(victim, attack, task)
    if attack.kind == "extraction":
        assert target.model is None  # black box: the oracle only
    out = attack(target, _ctx(profile))
    assert isinstance(out, Outcome)
    assert _same_state(before, _state(victim.model)), "an attack modified the victim"
    assert out.queries >= 0 and out.epochs >= 0
    if attack.kind in ("extraction", "removal", "control"):
        assert out.model is not None and not out.model.training
    if attack.kind == "extraction":
        assert out.queries == target.oracle.queries > 0
    # the same seed gives the same result
    out2 = attack(make_target(victim, attack, task), _ctx(profile))
    if out.model is not None:
        assert torch.equal(predict_labels(out.model, task.x_test), predict_labels(out2.model, task.x_test))
    assert (out.detected, out.detected_target) == (out2.detected, out2.detected_target)


def _bad_values(f: dataclasses.Field):
    m = f.metadata
    if m.get("choices") is not None:
        yield "__not_a_choice__"
        return
    for key, delta in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        bound = m.get(key)
        if bound is not None:
            step = 1 if isinstance(f.default, int) and not isinstance(f.default, bool) else 0.5
            yield bound + delta * step if key in ("ge", "le") else bound
    if isinstance(f.default, bool):
        yield "yes please"


def _config_cases():
    for reg in (DEFENSES, ATTACKS):
        for name in reg.list():
            for f in dataclasses.fields(reg.get(name).Config):
                for bad in _bad_values(f):
                    yield pytest.param(reg, name, f.name, bad, id=f"{reg.kind}-{name}-{f.name}={bad}")


@pytest.mark.parametrize("reg,name,field,bad", list(_config_cases()))
def test_bad_config_value_names_field(reg, name, field, bad):
    with pytest.raises(ConfigError, match=rf"{name}: {field}=.* is invalid"):
        reg.create(name, **{field: bad})


@pytest.mark.parametrize("reg", [DEFENSES, ATTACKS], ids=["defenses", "attacks"])
def test_unknown_config_key_rejected(reg):
    for name in reg.list():
        with pytest.raises(ConfigError, match=f"{name} has no parameter 'no_such_knob'"):
            reg.create(name, no_such_knob=1)


def test_every_config_has_defaults_and_help():
    for reg in (DEFENSES, ATTACKS):
        for name in reg.list():
            cfg_cls = reg.get(name).Config
            cfg_cls()  # every field defaulted
            for f in dataclasses.fields(cfg_cls):
                assert f.metadata.get("help"), f"{name}.{f.name} needs a help line"


def test_content_watermark_is_learned(victim, task, profile):
    wsr, n = victim.verify(victim.model)
    assert n > 100 and wsr >= 0.9
    clean = create_defense("none").embed(task, _ctx(profile, seed=5))
    assert victim.verify(clean.model)[0] <= 0.2


def test_content_class_range_checked(task, profile):
    with pytest.raises(ConfigError, match="target_class=12 is out of range for synthetic"):
        create_defense("content", target_class=12).embed(task, _ctx(profile))
    with pytest.raises(ConfigError, match="must differ"):
        create_defense("content", target_class=3, source_class=3)


def test_soft_label_respects_budget_and_output_mode(task, profile, victim):
    attack = create_attack("soft_label", queries=100, output="label")
    target = make_target(victim, attack, task)
    out = attack(target, _ctx(profile))
    assert out.queries == target.oracle.queries == 100
    assert out.extras["oracle"]["mode"] == "label"

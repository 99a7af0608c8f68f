"""The baseline watermark zoo on the synthetic data set: each scheme is learned, an independent clean model
does not carry it, bad configurations fail clearly, and DAWN's API hook behaves as specified."""

import dataclasses

import pytest
import torch

from bench.api import Context
from bench.errors import ConfigError
from bench.oracle import Oracle
from bench.registry import create_defense
from bench.train import predict_labels, predict_probs


def _ctx(profile, seed=0):
    return Context(device=torch.device("cpu"), seed=seed, profile=profile)


@pytest.fixture(scope="module")
def clean(task, profile):
    """An independent clean model (the `none` scheme at another seed)."""
    return create_defense("none").embed(task, _ctx(profile, seed=5)).model


# configurations that make each watermark learnable in the tiny `test` profile (4 epochs, 800 images;
# content is covered by tests/unit/test_contracts.py)
LEARNABLE = {
    "noise": {"rate": 0.2},
    "blend": {"rate": 0.2, "alpha": 0.5},
    "unrelated": {"rate": 0.1},
    "adi": {"size": 20, "rate": 0.3},
    "ewe": {"patch_frac": 0.25},
}
_EMBEDDED: dict = {}


def _learnable(name, task, profile):
    """The victim of ``name`` with its learnable configuration, embedded once per session."""
    if name not in _EMBEDDED:
        _EMBEDDED[name] = create_defense(name, **LEARNABLE[name]).embed(task, _ctx(profile))
    return _EMBEDDED[name]


@pytest.mark.parametrize("name", list(LEARNABLE))
def test_watermark_is_learned_and_absent_from_a_clean_model(name, task, profile, clean):
    prot = _learnable(name, task, profile)
    wsr, n = prot.verify(prot.model)
    assert n >= 20 and wsr >= 0.9, f"{name}: victim WSR {wsr:.2f} on {n}"
    null, _ = prot.verify(clean)
    assert null <= 0.3, f"{name}: an independent clean model scores {null:.2f}"
    assert prot.verify_x.min() >= 0 and prot.verify_x.max() <= 1


@pytest.mark.parametrize("name", ["noise", "blend", "ewe", "content"])
def test_source_equal_to_target_is_rejected(name):
    with pytest.raises(ConfigError, match=f"{name}: source_class and target_class are both 3"):
        create_defense(name, source_class=3, target_class=3)


@pytest.mark.parametrize("name", ["noise", "blend", "ewe", "unrelated"])
def test_class_out_of_range_for_the_task(name, task, profile):
    with pytest.raises(ConfigError, match=f"{name}: target_class=12 is out of range for synthetic"):
        create_defense(name, target_class=12).embed(task, _ctx(profile))


def test_ewe_source_out_of_range(task, profile):
    with pytest.raises(ConfigError, match="ewe: source_class=10 is out of range for synthetic"):
        create_defense("ewe", source_class=10).embed(task, _ctx(profile))


def test_secret_pattern_follows_the_seed_unless_keyed(task, profile):
    for name in ("noise", "blend"):
        a = create_defense(name).pattern(task, _ctx(profile, 0))
        b = create_defense(name).pattern(task, _ctx(profile, 1))
        assert not torch.equal(a, b)
        k = create_defense(name, key=7)
        assert torch.equal(k.pattern(task, _ctx(profile, 0)), k.pattern(task, _ctx(profile, 1)))


# ------------------------------------------------------------------------------------------- unrelated


def test_unrelated_verifies_on_images_never_trained_on(task, profile):
    d = create_defense("unrelated", **LEARNABLE["unrelated"])
    prot = _learnable("unrelated", task, profile)
    pool = d.images(task, _ctx(profile))  # the same seeded order embed used
    n_train = prot.info["watermark_samples"]
    trained = pool[:n_train].flatten(1)
    assert len(prot.verify_x) == min(profile.verify_max, len(pool) - n_train)
    for v in prot.verify_x.flatten(1):
        assert not (trained == v).all(1).any()
    assert prot.verify_x.shape[1:] == task.x_test.shape[1:]  # resized to the task's 16x16


def test_unrelated_on_mnist_switches_to_abstract_images(task, profile):
    mnist_task = dataclasses.replace(task, dataset="mnist")
    with pytest.raises(ConfigError, match="in-domain on an MNIST task; use pool=abstract"):
        create_defense("unrelated", pool="mnist5k").images(mnist_task, _ctx(profile))
    x = create_defense("unrelated").images(mnist_task, _ctx(profile))
    assert x.shape[1:] == task.x_test.shape[1:] and x.min() >= 0 and x.max() <= 1
    with pytest.raises(ConfigError, match="digit=3 only applies to the MNIST pool"):
        create_defense("unrelated", pool="abstract", digit=3)


# ------------------------------------------------------------------------------------------------- adi


def test_adi_trigger_set_has_the_paper_size_and_random_labels(task, profile):
    x, y = create_defense("adi").trigger_set(task, _ctx(profile))
    assert x.shape == (100, 1, 16, 16) and x.min() >= 0 and x.max() <= 1
    assert len(y.unique()) > 5  # random labels, not one target
    assert not torch.equal(x, create_defense("adi").trigger_set(task, _ctx(profile, 1))[0])


def test_adi_finetune_mode_embeds_on_a_clean_model(task, profile, clean):
    prot = create_defense("adi", mode="finetune", size=20, rate=0.3, epochs=2, finetune_epochs=3,
                          finetune_lr=profile.lr).embed(task, _ctx(profile))
    assert prot.info["mode"] == "finetune" and prot.info["epochs"] == 5
    assert prot.verify(prot.model)[0] >= 0.8 > prot.verify(clean)[0] + 0.3


# ------------------------------------------------------------------------------------------------- ewe


def test_snnl_is_higher_when_the_groups_are_entangled():
    from defenses.ewe import snnl

    g = torch.Generator().manual_seed(0)
    groups = torch.cat([torch.ones(16), torch.zeros(16)])
    a, b = torch.rand(16, 8, generator=g), torch.rand(16, 8, generator=g)
    separated = torch.cat([a + torch.tensor([5.0] + [0] * 7), b + torch.tensor([0] * 7 + [5.0])])
    mixed = torch.cat([a, b])
    t = torch.tensor(0.1)
    assert snnl(mixed, groups, t) > snnl(separated, groups, t)


def test_ewe_taps_the_hidden_layers_of_small_cnn(task):
    from torch import nn

    from bench.models import model_for_task
    from defenses.ewe import _Taps

    model = model_for_task(task)
    taps = _Taps(model, 3, task.x_test[:2])
    kinds = [type(m) for m in taps.modules]
    assert kinds == [nn.Conv2d, nn.Conv2d, nn.Linear] and taps.modules[-1].out_features == 256
    _, feats = taps(model, task.x_test[:4])
    assert len(feats) == 3 and all(len(f) == 4 for f in feats)
    taps.remove()


# ------------------------------------------------------------------------------------------------ dawn


@pytest.fixture(scope="module")
def dawn(task, profile):
    return create_defense("dawn", rate=0.3).embed(task, _ctx(profile))


def test_dawn_serve_is_deterministic_per_input(dawn, task):
    x = task.x_pool[:200]
    probs = predict_probs(dawn.model, x)
    once = dawn.serve(x, probs)
    assert torch.equal(once, dawn.serve(x, probs))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    assert torch.equal(dawn.serve(x[perm], probs[perm]), once[perm])  # no dependence on the batch


def test_dawn_answers_wrong_on_about_the_configured_fraction(task, profile):
    d = create_defense("dawn", rate=0.1)
    serve = d.serve(task, _ctx(profile))
    x = torch.rand(3000, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    probs = torch.softmax(torch.randn(3000, 10, generator=torch.Generator().manual_seed(3)), 1)
    out = serve(x, probs)
    changed = out.argmax(1) != probs.argmax(1)
    assert abs(float(changed.float().mean()) - 0.1) < 0.025
    assert torch.equal(changed, serve.selected(x))
    assert torch.equal(out[~changed], probs[~changed])
    assert torch.allclose(out.sum(1), torch.ones(3000))  # still a distribution: two entries swapped
    assert repr(serve) == "DawnServe(rate=0.1, num_classes=10)"  # the key is never printed


def test_dawn_verification_labels_are_what_the_oracle_serves(dawn, task):
    wsr, n = dawn.verify(dawn.model)
    assert n > 50 and wsr == 0.0  # the raw model answers correctly: WSR ~0 in identity cells
    for mode in ("probs", "label"):
        oracle = Oracle(dawn.model, num_classes=task.num_classes, serve=dawn.serve, mode=mode)
        assert torch.equal(oracle(dawn.verify_x).argmax(1), dawn.verify_y)
    # selected pool images are watermarked; the others are served the model's own label
    oracle = Oracle(dawn.model, num_classes=task.num_classes, serve=dawn.serve)
    sel = dawn.serve.selected(task.x_pool)
    served = oracle(task.x_pool).argmax(1)
    own = predict_labels(dawn.model, task.x_pool)
    assert torch.equal(served[~sel], own[~sel]) and bool((served[sel] != own[sel]).all())


def test_dawn_serve_survives_pickling(dawn, task):
    import pickle

    again = pickle.loads(pickle.dumps(dawn))
    x = task.x_pool[:64]
    probs = predict_probs(dawn.model, x)
    assert torch.equal(again.serve(x, probs), dawn.serve(x, probs))


# --------------------------------------------------------------------------------------------- content


def test_content_patterns(task, profile):
    from defenses.content import checker_patch

    default = create_defense("content")
    assert default.config.pattern == "checker"
    assert torch.equal(default.patch(task), checker_patch(4, 1))
    solid = create_defense("content", pattern="solid").patch(task)
    text = create_defense("content", pattern="text", patch_frac=1.0).patch(task)
    assert bool((solid == 1).all()) and text.shape == (1, 16, 16)
    assert 0 < float(text.mean()) < 0.5  # white letters on black

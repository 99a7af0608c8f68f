"""MEA-Defender: the mixers, the loss pieces against hand-computed values, the ablations' defaults, and a small
end-to-end embedding on the synthetic data set."""

import dataclasses
import math

import pytest
import torch

from bench.api import Context, DatasetInfo
from bench.errors import ConfigError
from bench.registry import create_defense, get_defense
from defenses._mea_closed_form import (
    AUTO_MARGIN,
    AUTO_MAX,
    auto_kl_weight,
    auto_weight_from_outputs,
    break_even_ratio,
    combination_optimum,
)
from defenses._mea_losses import (
    auxiliary_loss,
    combination_loss,
    mgda_aux_weight,
    min_norm_gamma,
    min_norm_weights,
    similarity_loss,
    total_loss,
)
from defenses._mixing import ALL_MIXERS, HELD_OUT, WATERMARK_LAYOUTS, evasion_mixers, mix
from defenses.mea_defender import default_classes
from reproductions.mea_defender import _stage_weights, combination_diagnosis


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _zeros_ones(n, c=1, h=28, w=28):
    return torch.zeros(n, c, h, w), torch.ones(n, c, h, w)


# ------------------------------------------------------------------------------------------------ mixers


@pytest.mark.parametrize("name", ALL_MIXERS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16), (3, 20, 12)])
def test_mixers_keep_shape_range_and_sources(name, shape):
    a, b = torch.rand(5, *shape), torch.rand(5, *shape)
    out = mix(name, a, b, _g())
    assert out.shape == a.shape and out.dtype == a.dtype
    assert out.min() >= 0 and out.max() <= 1
    if name != "blend":  # every pixel comes from one of the two images, at some position
        za, zb = _zeros_ones(5, *shape)
        two = mix(name, za, zb, _g())
        assert set(two.unique().tolist()) == {0.0, 1.0}
        assert (two == two[:, :1]).all()  # all channels come from the same source


def test_watermark_seam_within_jitter_and_both_orders():
    h = 28
    a, b = _zeros_ones(400, h=h)
    out = mix("top_bottom", a, b, _g(), jitter=3)
    col = out[:, 0, :, 0]
    assert (out == col[:, None, :, None]).all()  # whole rows come from one image
    top_is_b = col[:, 0] == 1
    seam = (col != col[:, :1]).float().argmax(1)  # first row of the second band
    assert ((seam >= h // 2 - 3) & (seam <= h // 2 + 3)).all()
    assert set(seam.tolist()) == set(range(h // 2 - 3, h // 2 + 4))  # every jitter value occurs
    assert 0.35 < top_is_b.float().mean() < 0.65  # A and B come first equally often
    flat = mix("top_bottom", a, b, _g(), jitter=0)
    assert (((flat[:, 0, :, 0] != flat[:, 0, :1, 0]).float().argmax(1)) == h // 2).all()


def test_watermark_bands_are_shifted_runs_of_their_sources():
    n, h, w = 300, 16, 16
    rows = torch.arange(h).float().view(1, 1, h, 1).expand(n, 1, h, w) / 100
    a, b = rows.clone(), rows + 0.5  # a pixel tells its source image and row
    out = mix("top_bottom", a, b, _g(1))[:, 0, :, 0]
    starts = set()
    for r in out:
        src_b = r >= 0.5
        seam = int((src_b != src_b[0]).float().argmax())
        for band in (r[:seam], r[seam:]):
            idx = torch.round((band % 0.5) * 100)
            assert (idx.diff() == 1).all()  # a contiguous run of rows
        starts.add(int(torch.round((r[0] % 0.5) * 100)))
    assert len(starts) > 3  # shaken: the first band starts at various heights
    steady = mix("top_bottom", a, b, _g(1), shake=False)[:, 0, :, 0]
    assert len({round(float(v) % 0.5 * 100) for v in steady[:, 0]}) <= 4


def test_left_right_variant_splits_columns():
    a, b = _zeros_ones(50)
    out = mix("left_right", a, b, _g())
    assert (out == out[:, :, :1, :]).all()  # whole columns from one image
    assert not (out == out[:, :, :, :1]).all()


def test_mixers_are_seeded():
    a, b = torch.rand(20, 1, 28, 28), torch.rand(20, 1, 28, 28)
    for name in ALL_MIXERS:
        assert torch.equal(mix(name, a, b, _g(3)), mix(name, a, b, _g(3)))
    assert not torch.equal(mix("top_bottom", a, b, _g(3)), mix("top_bottom", a, b, _g(4)))


def test_held_out_mixers_differ_from_training_ones():
    for layout in WATERMARK_LAYOUTS:
        trained = {layout, *evasion_mixers(layout)}
        assert layout not in evasion_mixers(layout)
        assert not trained & set(HELD_OUT)
        a, b = _zeros_ones(60)
        seen = {name: mix(name, a, b, _g(), layout=layout) for name in trained}
        for name in HELD_OUT:
            held = mix(name, a, b, _g(), layout=layout)
            for other in seen.values():  # no held-out composite equals any composite a training mixer makes
                assert (held[:, None] != other[None]).flatten(2).any(2).all()


def test_mixer_input_checks():
    with pytest.raises(ValueError, match="unknown mixer"):
        mix("swirl", *_zeros_ones(2), _g())
    with pytest.raises(ValueError, match="N x C x H x W"):
        mix("blend", torch.zeros(1, 28, 28), torch.zeros(1, 28, 28), _g())


# ------------------------------------------------------------------------------------------------ losses


def test_combination_loss_by_hand_and_no_gradient_through_anchors():
    z_wm = torch.tensor([[0.5, 0.5]]).log().requires_grad_()
    z_a = torch.tensor([[0.9, 0.1]]).log().requires_grad_()
    z_b = torch.tensor([[0.1, 0.9]]).log().requires_grad_()
    loss = combination_loss(z_wm, z_a, z_b)
    kl = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(p_wm || p_A), = KL(p_wm || p_B) here
    assert loss.item() == pytest.approx(2 * kl, rel=1e-5)
    loss.backward()
    assert z_a.grad is None and z_b.grad is None and z_wm.grad is not None
    same = torch.tensor([[2.0, -1.0, 0.5]])
    assert combination_loss(same, same, same).item() == pytest.approx(0.0, abs=1e-6)


def _logp(rows):
    return torch.tensor(rows, dtype=torch.float64).log()


def _objective_minimum(log_pa, log_pb, target, w_ce, w_kl):
    """Brute force: minimise w_ce * CE + w_kl * mean KL over free logits."""
    z = torch.zeros(log_pa.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([z], max_iter=1000, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        lq = torch.log_softmax(z, 0)
        q = lq.exp()
        kl = sum((q * (lq - lp)).sum(1).mean() for lp in (log_pa, log_pb))
        loss = -w_ce * lq[target] + w_kl * kl
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return torch.softmax(z.detach(), 0)


def test_combination_optimum_by_hand_without_cross_entropy():
    # w_ce = 0: q is the normalised geometric mean sqrt(p_A p_B), whatever the KL weight
    pa, pb = _logp([[0.8, 0.1, 0.1]]), _logp([[0.1, 0.7, 0.2]])
    g = torch.tensor([math.sqrt(0.08), math.sqrt(0.07), math.sqrt(0.02)])
    q = combination_optimum(pa, pb, target=2, w_ce=0.0, w_kl=3.0)
    assert torch.allclose(q, (g / g.sum()).double(), atol=1e-9)
    assert q.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("w_ce,w_kl", [(0.01, 2.5), (0.27, 2.5), (1.0, 1.0), (5.0, 0.5), (40.0, 0.1)])
def test_combination_optimum_matches_brute_force(w_ce, w_kl):
    gen = torch.Generator().manual_seed(3)
    log_pa = torch.log_softmax(torch.randn(40, 6, generator=gen, dtype=torch.float64) * 2
                               + torch.tensor([5.0, 0, 0, 0, 0, 0], dtype=torch.float64), 1)
    log_pb = torch.log_softmax(torch.randn(40, 6, generator=gen, dtype=torch.float64) * 2
                               + torch.tensor([0, 5.0, 0, 0, 0, 0], dtype=torch.float64), 1)
    q = combination_optimum(log_pa, log_pb, 2, w_ce, w_kl)
    assert torch.allclose(q, _objective_minimum(log_pa, log_pb, 2, w_ce, w_kl), atol=1e-6)


def test_break_even_ratio_separates_the_answers():
    gen = torch.Generator().manual_seed(5)
    log_pa = torch.log_softmax(torch.randn(30, 5, generator=gen, dtype=torch.float64)
                               + torch.tensor([4.0, 0, -2, 0, 0], dtype=torch.float64), 1)
    log_pb = torch.log_softmax(torch.randn(30, 5, generator=gen, dtype=torch.float64)
                               + torch.tensor([0, 4.0, -2, 0, 0], dtype=torch.float64), 1)
    r = break_even_ratio(log_pa, log_pb, 2)
    assert r > 0
    assert int(combination_optimum(log_pa, log_pb, 2, 1.001 * r, 1.0).argmax()) == 2
    assert int(combination_optimum(log_pa, log_pb, 2, 0.999 * r, 1.0).argmax()) != 2
    # a target that already has the largest geometric mean needs no cross-entropy at all
    assert break_even_ratio(_logp([[0.2, 0.1, 0.7]]), _logp([[0.1, 0.2, 0.7]]), 2) == 0.0


def test_combination_optimum_input_checks():
    pa = _logp([[0.5, 0.5]])
    with pytest.raises(ValueError, match="w_kl > 0"):
        combination_optimum(pa, pa, 0, 1.0, 0.0)
    with pytest.raises(ValueError, match="not a class"):
        combination_optimum(pa, pa, 2, 1.0, 1.0)
    with pytest.raises(ValueError, match="same classes"):
        combination_optimum(pa, _logp([[0.2, 0.3, 0.5]]), 0, 1.0, 1.0)


def test_combination_diagnosis_of_a_model():
    # a "model" that answers every input with fixed probabilities: p(target) tiny, so only a large w/c works
    probs = torch.tensor([0.6, 0.39, 0.01])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(probs.log())
    x = torch.rand(8, 1, 2, 2)
    d = combination_diagnosis(model, x, x, 2, w_ce=0.01, w_kl=2.5)
    assert d["p_a_target"] == pytest.approx(0.01, rel=1e-5) and d["answer"] == 0
    assert d["ratio"] == pytest.approx(0.004)
    assert d["break_even"] == pytest.approx(2 * 0.6 / 1.59 * math.log(60), rel=1e-6)
    assert combination_diagnosis(model, x, x, 2, w_ce=2 * d["break_even"], w_kl=1.0)["answer"] == 2


def test_stage_weights_from_the_victims_record():
    info = {"stage1": {"epochs": 10, "samples_per_epoch": {"clean": 99, "watermark": 1, "evasion": 0,
                                                           "same_class_mix": 0}, "mgda_aux_weight_mean": 0.5}}
    cfg = {"combination": True, "com_stage1": True, "com_extra": 2.0, "com_extra_tenth": 12.0, "balance": "mgda"}
    w, c = _stage_weights(info, cfg, "stage1")
    assert w == pytest.approx(0.01) and c == pytest.approx(0.5 + (9 * 2 + 12) / 10)
    assert _stage_weights(info, cfg, "stage2") is None
    assert _stage_weights(info, {**cfg, "com_stage1": False}, "stage1") is None
    assert _stage_weights(info, {**cfg, "combination": False}, "stage1") is None
    # the KL's own weight (v3): c is that weight (as applied) plus the extra, MGDA's weight plays no part
    own = {**cfg, "balance": "fixed", "kl_weight": 0.05, "com_extra": 0.0, "com_extra_tenth": 0.0}
    info["stage1"]["kl_weight_mean"] = 0.05
    assert _stage_weights(info, own, "stage1") == pytest.approx((0.01, 0.05))
    info["stage1"]["kl_weight_mean"] = 0.07  # auto: the mean it applied
    assert _stage_weights(info, {**own, "kl_weight": "auto"}, "stage1") == pytest.approx((0.01, 0.07))
    assert _stage_weights(info, {**own, "balance": "paper_tasks", "kl_weight": None}, "stage1") is None


def test_similarity_loss_by_hand():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.3, 4.4], [9.0, 9.0]])
    y = torch.tensor([0, 0, 2, 5])  # rows 0..2 are in {0, 1, 2}; row 3 is not
    # pairs (0, 1): same label, 0.5 * 25; (1, 2): different labels at distance 0.5, 0.5 * (1 - 0.5)^2
    expected = (0.5 * 25 + 0.5 * 0.25) / 2 / 2
    assert similarity_loss(z, y, (0, 1, 2)).item() == pytest.approx(expected, rel=1e-5)
    assert similarity_loss(z, torch.tensor([0, 5, 5, 5]), (0, 1, 2)).item() == 0.0


def test_min_norm_gamma_cases():
    assert min_norm_gamma(1.0, 1.0, 5.0) == 0.999  # v12 >= v11
    assert min_norm_gamma(5.0, 2.0, 2.0) == 0.001  # v12 >= v22
    assert min_norm_gamma(4.0, 1.0, 2.0) == pytest.approx((2 - 1) / (4 + 2 - 2))
    # the formula minimises |c x1 + (1 - c) x2|^2 over c
    x1, x2 = torch.tensor([2.0, 0.5]), torch.tensor([-0.5, 1.0])
    c = min_norm_gamma(float(x1 @ x1), float(x1 @ x2), float(x2 @ x2))
    grid = torch.linspace(0, 1, 2001)
    best = grid[((grid[:, None] * x1 + (1 - grid[:, None]) * x2) ** 2).sum(1).argmin()]
    assert c == pytest.approx(float(best), abs=1e-3)


def test_mgda_weight_with_loss_plus_normalisation():
    # normalised, |g| = 1 / loss (below the cap): orthogonal gradients with equal losses split evenly
    g1, g2 = [torch.tensor([3.0, 0.0])], [torch.tensor([0.0, 2.0])]
    assert mgda_aux_weight(g1, g2, 0.5, 0.5) == pytest.approx(0.5, abs=1e-4)
    # after normalisation |g1| = 1 / loss1 = 1 and |g2| = 1 / loss2 = 2: gamma = 4 / 5, task 2 gets 1 / 5
    assert mgda_aux_weight(g1, g2, 1.0, 0.5) == pytest.approx(0.2, abs=1e-4)
    # the normaliser is capped at 10: loss * |g| = 100 -> divided by 10, not 100
    big = [torch.tensor([100.0, 0.0])]
    assert mgda_aux_weight(big, g2, 1.0, 0.5) == pytest.approx(1 - 4 / (100 + 4), abs=1e-4)
    assert mgda_aux_weight(g1, [None], 1.0, 1.0) == pytest.approx(0.999)  # unused parameters count as zeros


# ------------------------------------------------------------------------------------------------ config


def _info(name, classes):
    return DatasetInfo(name, len(classes), 3, (32, 32), (0.5,) * 3, (0.25,) * 3, tuple(classes))


def test_default_classes(task):
    assert default_classes(task) == (0, 1, 2)
    cifar100 = dataclasses.replace(task, dataset="cifar100",
                                   info=_info("cifar100", [f"c{i}" for i in range(4)] + ["beaver"] +
                                              [f"d{i}" for i in range(25)] + ["dolphin"] +
                                              [f"e{i}" for i in range(24)] + ["otter"]))
    assert default_classes(cifar100) == (4, 30, 55)


def test_classes_checked(task, ctx):
    with pytest.raises(ConfigError, match="target_class=12 is out of range for synthetic"):
        create_defense("mea_defender", target_class=12).embed(task, ctx)
    with pytest.raises(ConfigError, match="mea_defender_fixed: class_a and class_b are both 3"):
        create_defense("mea_defender_fixed", class_a=3, class_b=3)
    with pytest.raises(ConfigError, match="three different classes"):
        create_defense("mea_defender", class_a=2).embed(task, ctx)  # 2 is the default target


def test_ablation_defaults_differ_as_intended():
    base = create_defense("mea_defender_official").config  # the public code's weights
    fields = {f.name for f in dataclasses.fields(base)}

    def changed(name, against=base):
        cfg = create_defense(name).config
        assert {f.name for f in dataclasses.fields(cfg)} == fields
        return {k for k in fields if getattr(cfg, k) != getattr(against, k)}

    assert base.balance == "mgda" and base.combination and base.stage2_eva_rate > 0 and base.kl_weight is None
    assert changed("mea_defender_no_eva") == {"stage2_eva_rate"}
    assert changed("mea_defender_fixed") == {"balance"}
    assert changed("mea_defender_ver_only") == {"combination", "balance", "aux_weight"}
    assert changed("mea_defender") == {"balance", "aux_weight", "kl_weight", "com_extra", "com_extra_tenth"}
    tuned = create_defense("mea_defender").config
    assert changed("mea_defender_paper_mgda", tuned) == {"balance", "kl_weight", "sim_weight"}
    cb = create_defense("composite_backdoor").config
    assert not cb.combination and cb.stage2_epochs == 0 and cb.same_class_mix_rate > 0
    for name in ("mea_defender_no_eva", "mea_defender_fixed", "mea_defender_ver_only", "composite_backdoor"):
        assert issubclass(get_defense(name), get_defense("mea_defender_official"))
    assert issubclass(get_defense("mea_defender_official"), get_defense("mea_defender"))


def test_epoch_data_composition(task, ctx):
    d = create_defense("mea_defender")
    pools = d._pools(task, ctx, 0, 1)
    x, y = d._epoch_data(pools, (0, 1, 2), ctx.generator, clean=0.5, wm=0.25, eva=0.125, same=0.25)
    n = len(task.x_victim)
    n_clean, n_wm, n_eva = n // 2, n // 4, n // 8
    assert len(x) == len(y) == n_clean + n_wm + n_eva + n // 4
    assert (y[n_clean:n_clean + n_wm] == 2).all()
    eva = y[n_clean + n_wm:n_clean + n_wm + n_eva]
    assert set(eva.tolist()) == {0, 1}  # evasion mixtures keep one of their source labels, never the target


# ------------------------------------------------------------------------------------------------ end to end


def test_the_profile_budget_is_split_between_the_stages():
    d = create_defense("mea_defender")
    assert d.stage_epochs(6) == (4, 2) and d.stage_epochs(9) == (6, 3) and d.stage_epochs(1) == (1, 0)
    assert create_defense("mea_defender", stage2_share=0.9).stage_epochs(2) == (1, 1)  # stage 1 keeps one
    assert create_defense("mea_defender", epochs=10, stage2_epochs=4).stage_epochs(6) == (6, 4)
    assert create_defense("composite_backdoor").stage_epochs(6) == (6, 0)
    with pytest.raises(ConfigError, match="stage2_epochs=3 leaves no stage-1 epoch"):
        create_defense("mea_defender", epochs=3, stage2_epochs=3)
    with pytest.raises(ConfigError, match="stage2_epochs=6 leaves no stage-1 epoch of the 6 epochs"):
        create_defense("mea_defender", stage2_epochs=6).stage_epochs(6)


def test_verification_set_size_rule(task, ctx):
    d = create_defense("mea_defender")
    assert d._verify_n(400, 40, 40) == 1000  # profile cap below 1000: 1000 if the test pairs allow it
    assert d._verify_n(400, 10, 20) == 200
    assert d._verify_n(2000, 1000, 1000) == 2000


def test_default_embedding_records_its_pieces(task, ctx):
    prot = create_defense("mea_defender_official", epochs=2, stage2_epochs=1).embed(task, ctx)
    info = prot.info
    assert info["classes"] == {"a": 0, "b": 1, "target": 2}
    assert len(prot.verify_x) == info["n_verify"] == 1000  # the test profile caps at 400 < 1000: 1000 pairs
    assert (prot.verify_y == 2).all() and 0 <= prot.verify_x.min() and prot.verify_x.max() <= 1
    n = len(task.x_victim)
    assert info["stage1"]["samples_per_epoch"] == {"clean": n, "watermark": round(0.01 * n), "evasion": 0,
                                                   "same_class_mix": 0}
    assert info["stage2"]["samples_per_epoch"]["evasion"] == round(0.08 * n)
    for stage, n_anchor in (("stage1", 600), ("stage2", 1000)):
        assert 0.001 <= info[stage]["mgda_aux_weight_mean"] <= 0.999
        assert 0.0 <= info[stage]["anchor_wm_to_target"] <= 1.0 and info[stage]["anchor_wm_n"] == n_anchor
    assert set(info["wfpr"]) == set(info["seen_mixers"]) | set(info["heldout_mixers"])
    assert info["wfpr_seen"] == pytest.approx(sum(info["wfpr"][k] for k in info["seen_mixers"]) / 4)
    assert info["evasion_trained"]


def test_watermark_learned_and_evasion_lowers_false_triggering(task, ctx, profile):
    # the synthetic set's smooth blobs need more epochs and evasion samples than the defaults to tell mixers apart
    cfg = dict(epochs=16, stage2_epochs=8, stage2_lr_scale=0.5)
    with_eva = create_defense("mea_defender_ver_only", stage2_eva_rate=0.3, **cfg).embed(task, ctx)
    without = create_defense("mea_defender_ver_only", stage2_eva_rate=0.0, **cfg).embed(
        task, Context(torch.device("cpu"), 0, profile))
    wsr, _ = with_eva.verify(with_eva.model)
    assert wsr >= 0.7
    assert without.verify(without.model)[0] >= 0.8
    assert with_eva.info["wfpr_seen"] <= 0.25 and without.info["wfpr_seen"] >= 0.5
    assert not without.info["evasion_trained"]


# ------------------------------------------------------------------------------ the KL's own weight (v3)


def test_total_loss_shares_or_splits_the_weights_by_hand():
    ce, sim, com = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    # public code: ce + s (sim + com) + extra com
    assert total_loss(ce, sim, com, aux_weight=0.5, kl_weight=None, extra=2.0).item() == pytest.approx(1 + 2.5 + 6)
    # own KL weight: the similarity term keeps aux_weight whatever the KL weight is
    assert total_loss(ce, sim, com, aux_weight=1.0, kl_weight=0.05).item() == pytest.approx(1 + 2 + 0.15)
    assert total_loss(ce, sim, com, aux_weight=1.0, kl_weight=0.5).item() == pytest.approx(1 + 2 + 1.5)
    assert total_loss(ce, sim, com, aux_weight=1.0, kl_weight=0.05, extra=1.0).item() == pytest.approx(1 + 2 + 3.15)
    assert total_loss(ce, None, com, aux_weight=0.7, kl_weight=None).item() == pytest.approx(1 + 2.1)
    assert total_loss(ce, sim, None, aux_weight=0.7, kl_weight=0.05).item() == pytest.approx(1 + 1.4)
    assert total_loss(ce, None, None, aux_weight=0.7, kl_weight=None).item() == 1.0
    assert auxiliary_loss(sim, com, shared=False) is sim and auxiliary_loss(sim, com, shared=True).item() == 5.0


def test_auto_kl_weight_follows_the_break_even():
    pa, pb = _logp([[0.7, 0.29, 0.01]] * 3), _logp([[0.25, 0.7, 0.05]] * 3)
    be = break_even_ratio(pa, pb, 2)
    assert be > 0
    c = auto_weight_from_outputs(pa, pb, 2, 0.274)
    assert c == pytest.approx(0.274 / (AUTO_MARGIN * be))
    assert AUTO_MARGIN == 1.5
    # with that weight the loss's minimiser answers the target (w / c = 1.5 x break-even > break-even)
    assert int(combination_optimum(pa, pb, 2, 0.274, c).argmax()) == 2
    assert int(combination_optimum(pa, pb, 2, 0.274, c * 1.6).argmax()) != 2  # 1.6 x that weight: it does not
    # the target already leads the sources: nothing to outweigh, the cap
    lead = _logp([[0.1, 0.1, 0.8]])
    assert auto_weight_from_outputs(lead, lead, 2, 0.274) == AUTO_MAX
    assert auto_weight_from_outputs(pa, pb, 2, 1e6) == AUTO_MAX


def test_auto_kl_weight_reads_the_model_in_eval_mode_and_restores_it():
    probs = torch.tensor([0.6, 0.39, 0.01])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Dropout(0.9))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(probs.log())
    model.train()
    x = torch.rand(8, 1, 2, 2)
    c = auto_kl_weight(model, x, x, 2, 0.1)  # dropout off while reading: exactly the fixed outputs
    lp = _logp([probs.tolist()])
    assert c == pytest.approx(auto_weight_from_outputs(lp, lp, 2, 0.1), rel=1e-6)
    assert model.training


def test_kl_weight_values():
    assert create_defense("mea_defender", kl_weight="auto").config.kl_weight == "auto"
    assert create_defense("mea_defender", kl_weight=0).config.kl_weight == 0.0
    with pytest.raises(ConfigError, match="kl_weight='often' is invalid.*'auto'"):
        create_defense("mea_defender", kl_weight="often")
    with pytest.raises(ConfigError, match="kl_weight=-0.1"):
        create_defense("mea_defender", kl_weight=-0.1)
    with pytest.raises(ConfigError, match="needs combination=true and com_target=true"):
        create_defense("mea_defender", kl_weight="auto", com_target=False)


def test_own_kl_weight_and_auto_are_recorded(task, ctx):
    fixed = create_defense("mea_defender", epochs=2, stage2_epochs=1, kl_weight=0.2).embed(task, ctx).info
    assert fixed["stage1"]["kl_weight_mean"] == pytest.approx(0.2) and "mgda_aux_weight_mean" not in fixed["stage1"]
    auto = create_defense("mea_defender", epochs=2, stage2_epochs=1, kl_weight="auto").embed(task, ctx).info
    for stage in ("stage1", "stage2"):
        st = auto[stage]
        assert 0 < st["kl_weight_mean"] <= AUTO_MAX and 0 < st["kl_weight_last"] <= AUTO_MAX


def test_min_norm_weights_by_hand():
    # two orthogonal gradients of squared norms 1 and 4: alpha = (0.8, 0.2), |.|^2 = 0.64 + 0.16 = 0.8
    alpha = min_norm_weights(torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    assert alpha.tolist() == pytest.approx([0.8, 0.2], abs=1e-6)
    # three tasks, one of them the zero gradient: all the weight on it
    alpha = min_norm_weights(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert alpha[2].item() == pytest.approx(1.0, abs=1e-3)
    # brute force on the simplex for a random Gram matrix
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)).double()
    gram = g @ g.T
    alpha = min_norm_weights(gram, iters=2000)
    grid = torch.distributions.Dirichlet(torch.ones(4)).sample((20000,)).double()
    assert float(alpha @ gram @ alpha) <= float(((grid @ gram) * grid).sum(1).min()) + 1e-6
    assert float(alpha.sum()) == pytest.approx(1.0) and float(alpha.min()) >= 0


def test_paper_tasks_variant_records_a_weight_per_loss(task, ctx):
    info = create_defense("mea_defender_paper_mgda", epochs=2, stage2_epochs=1).embed(task, ctx).info
    w1, w2 = info["stage1"]["task_weight_mean"], info["stage2"]["task_weight_mean"]
    assert set(w2) == {"util", "ver", "eva", "com"} and "eva" not in w1  # no evasion rows in stage 1
    for w in (w1, w2):
        assert all(0 <= v <= 1 for v in w.values())

"""The declared training precision: profiles, cards, card paths, and what bf16 changes in training (and what not)."""

import pytest
import torch

from bench.api import Context
from bench.errors import CardError, ConfigError
from bench.models import create_model
from bench.profiles import PROFILES, get_profile, with_precision
from bench.results import card_path, validate_card
from bench.train import fit, precise_forward, predict_logits, train_precision


def test_a_profile_declares_its_precision_and_fp32_keys_stay_what_they_were():
    quick = get_profile("quick")
    assert quick.precision == "fp32" and "precision" not in quick.as_dict()  # every cache key made before
    bf16 = get_profile("quick", "bf16")
    assert bf16.precision == "bf16" and bf16.as_dict() == {**quick.as_dict(), "precision": "bf16"}
    assert get_profile("quick", "fp32") == PROFILES["quick"]
    with pytest.raises(ConfigError, match=r"^--precision 'fp16' is invalid; use fp32 or bf16$"):
        with_precision(quick, "fp16")


def test_cards_record_the_precision_and_a_bf16_card_lives_beside_the_fp32_one(tmp_path):
    from cardfactory import make_card

    fp32 = card_path(tmp_path, "fashion-mnist", "small_cnn", "content", "soft_label", 2)
    bf16 = card_path(tmp_path, "fashion-mnist", "small_cnn", "content", "soft_label", 2, "bf16")
    assert fp32.name == "seed-2.json" and bf16.name == "seed-2.bf16.json" and fp32.parent == bf16.parent
    card = make_card()
    old = {k: v for k, v in card.items() if k not in ("precision", "cpu_s", "threads")}  # a card of before
    assert validate_card(old)["precision"] == "fp32" and old["cpu_s"] is None and old["threads"] is None
    for bad, msg in [({"precision": "fp16"}, "precision 'fp16' must be one of fp32, bf16"),
                     ({"cpu_s": -1.0}, "field cpu_s must be >= 0"), ({"threads": 1.5}, "field threads must be")]:
        with pytest.raises(CardError, match=msg):
            validate_card({**card, **bad})


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", in_channels=1, num_classes=10, image_size=(28, 28), mean=(0.5,), std=(0.25,))


def test_bf16_trains_in_bf16_and_keeps_weights_and_answers_in_fp32():
    profile = get_profile("test")
    x = torch.rand(256, 1, 28, 28)
    y = torch.randint(0, 10, (256,))
    models = {}
    for precision in ("fp32", "bf16"):
        ctx = Context(device=torch.device("cpu"), seed=0, profile=with_precision(profile, precision))
        models[precision] = fit(_model(), x, y, ctx=ctx, epochs=2, batch_size=64, lr=1e-3)
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters())
    w32, w16 = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models.values())
    assert not torch.equal(w32, w16)  # the steps did run in bf16 ...
    assert float((w32 - w16).abs().max()) < 0.05  # ... and trained the same model, near enough
    assert predict_logits(models["bf16"], x).dtype == torch.float32  # evaluation is fp32 whatever the training


def test_precise_forward_is_the_model_itself_at_fp32_and_returns_fp32_at_bf16():
    model = _model()
    fp32 = Context(device=torch.device("cpu"), seed=0, profile=get_profile("test"))
    assert precise_forward(model, fp32) is model  # the fp32 code path is the one it always was
    bf16 = Context(device=torch.device("cpu"), seed=0, profile=get_profile("test", "bf16"))
    x = torch.rand(4, 1, 28, 28)
    out = precise_forward(model, bf16)(x)
    assert out.dtype == torch.float32 and not torch.equal(out, model(x))
    with train_precision(bf16):
        assert model(x).dtype == torch.bfloat16

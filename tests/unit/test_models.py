"""bench.models: every architecture's output shape, input normalisation, name errors, seeded init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import models
from bench.errors import ConfigError, UnknownNameError
from bench.models import Normalize, create_model, list_archs, model_for_task

ARCHS = list_archs() + ["timm:resnet18", "tv:resnet18"]
SHAPES = {"gray28": (1, (28, 28)), "rgb32": (3, (32, 32))}


def build(arch: str, channels: int = 1, size: tuple[int, int] = (28, 28), classes: int = 7) -> nn.Module:
    mean = tuple(0.1 * (c + 1) for c in range(channels))
    std = tuple(0.2 + 0.05 * c for c in range(channels))
    return create_model(arch, in_channels=channels, num_classes=classes, image_size=size, mean=mean, std=std)


def test_builtins_listed():
    assert list_archs()[:3] == ["small_cnn", "vgg_like", "resnet18"]


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape(arch, shape):
    channels, size = SHAPES[shape]
    torch.manual_seed(0)
    model = build(arch, channels, size).eval()
    assert isinstance(model, nn.Sequential) and isinstance(model[0], Normalize)
    x = torch.rand(2, channels, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()  # attacks and watermarks need input gradients
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("arch", list_archs())
def test_builtins_at_their_smallest_size(arch):
    side = models._MIN_SIZE[arch]
    model = build(arch, 1, (side, side), classes=10).train()
    assert model(torch.rand(3, 1, side, side)).shape == (3, 10)
    assert model.eval()(torch.rand(3, 1, side, side + 5)).shape == (3, 10)


def test_normalize_is_applied():
    mean, std = (0.2, 0.5, 0.7), (0.1, 0.2, 0.4)
    norm = Normalize(mean, std)
    assert norm.mean.shape == (1, 3, 1, 1) and norm.std.shape == (1, 3, 1, 1)
    at_mean = torch.tensor(mean).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    assert torch.allclose(norm(at_mean), torch.zeros(2, 3, 8, 8), atol=1e-6)
    one_std_up = at_mean + torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(norm(one_std_up), torch.ones(2, 3, 8, 8), atol=1e-6)

    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=3, num_classes=10, image_size=(32, 32), mean=mean, std=std)
    model.eval()
    x = torch.rand(4, 3, 32, 32)
    expected = model[1]((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert {"0.mean", "0.std"} <= set(model.state_dict())  # statistics travel with the weights


def test_normalize_rejects_bad_statistics():
    with pytest.raises(ConfigError):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ConfigError):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ConfigError, match="1 or 3 values"):
        create_model("small_cnn", in_channels=3, num_classes=10, image_size=(32, 32),
                     mean=(0.1, 0.2), std=(0.3, 0.3))


@pytest.mark.parametrize(
    "arch, suggestion",
    [("small_cn", "small_cnn"), ("vgg-like", "vgg_like"), ("timm:resnet_18", "resnet18"),
     ("tv:resnet19", "resnet18"), ("tvx:resnet18", "built-ins")],
)
def test_unknown_names(arch, suggestion):
    with pytest.raises(UnknownNameError) as err:
        build(arch)
    msg = str(err.value)
    assert suggestion in msg and "\n" not in msg
    if ":" not in arch:
        assert msg.startswith(f"unknown architecture {arch!r}; did you mean")
        assert "built-ins: small_cnn, vgg_like, resnet18; or timm:<name> / tv:<name>" in msg


def test_unknown_name_without_close_match():
    with pytest.raises(UnknownNameError, match=r"^unknown architecture 'zzz'; built-ins: small_cnn"):
        build("zzz")


def test_too_small_images():
    with pytest.raises(ConfigError, match="at least 16x16"):
        build("vgg_like", 1, (15, 32))
    with pytest.raises(ConfigError, match="at least 8x8"):
        build("small_cnn", 1, (7, 28))


@pytest.mark.parametrize("arch", ARCHS)
def test_seeded_init(arch):
    torch.manual_seed(5)
    a = build(arch, 3, (32, 32)).state_dict()
    torch.manual_seed(5)
    b = build(arch, 3, (32, 32)).state_dict()
    torch.manual_seed(6)
    c = build(arch, 3, (32, 32)).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_torchvision_first_conv_adapted():
    model = build("tv:resnet18", 1, (28, 28))
    conv = model[1].conv1
    assert conv.in_channels == 1 and conv.out_channels == 64
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2) and conv.bias is None
    assert build("timm:resnet18", 1, (28, 28))[1].conv1.in_channels == 1
    nested = build("tv:mobilenet_v2", 1, (32, 32))  # first conv inside a Conv2dNormActivation block
    assert nested[1].features[0][0].in_channels == 1
    assert nested.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 7)


def test_transformers_get_the_image_size():
    model = build("timm:vit_tiny_patch16_224", 3, (32, 32)).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_register_arch(monkeypatch):
    monkeypatch.setattr(models, "_ARCHS", dict(models._ARCHS))
    monkeypatch.setattr(models, "_MIN_SIZE", dict(models._MIN_SIZE))

    @models.register_arch("tiny_linear")
    def tiny(in_channels, num_classes, image_size):
        h, w = image_size
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * h * w, num_classes))

    assert "tiny_linear" in list_archs()
    assert build("tiny_linear", 1, (5, 5), classes=3)(torch.rand(2, 1, 5, 5)).shape == (2, 3)
    with pytest.raises(ValueError, match="twice"):
        models.register_arch("tiny_linear")(tiny)


def test_model_for_task():
    from bench.data import make_task

    task = make_task("synthetic", seed=0, victim_train=10, attacker_pool=10, test=10)
    model = model_for_task(task).eval()
    assert model(task.x_test).shape == (10, 10)
    assert torch.allclose(model[0].mean.flatten(), torch.tensor(task.info.mean))
    assert isinstance(model_for_task(task, "vgg_like")[1], models.VGGLike)

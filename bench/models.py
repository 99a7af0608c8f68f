"""Architectures: built-ins registered with :func:`register_arch`, plus ``timm:<name>`` and ``tv:<name>``.

Every model from :func:`create_model` is ``nn.Sequential(Normalize(mean, std), net)``, so it takes
pixel-space inputs in [0, 1]. Weights are initialised from torch's default generator only: seed it with
``torch.manual_seed`` before building a model for a reproducible initialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench.errors import ConfigError, UnknownNameError, suggest

if TYPE_CHECKING:  # pragma: no cover
    from bench.api import Task

__all__ = [
    "Normalize",
    "register_arch",
    "create_model",
    "list_archs",
    "model_for_task",
    "SmallCNN",
    "VGGLike",
    "BasicBlock",
    "CifarResNet",
]

Builder = Callable[[int, int, tuple[int, int]], nn.Module]

_ARCHS: dict[str, Builder] = {}
_MIN_SIZE: dict[str, int] = {}


def register_arch(name: str, *, min_size: int = 1) -> Callable[[Builder], Builder]:
    """Register ``builder(in_channels, num_classes, image_size) -> nn.Module`` under ``name``.

    ``min_size`` is the smallest image side the architecture accepts (checked by :func:`create_model`).
    """

    def deco(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is registered twice")
        if ":" in name:
            raise ValueError(f"architecture name {name!r} may not contain ':' (reserved for timm:/tv:)")
        _ARCHS[name] = builder
        _MIN_SIZE[name] = min_size
        return builder

    return deco


def list_archs() -> list[str]:
    """The built-in architecture names (``timm:<name>`` and ``tv:<name>`` are accepted as well)."""
    return list(_ARCHS)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers shaped 1 x C x 1 x 1."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(tuple(float(m) for m in mean), dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(tuple(float(s) for s in std), dtype=torch.float32).view(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel() or mean_t.numel() == 0:
            raise ConfigError(
                f"Normalize: mean {tuple(mean)} and std {tuple(std)} must be non-empty and of equal length"
            )
        if any(float(s) <= 0 for s in std):  # checked on the values, so a model can be built on the meta device
            raise ConfigError(f"Normalize: std {tuple(std)} must be positive")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"


# --------------------------------------------------------------------------------------------- built-ins
#
# The built-ins run in channels-last memory format (weights converted by their builders, inputs in
# ``forward``): on CPU, NCHW max pooling is several times slower than NHWC, and a small CNN's epoch over
# Fashion-MNIST drops by about a third. Max pooling comes before the ReLU it follows in the usual
# description; the two commute (ReLU is monotone), and pooling first makes the ReLU four times cheaper.


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (32, 64) with 2x2 max pooling, adaptive 4x4 average pooling, then
    1024 -> 256 -> classes with dropout 0.25. Works for any image side >= 8."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.25),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_channels_last(x)))


class VGGLike(nn.Module):
    """MEA-Defender's CIFAR-10 "VGG-like" net (Carlini & Wagner's CNN): four unpadded 3x3 convs
    (64, 64, pool, 128, 128, pool), then 3200 -> 256 -> 256 -> classes with dropout 0.5 at the input."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 3),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(128 * 5 * 5, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_channels_last(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers and an identity (or 1x1 conv-BN) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stride-1 stem without max pooling, four stages, global pooling."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(in_planes, width, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = width
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(_channels_last(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_arch("small_cnn", min_size=8)
def _small_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    return SmallCNN(in_channels, num_classes).to(memory_format=torch.channels_last)


@register_arch("vgg_like", min_size=16)
def _vgg_like(in_channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    return VGGLike(in_channels, num_classes).to(memory_format=torch.channels_last)


@register_arch("resnet18", min_size=8)
def _resnet18(in_channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    return CifarResNet(in_channels, num_classes, blocks=(2, 2, 2, 2)).to(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------ timm / torchvision


def _timm_model(name: str, in_channels: int, num_classes: int, size: tuple[int, int]) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise UnknownNameError(
            f"unknown timm model {name!r}; {suggest(name, timm.list_models())}"
            "(see timm.list_models() for the names)"
        )
    kwargs = dict(pretrained=False, num_classes=num_classes, in_chans=in_channels)
    try:  # transformers need the image size; convolutional nets refuse the argument
        return timm.create_model(name, img_size=size, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


def _torchvision_model(name: str, in_channels: int, num_classes: int, size: tuple[int, int]) -> nn.Module:
    from torchvision import models

    names = models.list_models(module=models)  # classifiers only: detection models would fetch backbone weights
    if name not in names:
        raise UnknownNameError(
            f"unknown torchvision model {name!r}; {suggest(name, names)}"
            "(see torchvision.models.list_models() for the names)"
        )
    extra = {"image_size": size[0]} if name.startswith("vit_") and size[0] == size[1] else {}
    net = models.get_model(name, weights=None, num_classes=num_classes, **extra)
    _adapt_first_conv(net, in_channels)
    return net


def _adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    """Replace the first ``nn.Conv2d`` by one with ``in_channels`` inputs (other hyper-parameters kept)."""
    for path, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=module.groups if in_channels % module.groups == 0 else 1,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            parent_path, _, attr = path.rpartition(".")
            parent = net.get_submodule(parent_path) if parent_path else net
            setattr(parent, attr, new)
            return
    raise ConfigError(f"cannot adapt {type(net).__name__} to {in_channels} input channels: it has no Conv2d")


# ------------------------------------------------------------------------------------------------ public


def _unknown_arch(arch: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown architecture {arch!r}; {suggest(arch, list_archs())}"
        f"built-ins: {', '.join(list_archs())}; or timm:<name> / tv:<name>"
    )


def create_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Module:
    """``nn.Sequential(Normalize(mean, std), net)`` for the named architecture; inputs are pixels in [0, 1].

    ``arch`` is a built-in (:func:`list_archs`), ``timm:<name>`` or ``tv:<name>`` (never pretrained).
    """
    if not isinstance(arch, str) or not arch:
        raise UnknownNameError(f"architecture must be a non-empty name, not {arch!r}")
    if in_channels < 1 or num_classes < 2:
        raise ConfigError(
            f"create_model: in_channels={in_channels} must be >= 1 and num_classes={num_classes} >= 2"
        )
    if len(tuple(mean)) not in (1, in_channels) or len(tuple(std)) not in (1, in_channels):
        raise ConfigError(
            f"create_model: mean {tuple(mean)} and std {tuple(std)} need 1 or {in_channels} values "
            "(one per channel)"
        )
    size = (int(image_size[0]), int(image_size[1]))
    prefix, sep, rest = arch.partition(":")
    if sep:
        if not rest:
            raise UnknownNameError(f"architecture {arch!r} lacks a model name after {prefix + ':'!r}")
        if prefix == "timm":
            net = _timm_model(rest, in_channels, num_classes, size)
        elif prefix == "tv":
            net = _torchvision_model(rest, in_channels, num_classes, size)
        else:
            raise _unknown_arch(arch)
    else:
        builder = _ARCHS.get(arch)
        if builder is None:
            raise _unknown_arch(arch)
        if min(size) < _MIN_SIZE[arch]:
            raise ConfigError(
                f"architecture {arch!r} needs images of at least {_MIN_SIZE[arch]}x{_MIN_SIZE[arch]} pixels, "
                f"not {size[0]}x{size[1]}; pick another architecture"
            )
        net = builder(in_channels, num_classes, size)
    model = nn.Sequential(Normalize(mean, std), net)
    # how to build it again: the cache stores this recipe and the weights, never a pickled module
    model.wmbench_recipe = {"arch": arch, "in_channels": int(in_channels), "num_classes": int(num_classes),
                            "image_size": list(size), "mean": [float(v) for v in mean],
                            "std": [float(v) for v in std]}
    return model


def model_for_task(task: Task, arch: str | None = None) -> nn.Module:
    """A fresh model of ``arch`` (default: the task's) for the task's image shape, classes and statistics."""
    info = task.info
    return create_model(
        arch or task.arch,
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
        mean=info.mean,
        std=info.std,
    )

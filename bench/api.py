"""The contracts between the parts: Task, Defense/Protected, Attack/Target/Outcome, Context.

A defense embeds a watermark and returns a :class:`Protected` victim; an attack receives a
:class:`Target` (never the secret) and returns an :class:`Outcome`; the scorer (``bench.score``) judges.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.codec import cache_codec
from bench.config import ComponentConfig, build_config
from bench.errors import WmbenchError

if TYPE_CHECKING:  # pragma: no cover
    from bench.oracle import Oracle
    from bench.profiles import Profile

__all__ = [
    "DatasetInfo",
    "Task",
    "Context",
    "Component",
    "Defense",
    "Protected",
    "Attack",
    "Target",
    "Outcome",
    "derive_seed",
]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclass
class Task:
    """A dataset, an architecture, a seed and three disjoint seeded splits, as tensors in memory.

    Images are float32 in [0, 1] (pixel space, N x C x H x W); models normalise internally, so watermarks
    and attacks all work in pixel space.
    """

    dataset: str
    arch: str
    seed: int
    info: DatasetInfo
    x_victim: torch.Tensor
    y_victim: torch.Tensor
    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any printable parts (no global RNG involved)."""
    import hashlib

    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class Context:
    """What a component may use besides its inputs: device, profile, seeded generators, verbosity, and
    :meth:`remember` for a value worth keeping across jobs."""

    device: torch.device
    seed: int
    profile: Profile
    verbose: bool = False
    store: Any = field(default=None, repr=False, compare=False)  # the run's artifact cache (bench.cache.Cache)
    generator: torch.Generator = field(init=False)
    rng: np.random.Generator = field(init=False)
    pyrng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.pyrng = random.Random(self.seed)

    def child(self, *tag: Any) -> Context:
        """An independent context for a sub-step, seeded from this one and the tag."""
        return Context(self.device, derive_seed(self.seed, *tag), self.profile, self.verbose, self.store)

    def remember(self, parts: dict[str, Any], build: Callable[[], Any]) -> Any:
        """``build()``, kept in the run's cache under ``parts`` (a JSON-able dict naming everything the value
        depends on) so that every later job and run sharing that cache loads it instead of building it again;
        outside a run (no cache) it is simply built. The value must be cacheable (tensors, numbers, containers)."""
        if self.store is None:
            return build()
        return self.store.remember(parts, build)

    def manual_seed(self) -> None:
        """Seed torch's default generator too (weight init uses it); call before building a model."""
        torch.manual_seed(self.seed)


class Component:
    """Base of defenses and attacks: a name (set by the registry), a version and a frozen Config."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def __init__(self, config: ComponentConfig | None = None, **values: Any) -> None:
        if config is None:
            config = build_config(type(self).Config, type(self).name or type(self).__name__, values)
        elif values:
            config = dataclasses.replace(config, **values)
        if not isinstance(config, type(self).Config):
            raise TypeError(f"{type(self).__name__} needs a {type(self).__name__}.Config")
        self.config = config

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@cache_codec("protected")
@dataclass
class Protected:
    """A watermarked victim and its secret. ``verify_x``/``verify_y`` are the verification samples and
    the labels a model that carries the watermark returns on them. ``serve`` (optional) wraps the
    oracle's answers for API-level schemes."""

    model: nn.Module
    verify_x: torch.Tensor | None = None
    verify_y: torch.Tensor | None = None
    threshold: float | None = None
    serve: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_watermark(self) -> bool:
        return self.verify_x is not None

    def verify(self, model: nn.Module, device: torch.device | str = "cpu", batch_size: int = 512) -> tuple[float, int]:
        """Watermark success rate of ``model`` on the verification set: (fraction, number of samples)."""
        from bench.train import predict_labels

        if self.verify_x is None or self.verify_y is None:
            return float("nan"), 0
        pred = predict_labels(model, self.verify_x, device=device, batch_size=batch_size)
        hits = int((pred == self.verify_y).sum())
        return hits / len(self.verify_y), len(self.verify_y)


class Defense(Component):
    """A watermark scheme. Subclasses implement :meth:`embed`."""

    threshold: ClassVar[float] = 0.3  # WSR at or above which ownership is claimed (MEA-Defender's rule)
    # where the watermark lives: "model" (the victim answers its verification set) or "api" (the served
    # answers carry it by construction and the model is untouched, e.g. DAWN); the tuning gate reads it
    embedding: ClassVar[str] = "model"
    # the tuning protocol's declared grid (bench.tuning.Grid) or None: docs/protocol.md
    tuning_grid: ClassVar[object] = None

    def embed(self, task: Task, ctx: Context) -> Protected:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Target:
    """What an attacker gets: a black-box oracle and/or a white-box copy, and its own data.

    Never the watermark secret. ``model`` is None for black-box (extraction) attacks.
    """

    oracle: Oracle | None
    model: nn.Module | None
    x_pool: torch.Tensor
    y_pool: torch.Tensor
    info: DatasetInfo
    arch: str
    dataset: str

    def ask_pool(self, idx: torch.Tensor) -> torch.Tensor:
        """The oracle's answers to the pool images ``x_pool[idx]``, counted as queries: the same answers as
        ``oracle(x_pool[idx])``, read from the oracle's table of answers to the pool when it has one (the
        runner's oracles: the victim then answers its pool once for every attack on it)."""
        if self.oracle is None:
            raise WmbenchError("this target has no oracle to query")
        if getattr(self.oracle, "has_pool", False):  # any callable oracle will do; ours keep a table
            return self.oracle.ask_pool(idx)
        return self.oracle(self.x_pool[idx])


@cache_codec("outcome")
@dataclass
class Outcome:
    """What an attack produced: a suspect model (extraction, removal) and/or a detection verdict."""

    model: nn.Module | None = None
    detected: bool | None = None
    detected_target: int | None = None
    detected_pair: tuple[int, int] | None = None
    score: float | None = None
    queries: int = 0
    epochs: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class Attack(Component):
    """An attack. ``kind`` is extraction (oracle only), removal or detection (white-box copy) or control.

    Subclasses implement :meth:`run`; the base class's :meth:`__call__` hands the attack a target it may
    modify freely (the runner gives it a copy) and leaves the model in eval mode afterwards.
    """

    kind: ClassVar[str] = "removal"
    KINDS: ClassVar[tuple[str, ...]] = ("extraction", "removal", "detection", "control")  # checked at registration

    def oracle_options(self) -> dict[str, Any]:
        """How the oracle answers this attack (mode, top_k, decimals, budget); see bench.oracle."""
        return {"mode": "probs"}

    def run(self, target: Target, ctx: Context) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, target: Target, ctx: Context) -> Outcome:
        out = self.run(target, ctx)
        if out.model is not None:
            out.model.eval()
        return out

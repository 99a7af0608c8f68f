"""Profiles: the sizes, epochs and budgets of a sweep. A profile is data, not code.

``smoke`` is for CI (minutes on 2 cores), ``quick`` is the default leaderboard (Fashion-MNIST at one seed
on 2 CPU cores), ``paper`` uses paper-like budgets (GPU advised).

A profile also declares the training precision (:data:`PRECISIONS`): ``fp32``, or ``bf16`` autocast (the
forward and backward passes in bfloat16, the weights, the optimiser and the loss in fp32). Every card records
it. Evaluation, verification, the oracle's answers and scoring always run in fp32, whatever the training
precision. ``wmbench run --precision bf16`` runs a profile at another precision (:func:`with_precision`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.errors import ConfigError, UnknownNameError

__all__ = ["Profile", "PROFILES", "PRECISIONS", "get_profile", "with_precision"]

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Profile:
    name: str
    victim_train: int  # images the owner trains on
    attacker_pool: int  # images the attacker holds / queries with (disjoint from victim_train)
    test: int  # test images used for accuracy and fidelity
    epochs: int  # victim (and null model) training epochs
    attack_epochs: int  # default training epochs of attacks that train a model
    batch_size: int
    lr: float  # peak Adam learning rate (cosine-annealed to 0) for victims and substitutes
    null_models: int  # independent clean models per seed for the null WSR
    verify_max: int  # cap on verification samples per scheme
    precision: str = "fp32"  # training precision, one of PRECISIONS

    def as_dict(self) -> dict:
        """The profile as the cache keys and cards see it. ``precision`` appears only when it is not fp32, so
        every key and run id made before precision was declared (all fp32) stays what it was."""
        out = dataclasses.asdict(self)
        if out["precision"] == "fp32":
            del out["precision"]
        return out


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("smoke", victim_train=3000, attacker_pool=3000, test=1000, epochs=3, attack_epochs=3,
                batch_size=128, lr=2e-3, null_models=1, verify_max=1000),
        Profile("quick", victim_train=30000, attacker_pool=30000, test=10000, epochs=6, attack_epochs=6,
                batch_size=128, lr=2e-3, null_models=2, verify_max=2000),
        Profile("paper", victim_train=30000, attacker_pool=30000, test=10000, epochs=50, attack_epochs=50,
                batch_size=128, lr=1e-3, null_models=3, verify_max=10000),
        # for unit tests on the synthetic data set
        Profile("test", victim_train=800, attacker_pool=400, test=400, epochs=4, attack_epochs=3,
                batch_size=64, lr=2e-3, null_models=1, verify_max=400),
    )
}


def get_profile(name: str, precision: str | None = None) -> Profile:
    """The registered profile ``name``, at ``precision`` when given (else the profile's own)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None
    return profile if precision is None else with_precision(profile, precision)


def with_precision(profile: Profile, precision: str) -> Profile:
    """``profile`` training at ``precision`` (fp32 or bf16); any other value is a one-line error."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {str(precision)[:20]!r} is invalid; use {' or '.join(PRECISIONS)}")
    return dataclasses.replace(profile, precision=precision)

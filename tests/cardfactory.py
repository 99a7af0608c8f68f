"""Valid result cards for tests: ``make_card(**overrides)`` passes ``bench.results.validate_card``.

Defaults describe an ``ok`` cell of the ``content`` watermark under the ``identity`` control attack on the
synthetic data set. Give ``defense="none"`` and the watermark fields become null, as the scorer writes them;
give ``status="error"`` or ``"n/a"`` and the measurements become null (an error card gets a message).
Any field can still be overridden explicitly.
"""

from __future__ import annotations

import copy

from bench.results import SCHEMA_VERSION, validate_card

__all__ = ["make_card", "MEASUREMENTS", "WATERMARK_FIELDS"]

WATERMARK_FIELDS = (
    "wsr_victim",
    "wsr_suspect",
    "wsr_null",
    "n_verify",
    "threshold",
    "p_value",
    "retained",
    "removed_cheaply",
)
MEASUREMENTS = (
    "clean_acc_victim",
    "clean_acc_suspect",
    "fidelity",
    "detected",
    "detected_target",
    "queries",
    "epochs",
    "wall_s",
    "peak_mem_mb",
) + WATERMARK_FIELDS

_BASE = {
    "schema_version": SCHEMA_VERSION,
    "run_id": "0123456789abcdef",
    "dataset": "synthetic",
    "arch": "small_cnn",
    "defense": "content",
    "defense_version": "1",
    "defense_config": {},
    "has_watermark": True,
    "attack": "identity",
    "attack_version": "1",
    "attack_kind": "control",
    "attack_config": {},
    "seed": 0,
    "profile": "smoke",
    "profile_config": {},
    "split": {"victim_train": 1000, "attacker_pool": 500, "test": 500},
    "status": "ok",
    "error": None,
    "clean_acc_victim": 0.9,
    "clean_acc_suspect": 0.9,
    "fidelity": 1.0,
    "wsr_victim": 0.95,
    "wsr_suspect": 0.95,
    "wsr_null": 0.05,
    "n_verify": 100,
    "threshold": 0.3,
    "p_value": 1e-40,
    "retained": True,
    "removed_cheaply": False,
    "detected": None,
    "detected_target": None,
    "queries": 0,
    "epochs": 0,
    "wall_s": 1.0,
    "peak_mem_mb": 100.0,
    "extras": {},
    "versions": {"wmbench": "0.1.0"},
    "git_sha": "0000000",
    "device": "cpu",
    "created_utc": "2024-01-01T00:00:00Z",
}


def make_card(**overrides) -> dict:
    """A fresh valid card; ``overrides`` replace fields (unknown names raise through validation)."""
    card = copy.deepcopy(_BASE)
    if overrides.get("defense") == "none" and "has_watermark" not in overrides:
        card["has_watermark"] = False
    if not overrides.get("has_watermark", card["has_watermark"]):
        for k in WATERMARK_FIELDS:
            card[k] = None
    status = overrides.get("status", "ok")
    if status != "ok":
        for k in MEASUREMENTS:
            card[k] = None
        if status == "error":
            card["error"] = "RuntimeError: boom"
    elif card["has_watermark"] and overrides.get("attack_kind", card["attack_kind"]) != "detection":
        card["extras"] = {"suspect_label_rate": 0.02}  # as the scorer records it beside every WSR verdict
    card.update(copy.deepcopy(overrides))
    return validate_card(card, "make_card")

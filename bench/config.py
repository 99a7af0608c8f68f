"""Component configurations: frozen keyword-only dataclasses whose fields validate themselves.

Every field is declared with :func:`param`, which records a one-line help text and the allowed values.
A bad value raises :class:`~bench.errors.ConfigError` (a ``ValueError``) naming the field and the range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bench.errors import ConfigError, suggest

__all__ = ["ComponentConfig", "param", "config_to_dict", "build_config", "parse_value"]


def param(
    default: Any,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    none_ok: bool = False,
    also: tuple = (),
    added: bool = False,
) -> Any:
    """A defaulted config field with its help line and constraints (``None`` allowed when ``none_ok``).

    ``also`` lists words accepted besides the range (``kl_weight=auto``). ``added`` marks a field added to a
    released component whose ``None`` keeps the released behaviour: while it is ``None`` it is left out of
    :func:`config_to_dict`, so the configs, run ids and cache keys of the runs made before it existed stay
    valid."""
    meta = dict(help=help, ge=ge, gt=gt, le=le, lt=lt, choices=choices, none_ok=none_ok or default is None,
                also=also, added=added)
    return dataclasses.field(default=default, metadata=meta)


def _allowed(meta: dict) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]}")
    text = " and ".join(parts) if parts else "a value of the default's type"
    return text + "".join(f" or {w!r}" for w in meta.get("also", ()))


def _check_field(owner: str, f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    where = f"{owner}: {f.name}={value!r} is invalid"
    if value is None:
        if meta.get("none_ok"):
            return
        raise ConfigError(f"{where}; it must be {_allowed(meta)}")
    if isinstance(value, str) and value in meta.get("also", ()):
        return
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise ConfigError(f"{where}; allowed: {_allowed(meta)}")
        return
    default = f.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}; it must be true or false")
        return
    if isinstance(default, (int, float)) or any(meta.get(k) is not None for k in ("ge", "gt", "le", "lt")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}; it must be a number ({_allowed(meta)})")
        wants_int = (isinstance(default, int) and not isinstance(default, bool)) or str(f.type).replace(
            " ", "") in ("int", "int|None", "Optional[int]")
        if wants_int and not isinstance(value, int):
            raise ConfigError(f"{where}; it must be an integer ({_allowed(meta)})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}; it must be finite ({_allowed(meta)})")
        bad = (
            (meta.get("ge") is not None and value < meta["ge"])
            or (meta.get("gt") is not None and value <= meta["gt"])
            or (meta.get("le") is not None and value > meta["le"])
            or (meta.get("lt") is not None and value >= meta["lt"])
        )
        if bad:
            raise ConfigError(f"{where}; it must be {_allowed(meta)}")
        return
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}; it must be a string")
    if isinstance(default, tuple) and not isinstance(value, tuple):
        raise ConfigError(f"{where}; it must be a tuple")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ComponentConfig:
    """Base of every component's ``Config``: subclasses declare fields with :func:`param`."""

    def __post_init__(self) -> None:
        owner = getattr(type(self), "_owner", type(self).__qualname__)
        for f in dataclasses.fields(self):
            _check_field(owner, f, getattr(self, f.name))
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ConfigError. Single-field ranges belong in :func:`param`."""


def config_to_dict(cfg: ComponentConfig) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None and f.metadata.get("added"):
            continue  # a field added later, at its released behaviour: identity unchanged (see ``param``)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def parse_value(text: str) -> Any:
    """Parse a CLI value: ints, floats, booleans, ``none``, comma-free strings."""
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def build_config(config_cls: type[ComponentConfig], owner: str, values: dict[str, Any]) -> ComponentConfig:
    """Build a config from user values; ``None`` values mean "keep the default" (timm's habit)."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    clean = {}
    for key, value in values.items():
        if key not in names:
            allowed = ", ".join(names) if names else "none"
            raise ConfigError(f"{owner} has no parameter {key!r}; {suggest(key, names)}(parameters: {allowed})")
        if value is not None:
            f = next(f for f in dataclasses.fields(config_cls) if f.name == key)
            if isinstance(f.default, tuple) and isinstance(value, list):
                value = tuple(value)
            if isinstance(f.default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            clean[key] = value
    try:
        return config_cls(**clean)
    except TypeError as exc:  # pragma: no cover - dataclass signature errors are caught above
        raise ConfigError(f"{owner}: {exc}") from None

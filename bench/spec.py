"""Component specs on the command line: names, wildcards and inline configs with sweeps.

``soft_label`` is the default config; ``soft_label[temperature=7]`` sets a field;
``soft_label[queries=1000,5000,all;temperature=1,7]`` sweeps the cartesian product (one column per
combination). ``all``/``none`` set a field to None (its "use everything / the profile's" default).
Several specs are separated by top-level commas: ``'none,content'`` or ``'mea_*,content[rate=0.05]'``.
Attacks chain with ``>``: ``soft_label>fine_tune[mode=ftal]`` runs the second step on the first step's
suspect model, as one column (the paper's "synthesized attacks").
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from bench.config import build_config, config_to_dict, parse_value
from bench.errors import ConfigError, shorten

__all__ = ["Spec", "Chain", "split_top_level", "parse_spec", "expand_specs", "expand_chains", "base_name",
           "is_configured"]


@dataclass(frozen=True)
class Spec:
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # only the fields the user set

    @property
    def label(self) -> str:
        """The column/row name: the bare name, or name[k=v;...] with the set fields in order."""
        if not self.config:
            return self.name
        inner = ";".join(f"{k}={_fmt(v)}" for k, v in sorted(self.config.items()))
        return f"{self.name}[{inner}]"


def _fmt(v: Any) -> str:
    if v is None:
        return "all"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


@dataclass(frozen=True)
class Chain:
    """An attack column: one step, or several steps each attacking the previous step's suspect."""

    steps: tuple[Spec, ...]

    @property
    def label(self) -> str:
        return ">".join(s.label for s in self.steps)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` where it is not inside [...]."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced ']' in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ConfigError(f"unbalanced '[' in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def base_name(label: str) -> str:
    """The registered name in a one-step spec label: ``content[rate=0.1]`` -> ``content``."""
    return label.split("[", 1)[0].strip()


def is_configured(label: str) -> bool:
    """Whether a spec label (one step or a chain) sets a config value away from the registered default:
    ``content[rate=0.1]``, ``soft_label[arch=vgg_like]>prune``; ``soft_label>prune`` is not."""
    return "[" in label


def parse_spec(text: str) -> tuple[str, list[dict[str, Any]]]:
    """``name[k=v1,v2;k2=v]`` -> (name pattern, list of config dicts: the cartesian product)."""
    text = text.strip()
    if "[" not in text:
        return text, [{}]
    if not text.endswith("]"):
        raise ConfigError(f"spec {text!r} must end with ']' (form: name[key=value;key=v1,v2])")
    name, inner = text[:-1].split("[", 1)
    keys, choices = [], []
    for item in filter(None, (s.strip() for s in inner.split(";"))):
        if "=" not in item:
            raise ConfigError(f"spec {text!r}: {item!r} is not key=value")
        key, vals = item.split("=", 1)
        values = [parse_value(v) for v in vals.split(",") if v.strip()]
        values = [None if isinstance(v, str) and v.lower() == "all" else v for v in values]
        if not values:
            raise ConfigError(f"spec {text!r}: {key.strip()!r} has no value")
        keys.append(key.strip())
        choices.append(values)
    return name.strip(), [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def _non_default(built, cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cfg`` that change the config: ``prune[rate=0.5]`` (the default rate) is ``prune``, one
    column and one card, not two; a None value means "keep the default" (``queries=all``)."""
    defaults = type(built)()
    out = {}
    for k, v in cfg.items():
        if v is None:
            continue
        d, got = getattr(defaults, k), getattr(built, k)
        if got == d and type(got) is type(d):
            continue
        out[k] = v
    return out



def _parts(text: str, registry) -> list[str]:
    """The top-level specs of ``text``; a list that names nothing is an error, not a wildcard."""
    parts = split_top_level(text)
    if not parts:
        kind = getattr(registry, "kind", "component")
        raise ConfigError(f"the {kind} list {shorten(text)!r} names nothing; give names, or '*' for every {kind}")
    return parts


def _split_keep_empty(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside [...], keeping empty pieces (``prune>`` has an empty second step)."""
    pieces, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    pieces.append("".join(cur))
    return pieces


def expand_specs(text: str, registry) -> list[Spec]:
    """Expand a comma-separated list of specs against a registry; validates every config."""
    out: list[Spec] = []
    for part in _parts(text, registry):
        pattern, configs = parse_spec(part)
        for name in registry.expand(pattern):
            cls = registry.get(name)
            for cfg in configs:
                built = build_config(cls.Config, name, cfg)  # validate now: bad values fail before any work
                spec = Spec(name, _non_default(built, cfg))
                if spec not in out:
                    out.append(spec)
    return out


def expand_chains(text: str, registry) -> list[Chain]:
    """Attack specs with ``>`` chains; wildcards and sweeps expand within each step (cartesian product).

    Only the last step of a chain may be a detection attack (detection produces no model to attack).
    """
    out: list[Chain] = []
    for part in _parts(text, registry):
        steps = [s.strip() for s in _split_keep_empty(part, ">")]
        if not all(steps):
            raise ConfigError(f"attack chain {shorten(part)!r} has an empty step; write steps as a>b, e.g. "
                              "soft_label>fine_tune")
        options = [expand_specs(step, registry) for step in steps]
        for combo in itertools.product(*options):
            for spec in combo[:-1]:
                if registry.get(spec.name).kind == "detection":
                    raise ConfigError(f"chain {'>'.join(s.label for s in combo)!r}: {spec.name} is a detection "
                                      "attack and produces no model; put it last")
            chain = Chain(tuple(combo))
            if chain not in out:
                out.append(chain)
    return out


def resolve(spec: Spec, registry):
    """The component instance for a spec, and its full resolved config dict."""
    comp = registry.create(spec.name, **spec.config)
    return comp, config_to_dict(comp.config)

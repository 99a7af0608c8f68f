"""Cache entries without pickle: tensors in safetensors, everything else in JSON, types from an allow-list.

A cache folder may be shared between machines and users, so loading an entry must never run code that the
entry chose. :func:`encode` turns an artifact (a :class:`~bench.api.Protected`, an
:class:`~bench.api.Outcome`, models, tensors, numbers, strings and containers of them) into a JSON-able
tree whose tensors are replaced by names, plus the dict of those tensors; :func:`decode` rebuilds it.
Decoding only ever constructs:

* JSON's own types, tuples, tensors read by ``safetensors`` (plain data, no code);
* models rebuilt by :func:`bench.models.create_model` from their recorded *recipe* (architecture name,
  shape, normalisation), then filled with ``load_state_dict(strict=True)``;
* classes registered here with :func:`cache_codec` (a name -> (to_state, from_state) pair), such as
  ``Protected``, ``Outcome``, DAWN's API wrapper and STRIP's filter.

A tag not registered yet makes the process import the built-in defenses and attacks and the installed plugins
(the components ``wmbench list`` shows; their modules register their codecs): a worker that loads a DAWN victim
before it has created any defense still decodes it. A tag still unknown is refused (``CodecError``); nothing an
entry names is ever imported. Objects of any other type cannot be encoded: the
artifact is then used but not cached, and :class:`~bench.cache.Cache` says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import WmbenchError

__all__ = ["CodecError", "cache_codec", "encode", "decode", "to_bytes", "from_bytes", "read_meta", "MAGIC"]

MAGIC = b"WMBENCH-CACHE\x002\n"  # format 2: JSON header + safetensors body (format 1 was torch.save)


class CodecError(WmbenchError):
    """An artifact that cannot be stored, or an entry that does not decode to what it claims."""


_CODECS: dict[str, tuple[type, Callable[[Any], dict], Callable[[dict], Any]]] = {}


def cache_codec(tag: str, to_state: Callable[[Any], dict] | None = None,
                from_state: Callable[[dict], Any] | None = None):
    """Class decorator: objects of this class may be cached as ``tag``. Without functions, the state is the
    dataclass's fields (or the instance ``__dict__``) and the class is rebuilt with them as keywords."""

    def register(cls):
        if tag in _CODECS and _CODECS[tag][0] is not cls:
            raise CodecError(f"cache codec {tag!r} is registered twice ({_CODECS[tag][0].__qualname__} and "
                             f"{cls.__qualname__})")
        if dataclasses.is_dataclass(cls):
            default_to = lambda obj: {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # noqa: E731
        else:
            default_to = lambda obj: dict(vars(obj))  # noqa: E731
        _CODECS[tag] = (cls, to_state or default_to, from_state or (lambda state: cls(**state)))
        return cls

    return register


def _load_components() -> None:
    """Import the built-in components and the installed plugins (never a module a cache entry names): the
    modules of those that cache their own objects register the codecs here on import."""
    from bench.registry import ATTACKS, DEFENSES

    try:
        DEFENSES.list()
        ATTACKS.list()
    except WmbenchError as exc:  # a broken plugin: the entry cannot be read here, which the cache reports
        raise CodecError(f"the components could not be loaded to read this entry: {exc}") from None


def _tag_of(obj: Any) -> str | None:
    for tag, (cls, _, _) in _CODECS.items():
        if type(obj) is cls:
            return tag
    return None


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def tensor(self, t: torch.Tensor) -> dict:
        name = f"t{len(self.tensors)}"
        self.tensors[name] = t.detach().cpu().contiguous().clone()
        return {"__tensor__": name}

    def __call__(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj)
        if type(obj).__module__ == "numpy":
            import numpy as np

            if isinstance(obj, np.ndarray):
                return {"__ndarray__": self.tensor(torch.from_numpy(np.ascontiguousarray(obj)))["__tensor__"]}
            return self(obj.item())  # a numpy scalar
        if isinstance(obj, bytes):
            return {"__bytes__": obj.hex()}
        if isinstance(obj, (list, tuple)):
            items = [self(v) for v in obj]
            return items if isinstance(obj, list) else {"__tuple__": items}
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj):
                return {"__dict__": {k: self(v) for k, v in obj.items()}}
            return {"__items__": [[self(k), self(v)] for k, v in obj.items()]}
        tag = _tag_of(obj)
        if tag is not None:
            return {"__obj__": tag, "state": self(_CODECS[tag][1](obj))}
        if isinstance(obj, nn.Module):
            recipe = getattr(obj, "wmbench_recipe", None)
            if recipe is None:
                raise CodecError(f"a {type(obj).__qualname__} model without a recipe (not made by "
                                 "bench.models.create_model) cannot be cached")
            state = {k: self.tensor(v)["__tensor__"] for k, v in obj.state_dict().items()}
            return {"__model__": self(recipe), "state": state, "training": obj.training}
        raise CodecError(f"a {type(obj).__qualname__} cannot be cached (register it with bench.codec.cache_codec)")


def encode(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON-able tree, tensors by name) for ``obj``; raises CodecError for a type it cannot store."""
    enc = _Encoder()
    return enc(obj), enc.tensors


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The object :func:`encode` was given, rebuilt from the allow-list only."""

    def tensor(name: Any) -> torch.Tensor:
        if not isinstance(name, str) or name not in tensors:
            raise CodecError(f"the entry names a tensor {str(name)[:40]!r} it does not hold")
        return tensors[name]

    def walk(node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict) or len(node) not in (1, 2, 3):
            raise CodecError("malformed cache entry")
        if "__tensor__" in node:
            return tensor(node["__tensor__"])
        if "__ndarray__" in node:
            return tensor(node["__ndarray__"]).numpy()
        if "__float__" in node:
            if node["__float__"] not in ("nan", "inf", "-inf"):
                raise CodecError("malformed float in cache entry")
            return float(node["__float__"])
        if "__bytes__" in node:
            return bytes.fromhex(node["__bytes__"])
        if "__tuple__" in node:
            return tuple(walk(v) for v in node["__tuple__"])
        if "__dict__" in node:
            return {str(k): walk(v) for k, v in node["__dict__"].items()}
        if "__items__" in node:
            return {walk(k): walk(v) for k, v in node["__items__"]}
        if "__obj__" in node:
            tag = node["__obj__"]
            if not isinstance(tag, str):
                raise CodecError("malformed cache entry")
            if tag not in _CODECS:
                _load_components()
            if tag not in _CODECS:
                raise CodecError(f"the entry holds an object of unknown kind {str(tag)[:40]!r}; refused")
            return _CODECS[tag][2](walk(node["state"]))
        if "__model__" in node:
            return _model(walk(node["__model__"]), node.get("state"), bool(node.get("training", False)))
        raise CodecError("malformed cache entry")

    def _model(recipe: Any, state: Any, training: bool) -> nn.Module:
        """A model from its recipe, checked before anything is allocated: the recipe's types and sizes, then the
        architecture built on the meta device must have exactly the stored tensors' names and shapes."""
        from bench.models import create_model

        _check_recipe(recipe)
        if not isinstance(state, dict) or not all(isinstance(v, str) for v in state.values()):
            raise CodecError("malformed model weights in cache entry")
        weights = {k: tensor(v) for k, v in state.items()}
        try:  # on the meta device nothing is allocated (an architecture that cannot be built there skips this)
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                shapes = {k: tuple(v.shape) for k, v in create_model(**recipe).state_dict().items()}
        except Exception:  # noqa: BLE001 - the bounded recipe is built for real below
            shapes = None
        if shapes is not None and shapes != {k: tuple(v.shape) for k, v in weights.items()}:
            raise CodecError("the entry's weights do not fit its model recipe")
        with torch.random.fork_rng(devices=[]):  # the throwaway initialisation must not move the RNG
            model = create_model(**recipe)
        model.load_state_dict(weights, strict=True)
        return model.train(training)

    return walk(tree)


_RECIPE = {"arch": str, "in_channels": int, "num_classes": int, "image_size": list, "mean": list, "std": list}


def _check_recipe(recipe: Any) -> None:
    """A model recipe of the right keys, types and sizes (so a crafted entry cannot ask for a huge model)."""
    if not isinstance(recipe, dict) or set(recipe) != set(_RECIPE):
        raise CodecError("malformed model recipe in cache entry")
    for key, kind in _RECIPE.items():
        if not isinstance(recipe[key], kind) or isinstance(recipe[key], bool):
            raise CodecError(f"malformed model recipe in cache entry ({key})")
    size, c = recipe["image_size"], recipe["in_channels"]
    ok = (len(recipe["arch"]) <= 200 and 1 <= c <= 64 and 2 <= recipe["num_classes"] <= 100_000
          and len(size) == 2 and all(isinstance(v, int) and 1 <= v <= 4096 for v in size)
          and all(len(recipe[k]) in (1, c) and all(isinstance(v, (int, float)) for v in recipe[k])
                  for k in ("mean", "std")))
    if not ok:
        raise CodecError("model recipe out of range in cache entry")


def to_bytes(header: dict, obj: Any) -> bytes:
    """One entry: MAGIC, the JSON header (``header`` plus the encoded tree) and its length, safetensors."""
    from safetensors.torch import save

    tree, tensors = encode(obj)
    head = json.dumps({**header, "tree": tree}, sort_keys=True, allow_nan=False).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + save(tensors)


def read_meta(path: str | Path) -> dict | None:
    """The ``meta`` of the entry at ``path`` from its header alone (no body read, no digest checked: for
    reports such as ``wmbench run --dry-run``'s time estimate, never for loading); None when it is absent or
    not an entry of this format."""
    try:
        with open(path, "rb") as f:
            lead = f.read(len(MAGIC) + 8)
            if not lead.startswith(MAGIC) or len(lead) < len(MAGIC) + 8:
                return None
            n = int.from_bytes(lead[len(MAGIC):], "little")
            if n > 64 * 2**20:  # a header is JSON of a few kilobytes; anything this size is not one
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    meta = header.get("meta") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def from_bytes(data: bytes, key: str | None = None) -> tuple[dict, Any]:
    """(header, object) of an entry written by :func:`to_bytes`; CodecError if it is not one, or (with
    ``key``) if it names another key. Nothing is decoded before the key is checked."""
    from safetensors.torch import load

    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise CodecError("not a wmbench cache entry of this format")
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    start = len(MAGIC) + 8
    if n > len(data) - start:
        raise CodecError("truncated cache entry")
    try:
        header = json.loads(data[start:start + n])
        tensors = load(data[start + n:])
    except Exception as exc:  # safetensors raises its own errors for a damaged body
        raise CodecError(f"damaged cache entry ({type(exc).__name__})") from None
    if not isinstance(header, dict) or "tree" not in header or not isinstance(header.get("meta", {}), dict):
        raise CodecError("malformed cache entry")
    if key is not None and header.get("key") != key:
        raise CodecError("holds another key's artifact")
    try:
        return header, decode(header.pop("tree"), tensors)
    except CodecError:
        raise
    except Exception as exc:  # anything else a crafted or foreign entry provokes is a refusal, not a crash
        raise CodecError(f"cannot rebuild the entry ({type(exc).__name__})") from None

"""Content-addressed artifact store for the model DAG (victims, null models, stolen models).

An artifact's key is a hash of everything that made it: component name, version, resolved config, the
keys of its parents, the seed, the split and the profile sizes. Files are written atomically with a
SHA-256 digest beside them; a corrupt or truncated entry is detected on load, deleted and rebuilt.

Loading an entry runs no code the entry chose: it holds JSON and safetensors only (``bench.codec``), and it
names its own key, so an entry copied over another key's is refused. Entries of the older pickle format
(``<key>.pt``) are never loaded; their artifacts are rebuilt in the new format.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.atomic import KeyLock, atomic_write, sweep_temporaries
from bench.codec import CodecError, from_bytes, to_bytes
from bench.cost import measure
from bench.errors import WmbenchError

__all__ = ["Cache", "artifact_key", "remembered_key", "CacheStats", "entry_exists", "entry_meta"]


def artifact_key(**parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def remembered_key(parts: dict[str, Any]) -> str:
    """The key :meth:`Cache.remember` keeps the value of ``parts`` under."""
    return artifact_key(kind="remembered", **parts)


@dataclass
class CacheStats:
    hits: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    rebuilt: list[tuple[str, str]] = field(default_factory=list)  # (key, why it could not be used)

    @property
    def rebuilt_corrupt(self) -> list[str]:
        return [k for k, _ in self.rebuilt]

    def drain_rebuilt(self) -> list[tuple[str, str]]:
        """The rebuilt entries recorded since the last call (a worker hands them to the parent per job)."""
        out, self.rebuilt = self.rebuilt, []
        return out


def _entry_files(root: str | Path, key: str) -> tuple[Path, Path]:
    """Where the cache at ``root`` keeps ``key``: its entry and the entry's digest."""
    folder = Path(root) / key[:2]
    return folder / f"{key}.wm", folder / f"{key}.wm.sha256"


def entry_exists(root: str | Path, key: str) -> bool:
    """Whether the cache at ``root`` holds a complete entry for ``key`` (its file and its digest); creates,
    sweeps and reads nothing (``wmbench run --dry-run`` looks at a cache it may not write)."""
    return all(p.exists() for p in _entry_files(root, key))


def entry_meta(root: str | Path, key: str) -> dict | None:
    """The recorded meta (``wall_s``, ...) of ``key``'s entry in the cache at ``root``, read from its header
    alone, or None (:func:`bench.codec.read_meta`); reads nothing else and writes nothing."""
    from bench.codec import read_meta

    return read_meta(_entry_files(root, key)[0])


class Cache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WmbenchError(f"cannot create cache directory {str(self.root)!r}: {exc.strerror}; "
                               "pass a writable --cache-dir") from None
        if not os.access(self.root, os.W_OK):
            raise WmbenchError(f"cache directory {str(self.root)!r} is not writable; pass a writable --cache-dir")
        self.stats = CacheStats()
        self._sweep_stale_temporaries()

    def _sweep_stale_temporaries(self, age_s: float = 3600.0) -> None:
        """Remove half-written files and locks left by killed runs (their writer gone, or old)."""
        sweep_temporaries(self.root, age_s)

    def path(self, key: str) -> Path:
        return _entry_files(self.root, key)[0]

    def _digest_path(self, key: str) -> Path:
        return _entry_files(self.root, key)[1]

    def has(self, key: str) -> bool:
        return entry_exists(self.root, key)

    def load(self, key: str) -> tuple[Any, dict] | None:
        """The stored (object, meta), or None when absent or unusable (an unusable entry is removed and the
        reason recorded in ``stats.rebuilt``)."""
        p, digest_file = self.path(key), self._digest_path(key)
        if not p.exists() or not digest_file.exists():
            if (self.root / key[:2] / f"{key}.pt").exists():
                self._rebuilt(key, "written by an older wmbench (pickle format, never loaded)")
            return None
        try:
            data = p.read_bytes()
            digest = digest_file.read_text().strip()
        except OSError as exc:  # not ours to read (permissions): a miss, and the entry stays
            self._rebuilt(key, f"unreadable ({exc.strerror or type(exc).__name__})")
            return None
        try:
            if hashlib.sha256(data).hexdigest() != digest:
                raise CodecError("digest mismatch (damaged or truncated)")
            header, obj = from_bytes(data, key)
            return obj, header.get("meta", {})
        except CodecError as exc:
            if str(exc).startswith(("digest mismatch", "not a wmbench", "truncated", "damaged", "holds another")):
                p.unlink(missing_ok=True)  # broken or misplaced bytes: removed; the rebuild writes it anew
                digest_file.unlink(missing_ok=True)
            self._rebuilt(key, str(exc))  # otherwise (another library version?) left for its writer
            return None

    def _rebuilt(self, key: str, reason: str) -> None:
        if (key, reason) not in self.stats.rebuilt:
            self.stats.rebuilt.append((key, reason))

    def save(self, key: str, obj: Any, meta: dict) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = to_bytes({"format": 2, "key": key, "meta": json.loads(json.dumps(meta, default=str))}, obj)
        atomic_write(p, data)
        atomic_write(self._digest_path(key), hashlib.sha256(data).hexdigest().encode())

    def remember(self, parts: dict[str, Any], build: Callable[[], Any]) -> Any:
        """A component's value (:meth:`bench.api.Context.remember`): built once per ``parts``, then loaded."""
        return self.get_or_build(remembered_key(parts), build, meta={"remembered": parts})[0]

    def get_or_build(self, key: str, build: Callable[[], Any], meta: dict | None = None) -> tuple[Any, dict]:
        """Load the artifact, or build it (timed, memory-measured), store it and return it. While one process
        builds a key, another that asks for it waits for that artifact instead of building it again."""
        obj, full_meta, _ = self.build_or_load(key, build, meta)
        return obj, full_meta

    def build_or_load(self, key: str, build: Callable[[], Any], meta: dict | None = None) -> tuple[Any, dict, bool]:
        """:meth:`get_or_build` that also says whether this call built the artifact."""
        found = self.load(key)
        if found is not None:
            self.stats.hits.append(key)
            return (*found, False)
        (self.root / key[:2]).mkdir(parents=True, exist_ok=True)
        with KeyLock(self.root / key[:2] / f"{key}.lock"):
            found = self.load(key)  # built by the holder we waited for
            if found is not None:
                self.stats.hits.append(key)
                return (*found, False)
            with measure() as cost:
                obj = build()
            full_meta = dict(meta or {})
            full_meta.update(wall_s=cost.wall_s, cpu_s=cost.cpu_s, peak_mem_mb=cost.peak_mem_mb, created=time.time(),
                             torch_threads=torch.get_num_threads())
            self.save(key, obj, full_meta)
        self.stats.builds.append(key)
        return obj, full_meta, True


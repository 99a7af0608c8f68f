"""Content-addressed artifact store for the model DAG (victims, null models, stolen models).

An artifact's key is a hash of everything that made it: component name, version, resolved config, the
keys of its parents, the seed, the split and the profile sizes. Files are written atomically with a
SHA-256 digest beside them; a corrupt or truncated entry is detected on load, deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write
from bench.cost import measure
from bench.errors import WmbenchError

__all__ = ["Cache", "artifact_key", "CacheStats"]


def artifact_key(**parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CacheStats:
    hits: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    rebuilt_corrupt: list[str] = field(default_factory=list)


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
        """Remove half-written files left by killed runs (old enough not to belong to a live writer)."""
        now = time.time()
        for tmp in self.root.glob("*/.tmp-*"):
            try:
                if now - tmp.stat().st_mtime > age_s:
                    tmp.unlink()
            except OSError:
                pass

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def has(self, key: str) -> bool:
        return self.path(key).exists() and self.path(key).with_suffix(".sha256").exists()

    def load(self, key: str) -> tuple[Any, dict] | None:
        """The stored (object, meta), or None when absent or corrupt (a corrupt entry is removed)."""
        p = self.path(key)
        digest_file = p.with_suffix(".sha256")
        if not p.exists() or not digest_file.exists():
            return None
        try:
            data = p.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest_file.read_text().strip():
                raise ValueError("digest mismatch")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
            return payload["obj"], payload["meta"]
        except Exception:
            p.unlink(missing_ok=True)
            digest_file.unlink(missing_ok=True)
            self.stats.rebuilt_corrupt.append(key)
            return None

    def save(self, key: str, obj: Any, meta: dict) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"obj": obj, "meta": meta}, buf)
        data = buf.getvalue()
        atomic_write(p, data)
        atomic_write(p.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())

    def get_or_build(self, key: str, build: Callable[[], Any], meta: dict | None = None) -> tuple[Any, dict]:
        """Load the artifact, or build it (timed, memory-measured), store it and return it."""
        found = self.load(key)
        if found is not None:
            self.stats.hits.append(key)
            return found
        with measure() as cost:
            obj = build()
        full_meta = dict(meta or {})
        full_meta.update(wall_s=cost.wall_s, peak_mem_mb=cost.peak_mem_mb, created=time.time())
        self.save(key, obj, full_meta)
        self.stats.builds.append(key)
        return obj, full_meta


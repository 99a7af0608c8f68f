"""The model cache: round trip, corruption, an unwritable folder (sharing safety: test_cache_safety.py)."""


import pytest
import torch

from bench.cache import Cache, artifact_key


def test_cache_roundtrip_and_corruption(tmp_path):
    cache = Cache(tmp_path)
    key = artifact_key(a=1, b=[1, 2])
    assert key == artifact_key(b=[1, 2], a=1)
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(3)}

    obj, meta = cache.get_or_build(key, build)
    assert meta["wall_s"] >= 0 and meta["peak_mem_mb"] > 0
    obj2, _ = cache.get_or_build(key, build)
    assert len(calls) == 1 and torch.equal(obj2["w"], obj["w"])
    # corrupt the entry: detected, removed and rebuilt
    p = cache.path(key)
    p.write_bytes(p.read_bytes()[:-7] + b"garbage")
    obj3, _ = cache.get_or_build(key, build)
    assert len(calls) == 2 and torch.equal(obj3["w"], obj["w"])
    assert cache.stats.rebuilt_corrupt == [key]


def test_cache_unwritable_dir_is_clear(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Exception, match="pass a writable --cache-dir"):
        Cache(f / "sub")

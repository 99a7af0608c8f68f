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


def test_an_entrys_recorded_meta_reads_from_its_header_alone(tmp_path):
    from bench.cache import entry_meta

    cache = Cache(tmp_path)
    key = artifact_key(a=2)
    assert entry_meta(tmp_path, key) is None  # absent
    _, meta = cache.get_or_build(key, lambda: {"w": torch.zeros(4)}, meta={"what": "test"})
    assert entry_meta(tmp_path, key) == {**meta}
    p = cache.path(key)
    p.write_bytes(b"not an entry at all")
    assert entry_meta(tmp_path, key) is None
    p.write_bytes(p.read_bytes()[:0] + b"WMBENCH-CACHE\x002\n" + (2**40).to_bytes(8, "little"))  # absurd length
    assert entry_meta(tmp_path, key) is None


def test_cache_unwritable_dir_is_clear(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Exception, match="pass a writable --cache-dir"):
        Cache(f / "sub")


def test_a_process_that_never_made_a_defense_still_loads_its_cached_objects(tmp_path):
    """A loky worker that runs an attack on a DAWN victim loads the victim before it creates any defense: the
    codec of DAWN's API wrapper is registered by importing the built-in components, not refused."""
    import subprocess
    import sys

    from defenses.dawn import DawnServe

    Cache(tmp_path).save("k" * 32, DawnServe(b"secret", 0.02, 10), meta={"what": "test"})
    code = (f"from bench.cache import Cache; c = Cache({str(tmp_path)!r}); found = c.load('k' * 32); "
            "print(type(found[0]).__name__ if found else 'refused', c.stats.drain_rebuilt())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "DawnServe", out.stdout


def test_an_entry_naming_a_module_is_refused_and_imports_nothing():
    """The tag of a cached object is looked up among registered codecs only: a tag that names an importable
    module (here ``this``, which prints when imported) is refused, and the module is not imported."""
    import sys

    from bench.codec import CodecError, decode

    assert "this" not in sys.modules
    for tag in ("this", "bench.cli", ["x"]):
        with pytest.raises(CodecError, match="unknown kind|malformed"):
            decode({"__obj__": tag, "state": {"__dict__": {}}}, {})
    assert "this" not in sys.modules

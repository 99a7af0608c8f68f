"""A shared cache folder must not be a way to run code or to swap one model for another (issue: safe to
share). Entries hold JSON and safetensors only, name their own key, and decode from an allow-list."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import Outcome, Protected
from bench.cache import Cache, artifact_key
from bench.codec import MAGIC, CodecError, decode, encode, from_bytes, to_bytes
from bench.models import create_model

MARKER_ENV = "WMBENCH_TEST_MARKER"


class _Payload:
    """Unpickling this writes a marker file: what an attacker with write access to the cache would plant."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _model():
    return create_model("small_cnn", in_channels=1, num_classes=10, image_size=(28, 28), mean=[0.5], std=[0.25])


def _plant(path: Path, data: bytes, digest_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest_path.write_text(hashlib.sha256(data).hexdigest())


def test_a_planted_pickle_payload_does_not_run(tmp_path):
    cache = Cache(tmp_path / "cache")
    key = artifact_key(kind="victim", n=1)
    marker = tmp_path / "marker"
    payload = pickle.dumps({"obj": _Payload(str(marker)), "meta": {}})
    # the old format's file name and a payload under the new name, each with a matching digest
    old = cache.root / key[:2] / f"{key}.pt"
    _plant(old, payload, old.with_suffix(".sha256"))
    assert cache.load(key) is None and not marker.exists()
    assert cache.stats.rebuilt == [(key, "written by an older wmbench (pickle format, never loaded)")]
    _plant(cache.path(key), payload, cache.path(key).with_name(f"{key}.wm.sha256"))
    obj, _ = cache.get_or_build(key, lambda: {"w": torch.ones(2)})
    assert not marker.exists() and torch.equal(obj["w"], torch.ones(2))
    assert "not a wmbench cache entry" in cache.stats.rebuilt[-1][1]
    # and the unpickling itself is what would have run it (the test's payload is real)
    pickle.loads(payload)
    assert marker.read_text() == "pwned"


def test_a_payload_inside_a_valid_looking_entry_is_refused(tmp_path):
    tree, tensors = encode({"x": 1})
    bad = {"__obj__": "builtins.eval", "state": {"__dict__": {}}}
    with pytest.raises(CodecError, match="unknown kind"):
        decode(bad, tensors)
    with pytest.raises(CodecError, match="does not hold"):
        decode({"__tensor__": "t9"}, tensors)
    with pytest.raises(CodecError):
        from_bytes(MAGIC + (10**9).to_bytes(8, "little") + b"{}")


def test_an_entry_copied_over_another_key_is_refused_and_rebuilt(tmp_path):
    cache = Cache(tmp_path)
    a, b = artifact_key(n="a"), artifact_key(n="b")
    cache.get_or_build(a, lambda: {"who": "a"})
    cache.get_or_build(b, lambda: {"who": "b"})
    shutil.copy(cache.path(a), cache.path(b))
    shutil.copy(cache.root / a[:2] / f"{a}.wm.sha256", cache.root / b[:2] / f"{b}.wm.sha256")
    fresh = Cache(tmp_path)
    assert fresh.load(b) is None and fresh.stats.rebuilt == [(b, "holds another key's artifact")]
    obj, _ = fresh.get_or_build(b, lambda: {"who": "b again"})
    assert obj == {"who": "b again"} and fresh.load(b)[0] == {"who": "b again"}
    assert fresh.load(a)[0] == {"who": "a"}


def test_round_trip_of_what_the_runner_stores():
    from attacks.detection.strip import StripFilter
    from defenses.dawn import DawnServe

    model = _model()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    prot = Protected(model=model, verify_x=torch.rand(4, 1, 28, 28), verify_y=torch.tensor([1, 2, 3, 4]),
                     threshold=0.3, serve=DawnServe(b"secret", 0.02, 10),
                     info={"classes": {"a": 0}, "pair": (0, 1), "arr": np.arange(3.0), "nan": math.nan,
                           "by_int": {3: "x"}, "np": np.float32(0.5)})
    back = from_bytes(to_bytes({"key": "k"}, prot))[1]
    assert isinstance(back, Protected) and torch.equal(back.verify_x, prot.verify_x)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), back.model.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(back.model.eval()(x), model.eval()(x))
    assert back.serve.key == b"secret" and back.serve.rate == 0.02
    assert back.info["pair"] == (0, 1) and math.isnan(back.info["nan"]) and back.info["by_int"] == {3: "x"}
    assert np.array_equal(back.info["arr"], np.arange(3.0)) and back.info["np"] == 0.5
    strip = StripFilter(_model(), torch.rand(5, 1, 28, 28), alpha=0.5, threshold=0.2, refuse="second")
    out = from_bytes(to_bytes({}, Outcome(model=strip, detected=True, detected_pair=(0, 1), extras={})))[1]
    assert isinstance(out.model, StripFilter) and torch.equal(out.model.overlays, strip.overlays)
    assert out.model.threshold == 0.2 and out.detected_pair == (0, 1)


def test_decoding_does_not_move_the_random_stream():
    data = to_bytes({}, Protected(model=_model()))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    from_bytes(data)
    assert torch.equal(torch.rand(3), expected)


def test_what_cannot_be_stored_is_named():
    with pytest.raises(CodecError, match="cannot be cached.*cache_codec"):
        encode({"f": object()})
    with pytest.raises(CodecError, match="without a recipe"):
        encode(torch.nn.Linear(2, 2))


def test_loading_a_planted_entry_in_a_fresh_process_runs_nothing(tmp_path):
    # the same check across a process boundary, as a worker would load it
    cache = Cache(tmp_path / "cache")
    key = artifact_key(kind="victim", n=2)
    marker = tmp_path / "marker2"
    payload = pickle.dumps(_Payload(str(marker)))
    _plant(cache.path(key), payload, cache.path(key).with_name(f"{key}.wm.sha256"))
    code = ("import sys; from bench.cache import Cache; c = Cache(sys.argv[1]); "
            "print(c.load(sys.argv[2]) is None, c.stats.rebuilt[0][1])")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code, str(cache.root), key], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True") and not marker.exists()


def _entry(tree: dict, tensors: dict | None = None, key: str = "k") -> bytes:
    import json

    from safetensors.torch import save

    head = json.dumps({"key": key, "meta": {}, "tree": tree}).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + save(tensors or {"t0": torch.zeros(1)})


@pytest.mark.parametrize("recipe, why", [
    ({"arch": "small_cnn", "in_channels": 10**8, "num_classes": 10, "image_size": [28, 28], "mean": [0.5],
      "std": [0.5]}, "out of range"),
    ({"arch": "small_cnn", "in_channels": 1, "num_classes": 10**9, "image_size": [28, 28], "mean": [0.5],
      "std": [0.5]}, "out of range"),
    ({"arch": "small_cnn", "in_channels": 1, "num_classes": 10, "image_size": [28, 28], "mean": [0.5]},
     "malformed model recipe"),
    ({"arch": "tv:fasterrcnn_resnet50_fpn", "in_channels": 3, "num_classes": 10, "image_size": [64, 64],
      "mean": [0.5], "std": [0.5]}, "cannot rebuild"),
])
def test_a_crafted_model_recipe_is_refused_before_anything_is_built(recipe, why):
    tree = {"__model__": {"__dict__": dict(recipe)}, "state": {"w": "t0"}, "training": False}
    with pytest.raises(CodecError, match=why):
        from_bytes(_entry(tree), "k")


def test_weights_that_do_not_fit_the_recipe_are_refused():
    model = _model()
    tree, tensors = encode(model)
    first = next(iter(tree["state"].values()))
    tensors[first] = torch.zeros(3)  # wrong shape for that parameter
    import json

    from safetensors.torch import save

    head = json.dumps({"key": "k", "meta": {}, "tree": tree}).encode()
    with pytest.raises(CodecError, match="do not fit"):
        from_bytes(MAGIC + len(head).to_bytes(8, "little") + head + save(tensors), "k")


def test_typed_states_for_registered_wrappers():
    from attacks.removal.input_noise import NoisyInput

    big = {"__obj__": "dawn_serve", "state": {"__dict__": {"key": 10**12, "rate": 0.1, "num_classes": 10}}}
    with pytest.raises(CodecError, match="DAWN"):
        from_bytes(_entry(big), "k")
    noisy = NoisyInput(_model(), 0.1, 3)
    back = from_bytes(to_bytes({"key": "k"}, Outcome(model=noisy)), "k")[1]
    assert isinstance(back.model, NoisyInput) and back.model.sigma == 0.1 and back.model.seed == 3


def test_an_entry_is_checked_against_its_key_before_it_is_decoded():
    with pytest.raises(CodecError, match="another key"):
        from_bytes(_entry({"__obj__": "no_such_kind", "state": None}, key="other"), "k")


def test_detection_models_of_torchvision_are_not_architectures():
    from bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown torchvision model"):
        create_model("tv:fasterrcnn_resnet50_fpn", in_channels=3, num_classes=10, image_size=(64, 64),
                     mean=[0.5], std=[0.5])


def test_a_run_says_once_how_many_entries_it_rebuilt_and_why(tmp_path, capsys, dead_pid):
    from bench.atomic import _HOST
    from wmbench.cli import main

    argv = ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "content", "--attack", "identity",
            "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "-q", "--device", "cpu"]
    assert main(argv) == 0
    assert "could not be used" not in capsys.readouterr().err
    entries = sorted((tmp_path / "c").rglob("*.wm"))
    a, b = entries[0], entries[1]
    shutil.copy(a, b)  # one entry copied over another key's, digest and all
    shutil.copy(a.with_name(a.name + ".sha256"), b.with_name(b.name + ".sha256"))
    stale = tmp_path / "r" / f".tmp-{_HOST}-{dead_pid}-card"  # a card write killed long ago
    stale.write_text("{")
    os.utime(stale, (0, 0))
    assert main([*argv, "--force"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "could not be used" in ln]
    assert err == ["wmbench: 1 cache entry could not be used and was rebuilt: 1 holds another key's artifact"]
    assert not stale.exists()



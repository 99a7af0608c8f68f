"""What a run is set to do (:class:`Settings`: data set, architecture, profile, folders, device, jobs,
plugins) and what every job derives from it: the task of a seed, the versions and device recorded on a card.

Settings are frozen and picklable: every worker process gets the same object.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

import bench
from bench.errors import ConfigError
from bench.profiles import Profile, get_profile
from bench.train import resolve_device

__all__ = ["Settings", "make_settings", "load_task", "preflight", "versions", "device_name", "git_sha"]


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to run a job (picklable); made by :func:`make_settings`."""

    dataset: str
    arch: str
    profile: Profile
    results_dir: str
    cache_dir: str
    device: str = "auto"
    data_root: str | None = None
    jobs: int = 1
    plugins: tuple[str, ...] = ()
    verbose: bool = False
    git_sha: str | None = None


def make_settings(*, dataset: str = "fashion-mnist", arch: str | None = None, profile: str = "quick",
              precision: str | None = None,
              results_dir: str = "results", cache_dir: str = ".wmbench-cache", device: str = "auto",
              data_root: str | None = None, jobs: int = 1, plugins: tuple[str, ...] = (),
              verbose: bool = False) -> Settings:
    from bench.data import check_dataset, default_arch
    from bench.models import create_model  # noqa: F401  (fail early on import problems)

    check_dataset(dataset)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        raise ConfigError(f"--data-root {str(data_root)[:80]!r} is not a folder; create it (data sets are looked "
                          "for and downloaded there) or leave it out to use ./data and the system copies")
    resolve_device(device)
    return Settings(dataset=dataset, arch=arch or default_arch(dataset), profile=get_profile(profile, precision),
                results_dir=str(results_dir), cache_dir=str(cache_dir), device=device, data_root=data_root,
                jobs=jobs, plugins=tuple(str(Path(p).resolve()) for p in plugins), verbose=verbose,
                git_sha=git_sha(Path(__file__).resolve().parent.parent))


def load_task(settings: Settings, seed: int):
    """The task (splits of the settings's data set at its profile's sizes) that every job of ``seed`` uses."""
    from bench.data import make_task

    p = settings.profile
    return make_task(settings.dataset, seed=seed, arch=settings.arch, victim_train=p.victim_train,
                     attacker_pool=p.attacker_pool, test=p.test, root=settings.data_root)


def preflight(settings: Settings) -> None:
    """Load the data and build one model up front, so a missing data set or a bad architecture is one
    clear error instead of an error card in every cell."""
    from bench.models import model_for_task

    model_for_task(load_task(settings, 0))


def versions(plugins: tuple[str, ...] = ()) -> dict:
    """Versions of what made a card; a plugin file is recorded by its path and the SHA-256 of its source."""
    import hashlib

    import numpy
    import torchvision

    out = {"wmbench": bench.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": numpy.__version__, "python": platform.python_version()}
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:  # pragma: no cover
        pass
    for path in plugins:
        try:
            out[f"plugin {path}"] = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            out[f"plugin {path}"] = "unreadable"
    return out


def device_name(spec: str) -> str:
    dev = resolve_device(spec)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}x{os.cpu_count()}"


def git_sha(path: str | Path = ".") -> str | None:
    """The commit of the checkout at ``path``; where that is no git checkout (a copy of the source tree sent to
    another machine, an unpacked archive), ``$WMBENCH_GIT_SHA`` if set, else None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("WMBENCH_GIT_SHA", "").strip() or None

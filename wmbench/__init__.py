"""wmbench's public Python API, for notebooks and scripts (the command line is :mod:`wmbench.cli`).

    import wmbench

    summary = wmbench.run("none,content", "identity,soft_label", seeds=[0, 1], profile="smoke")
    cards = wmbench.load_results("results")          # one row per card (pandas)
    wmbench.render_leaderboard("results", "leaderboard")

Components register with ``@wmbench.register_defense("name")`` / ``@wmbench.register_attack("name")``;
``wmbench.DEFENSES`` and ``wmbench.ATTACKS`` are the registries. Import from here rather than from the generic
top-level packages (``bench``, ``attacks``, ...), whose names another project may also use. Nothing heavy is
imported until it is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "run", "load_results", "render_leaderboard", "list_defenses", "list_attacks",
           "register_defense", "register_attack", "DEFENSES", "ATTACKS"]

_FROM_REGISTRY = {"register_defense", "register_attack", "DEFENSES", "ATTACKS"}


def run(defenses: str = "*", attacks: str = "*", seeds=(0,), *, dataset: str = "fashion-mnist",
        arch: str | None = None, profile: str = "quick", results: str = "results",
        cache_dir: str = ".wmbench-cache", device: str = "auto", data_root: str | None = None, jobs: int = 1,
        plugins: tuple[str, ...] = (), force: bool = False, backend: str = "loky", scheduler: str | None = None,
        progress: bool = True):
    """Fill the cells of ``defenses`` x ``attacks`` x ``seeds`` that have no card in ``results`` yet, as
    ``wmbench run`` does (same arguments, same defaults), and return the run's summary (counts, cards, errors)."""
    from bench.runner import run as _run
    from bench.settings import make_settings

    settings = make_settings(dataset=dataset, arch=arch, profile=profile, results_dir=results, cache_dir=cache_dir,
                             device=device, data_root=data_root, jobs=jobs, plugins=tuple(plugins))
    return _run(settings, defenses, attacks, [int(s) for s in seeds], force=force, backend=backend,
                scheduler=scheduler, progress=progress)


def load_results(path: str = "results"):
    """Every result card under ``path``, validated, as a pandas DataFrame (one row per card)."""
    from bench.results import load_results as _load

    return _load(path)


def render_leaderboard(results: str = "results", out: str = "leaderboard") -> dict:
    """Render LEADERBOARD.md, index.html and the figures from the cards; returns {what: path}."""
    from leaderboard.render import render

    return render(results, out)


def list_defenses(pattern: str = "*") -> list[str]:
    """Registered defense names matching an fnmatch pattern (comma-separated patterns work)."""
    from bench.registry import DEFENSES

    return DEFENSES.list(pattern)


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching an fnmatch pattern (comma-separated patterns work)."""
    from bench.registry import ATTACKS

    return ATTACKS.list(pattern)


def __getattr__(name: str) -> Any:  # the registries, loaded when first asked for
    if name in _FROM_REGISTRY:
        import bench.registry

        return getattr(bench.registry, name)
    raise AttributeError(f"module 'wmbench' has no attribute {name!r}")

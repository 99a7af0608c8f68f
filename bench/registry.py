"""Registries of defenses and attacks.

Components register at their definition site with ``@register_defense("name")`` /
``@register_attack("name")``; the core finds them only here. Built-in components are discovered by
importing every module under the ``defenses`` and ``attacks`` packages, so dropping one file there adds
one component. Third-party packages register through the entry-point groups ``wmbench.defenses`` and
``wmbench.attacks``; a loose file through :func:`load_plugin_file` (the CLI's ``--plugin``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.config import ComponentConfig, build_config
from bench.errors import UnknownNameError, WmbenchError, shorten, suggest

__all__ = [
    "Registry",
    "DEFENSES",
    "ATTACKS",
    "register_defense",
    "register_attack",
    "create_defense",
    "create_attack",
    "list_defenses",
    "list_attacks",
    "get_defense",
    "load_plugin_file",
    "load_plugins",
]

T = TypeVar("T")
_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class DuplicateNameError(WmbenchError):
    """Two components registered under one name."""


class Registry(Generic[T]):
    """Name -> component class, filled lazily from built-in packages and entry points."""

    def __init__(self, kind: str, packages: tuple[str, ...], group: str) -> None:
        self.kind = kind
        self.packages = packages
        self.group = group
        self._items: dict[str, type[T]] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        if not name or set(name) - _NAME_OK or name[0].isdigit():
            raise WmbenchError(f"{self.kind} name {name!r} must be snake_case: a-z, 0-9 and _")

        def decorator(cls: type[T]) -> type[T]:
            with self._lock:
                old = self._items.get(name)
                if old is not None and old is not cls:
                    raise DuplicateNameError(
                        f"{self.kind} {name!r} is already registered by {_qualified(old)}; "
                        f"choose another name for {_qualified(cls)}"
                    )
                cls.name = name  # type: ignore[attr-defined]
                config_cls = getattr(cls, "Config", None)
                if not (isinstance(config_cls, type) and issubclass(config_cls, ComponentConfig)):
                    raise WmbenchError(f"{self.kind} {name!r} needs a nested Config(ComponentConfig) class")
                if "Config" in cls.__dict__:
                    config_cls._owner = name  # used in validation messages
                kinds = getattr(cls, "KINDS", None)
                if kinds is not None and getattr(cls, "kind", None) not in kinds:
                    raise WmbenchError(f"{self.kind} {name!r} has kind={getattr(cls, 'kind', None)!r}; it must be one "
                                       f"of {', '.join(kinds)}")
                self._items[name] = cls
            return cls

        return decorator

    # -- discovery ----------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for pkg_name in self.packages:
                pkg = _builtin_package(pkg_name)
                for mod in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
                    importlib.import_module(mod.name)
            for ep in importlib.metadata.entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not hide the built-ins
                    raise WmbenchError(
                        f"plugin entry point {ep.name!r} in group {self.group} failed to load: {exc}"
                    ) from None
                # an entry point may name a class (registered under the entry point's name) or a
                # module whose decorated classes registered themselves on import
                if isinstance(obj, type) and obj not in self._items.values():
                    self.register(ep.name)(obj)

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> type[T]:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {shorten(name)!r}; {suggest(name, self._items)}run `wmbench list` to see all "
                f"({len(self._items)} registered; a plugin's {self.kind} needs its --plugin FILE.py on every "
                "command)"
            ) from None

    def create(self, name: str, **config: Any) -> T:
        cls = self.get(name)
        cfg = build_config(cls.Config, name, config)  # type: ignore[attr-defined]
        return cls(cfg)  # type: ignore[call-arg]

    def list(self, pattern: str | list[str] | tuple[str, ...] = "*") -> list[str]:
        """Sorted names matching one or several fnmatch patterns (a comma-separated string works)."""
        self._load()
        patterns = split_patterns(pattern)
        return sorted(n for n in self._items if any(fnmatch.fnmatchcase(n, p) for p in patterns))

    def expand(self, pattern: str | list[str]) -> list[str]:
        """Like :meth:`list` but every pattern must match something (an exact name must exist)."""
        self._load()
        out: list[str] = []
        for p in split_patterns(pattern):
            hits = self.list(p) if any(ch in p for ch in "*?[") else [self.get(p).name]  # type: ignore
            if not hits:
                raise UnknownNameError(f"no {self.kind} matches {shorten(p)!r}; run `wmbench list` to see all")
            out.extend(h for h in hits if h not in out)
        return out

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def unregister(self, name: str) -> None:
        """Remove a component (tests and plugin reloads)."""
        with self._lock:
            self._items.pop(name, None)


# the built-in component packages are installed beside ``bench``: found from its own location, never from
# whatever folder happens to be first on sys.path
_HOME = Path(__file__).resolve().parent.parent


def builtin_home(name: str) -> Path:
    """Where the built-in package ``name`` (``defenses``, ``attacks``) is installed."""
    return _HOME / name


def _builtin_package(name: str):
    """Import the built-in package ``name``; a foreign package of that name that shadows ours is an error."""
    expected = builtin_home(name)
    pkg = importlib.import_module(name)
    found = [Path(p).resolve() for p in getattr(pkg, "__path__", [])]
    if expected not in found:
        where = ", ".join(str(p) for p in found) or str(getattr(pkg, "__file__", "?"))
        raise WmbenchError(
            f"the package {name!r} imported from {shorten(where, 200)} shadows wmbench's built-in {name} in "
            f"{shorten(str(expected), 200)}; run from another folder or rename the local {name!r} package"
        )
    return pkg


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def split_patterns(pattern: str | list[str] | tuple[str, ...]) -> list[str]:
    items = pattern.split(",") if isinstance(pattern, str) else list(pattern)
    return [p.strip() for p in items if p.strip()] or ["*"]


DEFENSES: Registry = Registry("defense", ("defenses",), "wmbench.defenses")
ATTACKS: Registry = Registry("attack", ("attacks",), "wmbench.attacks")

register_defense = DEFENSES.register
register_attack = ATTACKS.register
create_defense = DEFENSES.create
create_attack = ATTACKS.create
list_defenses = DEFENSES.list
list_attacks = ATTACKS.list
get_defense = DEFENSES.get


def load_plugin_file(path: str | Path) -> str:
    """Import a loose Python file whose decorated classes register themselves; returns its module name.

    Loading the same file twice is a no-op, so worker processes can call this freely.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise WmbenchError(f"plugin {shorten(str(path), 200)!r} does not exist; pass --plugin path/to/file.py")
    if not p.is_file() or p.suffix != ".py":
        raise WmbenchError(f"plugin {shorten(str(path), 200)!r} is not a .py file; pass --plugin path/to/file.py")
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:10]
    mod_name = f"wmbench_plugin_{p.stem}_{digest}"
    if mod_name in sys.modules:
        return mod_name
    DEFENSES._load()
    ATTACKS._load()
    spec = importlib.util.spec_from_file_location(mod_name, p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except WmbenchError:
        del sys.modules[mod_name]
        raise
    except SystemExit as exc:  # a plugin must not end the run
        del sys.modules[mod_name]
        raise WmbenchError(f"plugin {shorten(str(path))!r} called sys.exit({exc.code!r}) while being imported; "
                           "a plugin may only define and register components") from None
    except Exception as exc:
        del sys.modules[mod_name]
        raise WmbenchError(f"plugin {shorten(str(path))!r} failed to import: {type(exc).__name__}: "
                           f"{shorten(str(exc), 200)}") from None
    return mod_name


def load_plugins(paths: list[str] | tuple[str, ...] | None) -> None:
    for p in paths or ():
        load_plugin_file(p)

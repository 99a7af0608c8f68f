"""The jobs a run is made of, as they run in a worker process: train a victim (:class:`VictimJob`), attack a
model (:class:`AttackJob`); each builds one cache artifact at most once. Also the worker's per-process setup
and how a failing job becomes one line (and a traceback) instead of stopping the run.
"""

from __future__ import annotations

import copy
import os
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import bench
from bench.api import Context, Protected, Target
from bench.backends import cluster_threads
from bench.cache import Cache
from bench.errors import WmbenchError
from bench.oracle import Oracle
from bench.registry import ATTACKS, DEFENSES, builtin_home, load_plugins
from bench.settings import Settings, device_name, load_task
from bench.spec import Spec
from bench.train import resolve_device, set_threads

__all__ = ["VictimJob", "AttackJob", "make_target", "guard", "keyed", "split_error", "worker_cache", "must_load",
           "job_context", "pool_answers_parts", "victim_eval_parts", "verify_parts"]

_WORKER: dict[str, Any] = {}


def _keep_worker_alive() -> None:
    """Switch off loky's leak guard in this process.

    A loky worker whose resident memory grew by more than 300 MB since its first job is taken for a leaking
    one and replaced by a fresh process. Ours grow on purpose: the data set, the task and an attacker's
    reference-model norms are kept per process for the jobs that follow. A replacement pays a torch import and
    rebuilds all of them (calibrated Neural Cleanse retrains its reference models), and the run warns "A worker
    stopped while some jobs were given to the executor". The guard is a module global of loky's worker loop,
    read after every job; without psutil loky skips it the same way.
    """
    try:
        from joblib.externals.loky import process_executor
    except ImportError:  # pragma: no cover - joblib without its vendored loky
        return
    if getattr(process_executor, "_USE_PSUTIL", False):
        process_executor._USE_PSUTIL = False


def _die_with_parent() -> None:
    """In a loky worker: a daemon thread that ends this process when its parent is gone (a SIGKILLed run
    must not leave workers training for minutes). The main process is left alone."""
    import multiprocessing
    import threading

    if _WORKER.get("watching") or "Loky" not in multiprocessing.current_process().name:
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wmbench-parent-watch", daemon=True).start()
    _WORKER["watching"] = True


def worker_cache(settings: Settings) -> Cache:
    """Per-process setup: plugins, thread share, the cache handle, the parent watch. Idempotent."""
    _die_with_parent()
    if _WORKER.get("settings") != settings:
        _keep_worker_alive()
        load_plugins(settings.plugins)
        _WORKER["cluster_threads"] = cluster_threads()  # a Dask or Ray worker knows its share of its host
        if _WORKER["cluster_threads"] is not None:
            torch.set_num_threads(_WORKER["cluster_threads"])
        _WORKER["settings"] = settings
        _WORKER["cache"] = Cache(settings.cache_dir)
    if _WORKER["cluster_threads"] is None:  # a phase with fewer jobs than --jobs gives each job more cores
        set_threads(_WORKER.get("share") or settings.jobs)
    return _WORKER["cache"]


def job_context(settings: Settings, seed: int, cache: Cache) -> Context:
    """The Context of a job seeded with ``seed``, remembering in ``cache`` (the job's :func:`worker_cache`)."""
    return Context(device=resolve_device(settings.device), seed=seed, profile=settings.profile,
                   verbose=settings.verbose, store=cache)


def _to_cpu(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.cpu()
    return obj


def guard(fn, *args) -> tuple[str | None, bool]:
    """Run a job; return (error message or None, built?)."""
    try:
        return None, fn(*args)
    except WmbenchError as exc:
        return f"{type(exc).__name__}: {_one_line(exc)}", False
    except SystemExit as exc:  # a component that calls sys.exit() ends its job, not the run
        return f"SystemExit: a component called sys.exit({exc.code!r})", False
    except Exception as exc:  # one failing job must not stop the sweep
        frame = _own_frame(traceback.extract_tb(exc.__traceback__))
        where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})" if frame else ""
        return f"{type(exc).__name__}: {_one_line(exc)}{where}{TRACE}{''.join(traceback.format_exception(exc))}", False


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"


TRACE = "\n--- traceback ---\n"  # what follows it in a job's error goes to the card's extras, not its message


def _own_frame(tb: traceback.StackSummary) -> traceback.FrameSummary | None:
    """The innermost frame in a component's code, the line its author can act on: a plugin file, a
    built-in component package or bench (wherever wmbench is installed), else any frame outside
    torch, numpy and the standard library."""
    roots = {str(Path(bench.__file__).resolve().parent) + os.sep,
             *(str(builtin_home(pkg)) + os.sep for pkg in (*DEFENSES.packages, *ATTACKS.packages))}
    plugins = {str(Path(m.__file__).resolve()) for name, m in list(sys.modules.items())
               if name.startswith("wmbench_plugin_") and getattr(m, "__file__", None)}

    def resolved(f: traceback.FrameSummary) -> str:
        try:
            return str(Path(f.filename).resolve())
        except OSError:  # pragma: no cover
            return f.filename

    ours = [f for f in tb if resolved(f) in plugins or any(resolved(f).startswith(r) for r in roots)]
    if ours:
        return ours[-1]
    third_party = [p for p in {sys.base_prefix, sys.prefix, *sysconfig.get_paths().values()} if p]
    rest = [f for f in tb if "site-packages" not in f.filename and not f.filename.startswith("<")
            and not any(f.filename.startswith(p) for p in third_party)]
    return rest[-1] if rest else (tb[-1] if tb else None)


def split_error(error: str) -> tuple[str, str | None]:
    """(message, traceback or None) of a job's error text."""
    message, _, trace = error.partition(TRACE)
    return message, trace or None


@dataclass(frozen=True)
class VictimJob:
    key: str
    defense: Spec
    seed: int  # task seed (split)
    train_seed: int  # seed of the training run (differs for null models)

    def __call__(self, settings: Settings) -> bool:
        cache = worker_cache(settings)
        if cache.has(self.key) and cache.load(self.key) is not None:
            return False
        task = load_task(settings, self.seed)
        defense = DEFENSES.create(self.defense.name, **self.defense.config)
        ctx = job_context(settings, self.train_seed, cache)

        def build() -> Protected:
            prot = defense.embed(task, ctx)
            prot.model = _to_cpu(prot.model)
            return prot

        meta = {"defense": self.defense.label, "seed": self.train_seed, "device": device_name(settings.device)}
        return cache.build_or_load(self.key, build, meta=meta)[2]  # False: another run built it


def pool_answers_parts(model_key: str, seed: int) -> dict:
    """What the table of a model's answers to the attacker's pool of task ``seed`` is remembered by."""
    return {"answers": "pool", "model": model_key, "seed": seed}


def victim_eval_parts(victim_key: str, seed: int) -> dict:
    """What a victim's evaluation (:func:`bench.score.evaluate_victim`) is remembered by."""
    return {"evaluation": "victim", "victim": victim_key, "seed": seed}


def verify_parts(victim_key: str, model_key: str) -> dict:
    """What the verification of ``victim_key``'s watermark on the model ``model_key`` is remembered by."""
    return {"evaluation": "verify", "victim": victim_key, "model": model_key}


def make_target(protected: Protected, attack, task, device: torch.device | str = "cpu",
                remember: Callable | None = None) -> Target:
    """What ``attack`` may see of a protected model: an oracle for every kind, a white-box *copy* for
    all kinds but extraction, the attacker's pool; never the watermark secret. ``remember(build)`` keeps the
    oracle's table of answers to the pool (:meth:`bench.oracle.Oracle.ask_pool`)."""
    model = protected.model.to(device).eval()
    oracle = Oracle(model, num_classes=task.num_classes, serve=protected.serve, pool=task.x_pool, remember=remember,
                    **attack.oracle_options())
    white_box = attack.kind != "extraction"
    return Target(oracle=oracle, model=copy.deepcopy(model) if white_box else None, x_pool=task.x_pool,
                  y_pool=task.y_pool, info=task.info, arch=task.arch, dataset=task.dataset)


@dataclass(frozen=True)
class AttackJob:
    key: str
    attack: Spec
    parent_key: str  # a victim (Protected) or, inside a chain, the previous step's Outcome
    seed: int  # task seed
    attack_seed: int
    depth: int = 0  # position in its chain: jobs run in order of depth

    def __call__(self, settings: Settings) -> bool:
        cache = worker_cache(settings)
        if cache.has(self.key) and cache.load(self.key) is not None:
            return False
        loaded = cache.load(self.parent_key)
        if loaded is None:
            raise WmbenchError("the attacked model is missing from the cache (its training failed)")
        protected = loaded[0]
        if not isinstance(protected, Protected):  # a chain step attacks the previous step's suspect
            if protected.model is None:
                raise WmbenchError("the previous step of this chain produced no model to attack")
            protected = Protected(model=protected.model)
        task = load_task(settings, self.seed)
        attack = ATTACKS.create(self.attack.name, **self.attack.config)
        ctx = job_context(settings, self.attack_seed, cache)

        def answers(build):  # the model's answers to the pool: once per model and seed, for every attack on it
            return cache.remember(pool_answers_parts(self.parent_key, self.seed), build)

        def build():
            target = make_target(protected, attack, task, ctx.device, remember=answers)
            out = attack(target, ctx)
            out.model = _to_cpu(out.model)
            if target.oracle is not None:
                out.queries = max(out.queries, target.oracle.queries)
            return out

        return cache.build_or_load(self.key, build, meta={"attack": self.attack.label, "parent": self.parent_key,
                                                          "device": device_name(settings.device)})[2]


def keyed(key, share: int | None, fn, *args):
    """Run ``fn(*args)`` as one of ``share`` concurrent jobs (its thread share; None = one per --jobs); returns
    (key, result, the cache entries this worker had to rebuild meanwhile, with the reason)."""
    _WORKER["share"] = share
    out = fn(*args)
    cache = _WORKER.get("cache")
    return key, out, cache.stats.drain_rebuilt() if cache is not None else []


def must_load(cache: Cache, key: str, what: str):
    found = cache.load(key)
    if found is None:
        raise WmbenchError(f"the {what} {key[:8]} is missing from the cache; re-run to rebuild it")
    return found

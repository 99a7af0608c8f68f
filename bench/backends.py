"""Where the runner's jobs run: joblib's process pool, threads, or a Dask or Ray cluster.

``use_backend(name, jobs=..., scheduler=...)`` is a context manager that sets the backend up, yields what
to hand to ``bench.runner.execute(..., backend=...)`` and tears it down again:

* ``loky`` (joblib's default process pool) and ``threading`` need nothing;
* ``dask`` connects a ``distributed.Client`` to ``scheduler`` (an address such as ``tcp://host:8786``), or
  without one starts a ``distributed.LocalCluster`` of ``jobs`` single-threaded worker processes;
* ``ray`` registers Ray's joblib backend and calls ``ray.init()``, which joins the cluster named by
  ``$RAY_ADDRESS`` or the one ``ray start`` left on this machine, else starts a local instance.

Workers on a cluster read the cache and write cards themselves (atomically, see :mod:`bench.atomic`), so the
cache and results folders must be one shared folder at the same path on every machine:
:func:`cluster_settings` makes the settings' paths absolute. :func:`cluster_threads` tells a worker how many torch
threads a job may use there. joblib's ``return_as="generator_unordered"``, which the runner uses, works
with the dask backend (results come back through completion callbacks); Ray's joblib backend supports no
generator, so there the runner falls back to ``return_as="list"`` (each phase's results at its end).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, WmbenchError, suggest

__all__ = ["BACKENDS", "check_backend", "use_backend", "cluster_settings", "cluster_threads", "CONNECT_TIMEOUT_S"]

BACKENDS = ("loky", "threading", "dask", "ray")
#: backend -> (module it needs, the extra that installs it)
_EXTRAS = {"dask": ("distributed", "wmbench[dask]"), "ray": ("ray", "wmbench[ray]")}
#: seconds to wait for a Dask scheduler (and for its first worker) before giving up
CONNECT_TIMEOUT_S = 10.0  # default; $WMBENCH_CONNECT_TIMEOUT overrides it (read when a cluster is joined)


def connect_timeout() -> float:
    """Seconds to wait for a cluster's scheduler: $WMBENCH_CONNECT_TIMEOUT, else CONNECT_TIMEOUT_S."""
    text = os.environ.get("WMBENCH_CONNECT_TIMEOUT")
    if text is None:
        return CONNECT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise WmbenchError(f"WMBENCH_CONNECT_TIMEOUT={text[:40]!r} must be a positive number of seconds, e.g. 30")
    return value

# torch threads per job in this worker process, set by the client when it connects (see _pin_threads)
_PINNED_THREADS: int | None = None


def _warn(message: str) -> None:
    print(f"wmbench: warning: {message}", file=sys.stderr)


def _require(backend: str):
    module, extra = _EXTRAS[backend]
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"--backend {backend} needs the package {module!r}; install the extra: "
                          f"pip install '{extra}'") from None


def check_backend(backend: str, scheduler: str | None = None) -> None:
    """Reject a bad combination of ``--backend`` and ``--scheduler`` before any work starts."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; {suggest(backend, BACKENDS, n=1)}"
                          f"choose one of {', '.join(BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ConfigError(f"--scheduler only applies to --backend dask (got --backend {backend}); "
                          "add --backend dask or drop --scheduler")
    if backend in _EXTRAS:
        _require(backend)
    if scheduler is not None:
        _parse_scheduler(scheduler)


def _parse_scheduler(address: str) -> tuple[str, str | None, int | None]:
    """(normalised address, host, port); host and port are None for schemes without a TCP endpoint."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    if not address.strip():
        raise ConfigError("--scheduler is empty; pass the Dask scheduler's address, e.g. tcp://10.0.0.5:8786")
    address = address.strip()
    try:
        scheme, loc = parse_address(address if "://" in address else f"tcp://{address}")
        get_backend(scheme)  # an unknown scheme
        if scheme not in ("tcp", "tls", "ws", "wss"):
            return f"{scheme}://{loc}", None, None
        host, port = parse_host_port(loc)
    except ValueError as exc:
        raise ConfigError(f"--scheduler {address!r} is not a Dask scheduler address ({exc}); "
                          "use e.g. tcp://10.0.0.5:8786") from None
    return f"{scheme}://{loc}", host, port


def cluster_settings(settings, backend: str):
    """The settings with absolute results, cache and data folders when jobs run in other processes that may sit
    on other machines (dask, ray); unchanged otherwise."""
    if backend not in _EXTRAS:
        return settings

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    return replace(settings, results_dir=absolute(settings.results_dir), cache_dir=absolute(settings.cache_dir),
                   data_root=absolute(settings.data_root or "data"))


def cluster_threads() -> int | None:
    """How many torch threads one job may use in this process when it is a Dask or Ray worker; None
    elsewhere (the runner then shares the machine's cores among ``--jobs``)."""
    if _PINNED_THREADS is not None:
        return _PINNED_THREADS
    cores = os.cpu_count() or 1
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except ValueError:  # not inside a Dask task
            worker = None
        if worker is not None:  # a worker that joined after the client connected: assume it is alone
            return max(1, cores // _nthreads(worker))
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        if context.worker.mode == ray.WORKER_MODE:
            return max(1, int(context.get_assigned_resources().get("CPU", 1) or 1))
    return None


def _pin_threads(threads_on_host: dict[str, int], dask_worker=None) -> int:
    """Run on every Dask worker when the client connects: a job gets the host's cores divided by the
    number of jobs the host's workers run at once (their threads)."""
    global _PINNED_THREADS
    host = _host(dask_worker.address)
    busy = threads_on_host.get(host, _nthreads(dask_worker))
    _PINNED_THREADS = max(1, (os.cpu_count() or 1) // max(1, busy))
    return _PINNED_THREADS


def _nthreads(worker) -> int:
    """A Dask worker's threads (``worker.state.nthreads`` since distributed 2022.11, ``worker.nthreads`` before)."""
    state = getattr(worker, "state", None)
    return max(1, int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1)))


def _host(address: str) -> str:
    from distributed.comm.addressing import get_address_host

    try:
        return get_address_host(address)
    except ValueError:
        return address


@contextlib.contextmanager
def use_backend(backend: str = "loky", *, jobs: int = 1, scheduler: str | None = None,
                timeout: float | None = None, warn: Callable[[str], None] = _warn) -> Iterator[Any]:
    """Set up ``backend`` for the runner; yields what to pass to ``execute(..., backend=...)``: the name of a
    joblib backend, or for dask joblib's backend object bound to the connected client."""
    check_backend(backend, scheduler)
    if backend == "dask":
        with _dask(jobs, scheduler, connect_timeout() if timeout is None else timeout, warn) as dask_backend:
            yield dask_backend
    elif backend == "ray":
        with _ray():
            yield "ray"
    else:
        if backend == "threading" and jobs > 1:
            warn("--backend threading runs jobs in threads that share torch's global random generator, "
                 "so models are not bit-reproducible; use loky (the default) for reproducible results")
        yield backend


@contextlib.contextmanager
def _dask(jobs: int, scheduler: str | None, timeout: float, warn: Callable[[str], None]) -> Iterator[Any]:
    _require("dask")
    from distributed import Client, LocalCluster
    from joblib import parallel_config
    from joblib.parallel import get_active_backend

    cluster = None
    if scheduler is None:
        # one single-threaded worker process per job, like joblib's own pool; no memory cap (loky has none)
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=":0", memory_limit=0)
        target = cluster
    else:
        target = _check_scheduler(scheduler, timeout)
    try:
        try:
            client = Client(target, timeout=timeout, set_as_default=True)
        except Exception as exc:  # e.g. it went away since the check, or tls settings are missing
            where = f"the Dask scheduler at {scheduler}" if scheduler else "the local Dask cluster"
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot connect to {where} ({reason}); "
                              "check that --scheduler names a running Dask scheduler") from None
        try:
            _prepare_workers(client, scheduler, timeout, warn)
            # joblib registers its "dask" backend in parallel_config; Parallel(backend="dask") would then pass
            # its nesting_level on to client.submit (joblib 1.6), so the runner gets the backend object itself
            with parallel_config(backend="dask"):
                yield get_active_backend()[0]
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _check_scheduler(scheduler: str, timeout: float) -> str:
    """The scheduler's normalised address, once something there answered like a Dask scheduler within
    ``timeout``. (``distributed.Client`` itself waits forever on a port that accepts but never speaks.)"""
    address, host, port = _parse_scheduler(scheduler)
    if host is None:
        return address
    try:  # a refused or unroutable address fails here at once, with the system's reason
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({reason}); start one with "
                          "`dask scheduler` or fix --scheduler") from None
    if not address.startswith(("tcp://", "ws://")):
        return address  # tls/wss need the security settings that only the Client reads
    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():
        return asyncio.run(asyncio.wait_for(identity(), timeout))

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no event loop in this thread
            answer = ask()
        else:  # called from async code (a notebook): ask from a thread of its own
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                answer = pool.submit(ask).result()
    except Exception:  # timed out, closed, or bytes that are not Dask's protocol (even a MemoryError)
        answer = None
    kind = answer.get("type") if isinstance(answer, dict) else None
    if kind == "Scheduler":
        return address
    if isinstance(kind, str):
        raise ConfigError(f"{address} is a Dask {kind.lower()}, not a Dask scheduler; "
                          "pass the scheduler's address to --scheduler")
    raise ConfigError(f"{address} is something that does not speak Dask, not a Dask scheduler (no answer "
                      f"within {timeout:g} s); pass the scheduler's address to --scheduler")


def _prepare_workers(client, scheduler: str | None, timeout: float, warn: Callable[[str], None]) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        where = f"the Dask scheduler at {scheduler}" if scheduler else "the local Dask cluster"
        raise ConfigError(f"{where} has no workers after {timeout:g} s; start some with "
                          f"`dask worker {scheduler or 'ADDRESS'} --nthreads 1`") from None
    # newer distributed lists only the first few workers unless asked for all of them
    everyone = {"n_workers": -1} if "n_workers" in inspect.signature(client.scheduler_info).parameters else {}
    workers = client.scheduler_info(**everyone)["workers"]
    threads_on_host: dict[str, int] = {}
    for address, info in workers.items():
        host = _host(address)
        threads_on_host[host] = threads_on_host.get(host, 0) + int(info.get("nthreads", 1))
    client.run(_pin_threads, threads_on_host)
    if any(int(info.get("nthreads", 1)) > 1 for info in workers.values()):
        warn("some Dask workers run several threads; jobs in one process share torch's global random "
             "generator, so models are not bit-reproducible; start workers with `--nthreads 1 --nworkers N`")


@contextlib.contextmanager
def _ray() -> Iterator[None]:
    ray = _require("ray")
    from ray.util.joblib import register_ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = os.environ.get("RAY_ADDRESS", "the local Ray cluster")
            raise ConfigError(f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}; check "
                              "$RAY_ADDRESS or `ray status`") from None
    try:
        register_ray()
        yield
    finally:
        if started:
            ray.shutdown()

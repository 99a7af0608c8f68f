"""The runner: fill the defense x attack x seed matrix with result cards. :func:`run` is the one entry point
(the command line, ``wmbench reproduce``, ``wmbench tune`` and ``import wmbench`` all call it).

Work runs in three phases of independent joblib jobs (:mod:`bench.jobs`), each artifact built at most once per
run and stored in the content-addressed cache (:mod:`bench.planning` says which):

1. victims (one per defense spec and seed) and independent clean null models (``none`` at other seeds);
2. attacks on those models (one per attack spec and parent model);
3. scoring: one card per cell, written atomically (:mod:`bench.cells`).

With the default loky backend a cell is scored, in this process, as soon as the last model it needs exists,
so its card is on disk long before the run ends; with the threading, Dask and Ray backends the workers score
every cell after phase 2. A job that raises becomes an error card for every cell that depends on it;
the sweep goes on. Re-running skips cells whose card exists with the same run id, and rebuilds nothing that is
cached, so a killed run loses at most the jobs in flight.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from bench.atomic import sweep_temporaries
from bench.backends import check_backend, cluster_settings, use_backend
from bench.cache import entry_meta
from bench.cells import Cell, guard_cell
from bench.errors import WmbenchError
from bench.jobs import guard, keyed
from bench.planning import Matrix, cap_jobs, job_costs, plan_matrix
from bench.results import read_card
from bench.settings import Settings, device_name, preflight
from bench.spec import Spec

__all__ = ["RunSummary", "run", "execute", "COST_SEEDS"]

COST_SEEDS = (0, 1, 2, 3, 4)  # the seeds whose recorded jobs say how long this run's jobs take (job_costs)


@dataclass
class RunSummary:
    cells: int = 0
    counts: Counter = field(default_factory=Counter)  # ok / error / n/a / skipped
    built: Counter = field(default_factory=Counter)  # artifacts made in this run, by phase
    loaded: Counter = field(default_factory=Counter)  # artifacts found in the cache, by phase
    wall_s: float = 0.0
    cards: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rebuilt: list[tuple[str, str]] = field(default_factory=list)  # cache entries that could not be used, why

    def rebuilt_line(self) -> str | None:
        """One line saying how many cache entries were rebuilt and why, or None."""
        if not self.rebuilt:
            return None
        why = Counter(reason for _, reason in self.rebuilt)
        parts = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
        one = len(self.rebuilt) == 1
        return (f"{len(self.rebuilt)} cache entr{'y' if one else 'ies'} could not be used and "
                f"{'was' if one else 'were'} rebuilt: {parts}")


def _check_dir(path: str, what: str, flag: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WmbenchError(f"cannot create {what} {path!r}: {exc.strerror}; pass a writable {flag}") from None
    if not os.access(path, os.W_OK):
        raise WmbenchError(f"{what} {path!r} is not writable; pass a writable {flag}")


def execute(settings: Settings, matrix: Matrix, *, progress: bool = True, backend: str | None = None,
            costs: dict[str, float] | None = None) -> RunSummary:
    """Run every pending job of ``matrix`` with joblib; never stop on one failure. Within a phase the jobs start
    longest first by ``costs`` (expected CPU seconds per job key, :func:`bench.planning.job_costs`), those never
    timed before the others, so that no worker is left with one long job after the rest have finished."""
    costs = costs or {}
    _check_dir(settings.results_dir, "results directory", "--results")
    _check_dir(settings.cache_dir, "cache directory", "--cache-dir")
    sweep_temporaries(settings.results_dir)  # half-written cards of writers that are gone
    t0 = time.perf_counter()
    summary = RunSummary(cells=len(matrix.cells) + len(matrix.skipped))
    summary.counts["skipped"] = len(matrix.skipped)
    total = len(matrix.victims) + len(matrix.attacks) + len(matrix.cells)
    bar = tqdm(total=total, desc="wmbench", unit="job", disable=not progress, dynamic_ncols=True)
    try:  # results as they finish; joblib's dask backend supports that too
        parallel = Parallel(n_jobs=settings.jobs, backend=backend, return_as="generator_unordered")
    except ValueError:  # Ray's joblib backend returns no generator: each phase's results come at its end
        parallel = Parallel(n_jobs=settings.jobs, backend=backend, return_as="list")
    errors: dict[str, str] = {}

    def share(n_jobs: int) -> int | None:
        """How many of a phase's jobs run at once on this machine (None: a cluster decides)."""
        return min(settings.jobs, n_jobs) if backend in (None, "loky") else None

    n_cells = share(len(matrix.cells))
    # a cell is scored as soon as the last model it needs exists, so a killed run keeps the cards of every
    # finished cell. With loky (this machine's processes) that is done here, between results; with threading,
    # Dask or Ray the workers score, after the attacks. A card's attack wall_s may include the moments this
    # process scored beside it.
    inline = backend in (None, "loky")
    waiting: dict[str, list[int]] = {}  # job key -> the cells that still wait for it (inline scoring only)
    missing: list[set[str]] = []  # per cell, the job keys it still waits for
    for i, cell in enumerate(matrix.cells if inline else ()):
        missing.append({cell.victim_key, *cell.attack_keys, *cell.null_keys})
        for k in missing[-1]:
            waiting.setdefault(k, []).append(i)

    def upstream(cell: Cell) -> str | None:
        for k in (cell.victim_key, *cell.attack_keys, *cell.null_keys):
            if k in errors:
                return errors[k]
        return None

    def record(i: int, status: str, rebuilt: list) -> None:
        summary.rebuilt += rebuilt
        cell = matrix.cells[i]
        if status.startswith("unwritable:"):
            raise WmbenchError(f"cannot write the card {cell.card}: {status.split(':', 1)[1].strip()}; free space "
                               f"or pass a writable --results (finished cards are kept; re-run to do the rest)")
        summary.counts[status] += 1
        summary.cards.append(cell.card)
        if status == "error":
            summary.errors.append(f"{cell.defense.label} x {cell.attack.label} seed {cell.seed}: "
                                  f"{read_card(cell.card)['error']}")
        bar.update(1)

    def score_here(cells: list[int]) -> None:
        threads = torch.get_num_threads()
        try:  # the scoring job's thread share, as a worker would have it; the caller's own setting comes back
            for i in cells:
                cell = matrix.cells[i]
                _, status, rebuilt = keyed(i, n_cells, guard_cell, cell, settings, upstream(cell))
                record(i, status, rebuilt)
        finally:
            torch.set_num_threads(threads)

    def done(key: str) -> None:
        """``key``'s job has ended (built, loaded or failed): score the cells that waited only for it."""
        ready = []
        for i in waiting.pop(key, ()):
            missing[i].discard(key)
            if not missing[i]:
                ready.append(i)
        if ready:
            score_here(ready)

    def run_phase(jobs: dict[str, Any], label: str, phase: str) -> None:
        if not jobs:
            return
        bar.set_postfix_str(label)
        keys = sorted(jobs, key=lambda k: -costs.get(k, math.inf))  # stable: plan order among equals
        calls = (delayed(keyed)(k, share(len(keys)), guard, jobs[k], settings) for k in keys)
        results = parallel(calls)
        try:
            for key, (err, built), rebuilt in results:
                summary.rebuilt += rebuilt
                if err is not None:
                    errors[key] = f"{label} failed: {err}"  # the traceback rides along to the cells' cards
                elif built:
                    summary.built[phase] += 1
                else:
                    summary.loaded[phase] += 1
                bar.update(1)
                done(key)
        finally:  # a card that cannot be written stops the run here: the jobs still queued are cancelled
            close = getattr(results, "close", None)
            if close is not None:
                close()

    try:
        run_phase(matrix.victims, "training victims", "victims")
        # chain steps run in order of depth; an attack on a model that failed fails the same way without running
        for depth in sorted({job.depth for job in matrix.attacks.values()}):
            attack_jobs = {}
            for k, job in matrix.attacks.items():
                if job.depth != depth:
                    continue
                if job.parent_key in errors:
                    errors[k] = errors[job.parent_key]
                    bar.update(1)
                    done(k)
                else:
                    attack_jobs[k] = job
            run_phase(attack_jobs, "attacking" if depth == 0 else f"attacking (chain step {depth + 1})", "attacks")
        if not inline:  # every cell was scored above as its last model arrived, or is scored here by the workers
            bar.set_postfix_str("scoring")
            calls = (delayed(keyed)(i, n_cells, guard_cell, c, settings, upstream(c))
                     for i, c in enumerate(matrix.cells))
            for i, status, rebuilt in parallel(calls):
                record(i, status, rebuilt)
    finally:
        bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def run(settings: Settings, defenses: str | list[Spec], attacks: str | list[Spec], seeds: list[int], *,
        force: bool = False, backend: str = "loky", scheduler: str | None = None, progress: bool = True,
        say: Callable[[str], None] | None = None) -> RunSummary:
    """Fill the cells of ``defenses`` x ``attacks`` x ``seeds`` that have no card yet (all of them with
    ``force``) and return what happened. ``defenses``/``attacks`` are comma-separated names, wildcards and
    specs (``'content[rate=0.1]'``, ``'soft_label>prune'``) or parsed specs; ``say`` receives the notes a
    user should see before the work starts (e.g. ``--jobs`` lowered)."""
    check_backend(backend, scheduler)
    settings = cluster_settings(settings, backend)
    matrix = plan_matrix(settings, defenses, attacks, list(seeds), force=force)
    settings, note = cap_jobs(settings, matrix, backend)
    if note and say is not None:
        say(note)
    preflight(settings)
    costs = None
    if settings.jobs > 1:  # what the same jobs took at the board's usual seeds orders the work (longest first)
        reference = plan_matrix(settings, defenses, attacks, sorted({*seeds, *COST_SEEDS}), force=True)
        costs = job_costs(matrix, reference, lambda key: entry_meta(settings.cache_dir, key),
                          device_name(settings.device))
    with use_backend(backend, jobs=settings.jobs, scheduler=scheduler) as joblib_backend:
        return execute(settings, matrix, progress=progress, backend=joblib_backend, costs=costs)

"""The runner: expand the defense x attack x seed matrix, build the model DAG once, score every cell.

Work runs in three phases of independent joblib jobs, each artifact built at most once per run and
stored in the content-addressed cache:

1. victims (one per defense spec and seed) and independent clean null models (``none`` at other seeds);
2. attacks on those models (one per attack spec and parent model);
3. scoring: one card per cell, written atomically.

A job that raises becomes an error card for every cell that depends on it; the sweep goes on. Re-running
skips cells whose card exists with the same run id, and rebuilds nothing that is cached, so a killed run
loses at most the jobs in flight.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import platform
import subprocess
import sys
import sysconfig
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

import bench
from bench.api import Context, Outcome, Protected, Target, derive_seed
from bench.atomic import sweep_temporaries
from bench.backends import cluster_threads
from bench.cache import Cache, artifact_key
from bench.config import config_to_dict
from bench.errors import ConfigError, WmbenchError
from bench.oracle import Oracle
from bench.profiles import Profile, get_profile
from bench.registry import ATTACKS, DEFENSES, load_plugins
from bench.results import SCHEMA_VERSION, card_path, read_card, write_card
from bench.score import names_the_watermark, score_models
from bench.spec import Chain, Spec, expand_chains, expand_specs
from bench.train import resolve_device, set_threads

__all__ = ["Plan", "RunSummary", "plan_run", "execute"]

NULL_DEFENSE = Spec("none")


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to run a job (picklable)."""

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


# ---------------------------------------------------------------------------------------------------
# worker side


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


def _setup(plan: Plan) -> Cache:
    """Per-process setup: plugins, thread share, the cache handle, the parent watch. Idempotent."""
    _die_with_parent()
    if _WORKER.get("plan") != plan:
        _keep_worker_alive()
        load_plugins(plan.plugins)
        _WORKER["cluster_threads"] = cluster_threads()  # a Dask or Ray worker knows its share of its host
        if _WORKER["cluster_threads"] is not None:
            torch.set_num_threads(_WORKER["cluster_threads"])
        _WORKER["plan"] = plan
        _WORKER["cache"] = Cache(plan.cache_dir)
    if _WORKER["cluster_threads"] is None:  # a phase with fewer jobs than --jobs gives each job more cores
        set_threads(_WORKER.get("share") or plan.jobs)
    return _WORKER["cache"]


def plan_task(plan: Plan, seed: int):
    """The task (splits of the plan's data set at its profile's sizes) that every job of ``seed`` uses."""
    from bench.data import make_task

    p = plan.profile
    return make_task(plan.dataset, seed=seed, arch=plan.arch, victim_train=p.victim_train,
                     attacker_pool=p.attacker_pool, test=p.test, root=plan.data_root)


def _ctx(plan: Plan, seed: int) -> Context:
    return Context(device=resolve_device(plan.device), seed=seed, profile=plan.profile, verbose=plan.verbose)


def _to_cpu(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.cpu()
    return obj


def _guard(fn, *args) -> tuple[str | None, bool]:
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
    project package (attacks, defenses, bench: wherever wmbench is installed), else any frame outside
    torch, numpy and the standard library."""
    roots = {str(Path(bench.__file__).resolve().parent.parent / pkg) + os.sep
             for pkg in ("attacks", "defenses", "bench", "leaderboard")}
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


def _split_error(error: str) -> tuple[str, str | None]:
    """(message, traceback or None) of a job's error text."""
    message, _, trace = error.partition(TRACE)
    return message, trace or None


@dataclass(frozen=True)
class VictimJob:
    key: str
    defense: Spec
    seed: int  # task seed (split)
    train_seed: int  # seed of the training run (differs for null models)

    def __call__(self, plan: Plan) -> bool:
        cache = _setup(plan)
        if cache.has(self.key) and cache.load(self.key) is not None:
            return False
        task = plan_task(plan, self.seed)
        defense = DEFENSES.create(self.defense.name, **self.defense.config)
        ctx = _ctx(plan, self.train_seed)

        def build() -> Protected:
            prot = defense.embed(task, ctx)
            prot.model = _to_cpu(prot.model)
            return prot

        return cache.build_or_load(self.key, build, meta={"defense": self.defense.label,
                                                          "seed": self.train_seed})[2]  # False: another run built it


def make_target(protected: Protected, attack, task, device: torch.device | str = "cpu") -> Target:
    """What ``attack`` may see of a protected model: an oracle for every kind, a white-box *copy* for
    all kinds but extraction, the attacker's pool; never the watermark secret."""
    model = protected.model.to(device).eval()
    oracle = Oracle(model, num_classes=task.num_classes, serve=protected.serve, **attack.oracle_options())
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

    def __call__(self, plan: Plan) -> bool:
        cache = _setup(plan)
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
        task = plan_task(plan, self.seed)
        attack = ATTACKS.create(self.attack.name, **self.attack.config)
        ctx = _ctx(plan, self.attack_seed)

        def build():
            target = make_target(protected, attack, task, ctx.device)
            out = attack(target, ctx)
            out.model = _to_cpu(out.model)
            if target.oracle is not None:
                out.queries = max(out.queries, target.oracle.queries)
            return out

        return cache.build_or_load(self.key, build, meta={"attack": self.attack.label, "parent": self.parent_key})[2]


@dataclass(frozen=True)
class Cell:
    defense: Spec
    attack: Chain
    seed: int
    run_id: str
    victim_key: str
    attack_keys: tuple[str, ...]  # one per chain step; empty: n/a cell
    null_keys: tuple[str, ...]  # clean null models and the attack's copies of them
    card: str
    config: dict = field(hash=False, compare=False, default_factory=dict)

    def __call__(self, plan: Plan, upstream_error: str | None) -> str:
        cache = _setup(plan)
        base = self._base_card(plan)
        if upstream_error is not None:
            message, trace = _split_error(upstream_error)
            base.update(status="error", error=message)
            if trace:
                base["extras"]["traceback"] = trace
            write_card(self.card, base)
            return "error"
        if not self.attack_keys:
            base.update(status="n/a", error=None)
            write_card(self.card, base)
            return "n/a"
        task = plan_task(plan, self.seed)
        protected, victim_meta = _must_load(cache, self.victim_key, "victim")
        steps = [_must_load(cache, k, "attack result") for k in self.attack_keys]
        outcome = steps[-1][0]
        nulls = [_must_load(cache, k, "null model")[0] for k in self.null_keys]
        null_models = [n.model for n in nulls if n.model is not None]
        device = resolve_device(plan.device)
        scores = score_models(protected=protected, suspect=outcome.model, x_test=task.x_test,
                              y_test=task.y_test, null_models=null_models if protected.has_watermark else [],
                              device=device)
        extras = scores.pop("extras")
        extras.update(outcome.extras)
        extras.update(victim_wall_s=victim_meta.get("wall_s"), victim_info=protected.info,
                      null_models=len(null_models))
        # the numbers are bit-reproducible for the same torch thread count per job (--jobs N on C cores gives
        # each job C // N): what the victim and each attack step were trained with
        threads = [m.get("torch_threads") for m in (victim_meta, *(meta for _, meta in steps))]
        if any(t is not None for t in threads):
            extras["torch_threads"] = threads
        # a detection cell also ran the detector on the independent clean models: its false alarms
        null_verdicts = [n for n in nulls if isinstance(n, Outcome) and n.detected is not None]
        if null_verdicts:
            extras["null_detected"] = [bool(n.detected) for n in null_verdicts]
            extras["null_detected_target"] = [n.detected_target for n in null_verdicts]
        found = names_the_watermark(protected, outcome.detected, outcome.detected_target, outcome.detected_pair)
        if found is not None:
            extras["detection_correct"] = found
        if outcome.detected_pair is not None:
            extras["detected_pair"] = list(outcome.detected_pair)
        if outcome.score is not None:
            extras["detection_score"] = outcome.score
        if len(steps) > 1:
            extras["chain"] = [{"attack": a.label, "queries": o.queries, "epochs": o.epochs, "wall_s": m["wall_s"]}
                               for a, (o, m) in zip(self.attack.steps, steps, strict=True)]
        base.update(scores)
        base.update(
            status="ok", error=None, detected=outcome.detected, detected_target=outcome.detected_target,
            queries=sum(int(o.queries) for o, _ in steps), epochs=sum(int(o.epochs) for o, _ in steps),
            wall_s=float(sum(m["wall_s"] for _, m in steps)),
            peak_mem_mb=max((m["peak_mem_mb"] for _, m in steps if m.get("peak_mem_mb") is not None), default=None),
            extras=_jsonable(extras), split=task.split,
        )
        write_card(self.card, base)
        return "ok"

    def _base_card(self, plan: Plan) -> dict:
        c = self.config
        return {
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "dataset": plan.dataset,
            "arch": plan.arch, "defense": self.defense.label, "defense_version": c["defense_version"],
            "defense_config": c["defense_config"], "has_watermark": c["has_watermark"],
            "attack": self.attack.label, "attack_version": c["attack_version"], "attack_kind": c["attack_kind"],
            "attack_config": c["attack_config"], "seed": self.seed, "profile": plan.profile.name,
            "profile_config": plan.profile.as_dict(), "split": {}, "status": "error", "error": None,
            "clean_acc_victim": None, "clean_acc_suspect": None, "fidelity": None, "wsr_victim": None,
            "wsr_suspect": None, "wsr_null": None, "n_verify": None, "threshold": None, "p_value": None,
            "retained": None, "removed_cheaply": None, "detected": None, "detected_target": None,
            "queries": None, "epochs": None, "wall_s": None, "peak_mem_mb": None, "extras": {},
            "versions": _versions(plan.plugins), "git_sha": plan.git_sha, "device": _device_name(plan.device),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _must_load(cache: Cache, key: str, what: str):
    found = cache.load(key)
    if found is None:
        raise WmbenchError(f"the {what} {key[:8]} is missing from the cache; re-run to rebuild it")
    return found


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return str(obj)


def _versions(plugins: tuple[str, ...] = ()) -> dict:
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


def _device_name(spec: str) -> str:
    dev = resolve_device(spec)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}x{os.cpu_count()}"


def git_sha(path: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------------
# planning (parent process)


@dataclass
class Matrix:
    victims: dict[str, VictimJob]
    attacks: dict[str, AttackJob]
    cells: list[Cell]
    skipped: list[Cell]


def _component_id(registry, spec: Spec) -> dict:
    comp = registry.create(spec.name, **spec.config)
    return {"name": spec.name, "version": type(comp).version, "config": config_to_dict(comp.config)}, comp


def plan_run(plan: Plan, defenses: str | list[Spec], attacks: str | list[Spec], seeds: list[int],
             force: bool = False) -> Matrix:
    load_plugins(plan.plugins)
    d_specs = expand_specs(defenses, DEFENSES) if isinstance(defenses, str) else defenses
    a_specs = expand_chains(attacks, ATTACKS) if isinstance(attacks, str) else attacks
    prof = plan.profile.as_dict()
    data_id = {"dataset": plan.dataset, "arch": plan.arch, "sizes": [prof["victim_train"], prof["attacker_pool"],
               prof["test"]]}
    victims: dict[str, VictimJob] = {}
    attacks_: dict[str, AttackJob] = {}
    cells: list[Cell] = []
    skipped: list[Cell] = []
    paths: dict[str, tuple[str, str]] = {}

    def victim(spec: Spec, seed: int, train_seed: int) -> tuple[str, Any]:
        ident, comp = _component_id(DEFENSES, spec)
        key = artifact_key(kind="victim", defense=ident, data=data_id, seed=seed, train_seed=train_seed,
                           profile=prof)
        victims.setdefault(key, VictimJob(key, spec, seed, train_seed))
        return key, comp

    def attacked(chain: Chain, parent_key: str, seed: int, *tag) -> tuple[str, ...]:
        """Keys of every step of ``chain`` applied to ``parent_key``. A step's seed depends only on the chain
        prefix, so ``soft_label``, ``soft_label>prune`` and ``soft_label>fine_tune`` share one extraction."""
        keys = []
        for depth, spec in enumerate(chain.steps):
            ident, _ = _component_id(ATTACKS, spec)
            prefix = ">".join(s.label for s in chain.steps[: depth + 1])
            attack_seed = derive_seed(seed, "attack", prefix, *tag)
            key = artifact_key(kind="attack", attack=ident, parent=parent_key, seed=attack_seed, profile=prof)
            attacks_.setdefault(key, AttackJob(key, spec, parent_key, seed, attack_seed, depth))
            keys.append(key)
            parent_key = key
        return tuple(keys)

    for seed in seeds:
        null_parents = [victim(NULL_DEFENSE, seed, derive_seed(seed, "null", i))[0]
                        for i in range(plan.profile.null_models)]
        for d in d_specs:
            v_key, d_comp = victim(d, seed, seed)
            for a in a_specs:
                a_ident = [_component_id(ATTACKS, step)[0] for step in a.steps]
                kind = chain_kind(a)
                d_ident, _ = _component_id(DEFENSES, d)
                has_wm = d.name != "none" and not getattr(d_comp, "no_watermark", False)
                single = len(a.steps) == 1
                config = {"defense_version": d_ident["version"], "defense_config": d_ident["config"],
                          "has_watermark": has_wm,
                          "attack_version": "+".join(i["version"] for i in a_ident),
                          "attack_kind": kind,
                          "attack_config": a_ident[0]["config"] if single else {
                              step.label: i["config"] for step, i in zip(a.steps, a_ident, strict=True)}}
                run_id = artifact_key(kind="cell", defense=d_ident, attack=a_ident, data=data_id, seed=seed,
                                      profile=prof)
                path = str(card_path(plan.results_dir, plan.dataset, plan.arch, d.label, a.label, seed))
                owner = paths.setdefault(path, (d.label, a.label))
                if owner != (d.label, a.label):
                    raise ConfigError(f"{owner[0]} x {owner[1]} and {d.label} x {a.label} would share the card "
                                      f"{path}; rename a value (a '_' where the other has ';')")
                n_a = kind == "detection" and not has_wm
                if not force and _card_done(path, run_id):
                    skipped.append(Cell(d, a, seed, run_id, v_key, (), (), path, config))
                    continue
                a_keys = () if n_a else attacked(a, v_key, seed)
                null_keys: tuple[str, ...] = ()
                if has_wm and not n_a:
                    nk = [attacked(a, pk, seed, "null", i)[-1] for i, pk in enumerate(null_parents)]
                    null_keys = tuple(null_parents) + tuple(nk)
                cells.append(Cell(d, a, seed, run_id, v_key, a_keys, null_keys, path, config))
    # only build what the pending cells need
    needed = {c.victim_key for c in cells} | {k for c in cells for k in c.null_keys}
    needed_attacks = {k for c in cells for k in c.attack_keys} | {k for c in cells for k in c.null_keys}
    # a needed chain step needs every step before it
    for key in sorted(needed_attacks):
        while key in attacks_ and attacks_[key].parent_key in attacks_:
            key = attacks_[key].parent_key
            needed_attacks.add(key)
    attacks_ = {k: a for k, a in attacks_.items() if k in needed_attacks}
    victims = {k: v for k, v in victims.items() if k in needed or any(a.parent_key == k for a in attacks_.values())}
    return Matrix(victims, attacks_, cells, skipped)


def cap_jobs(plan: Plan, matrix: Matrix, backend: str | None) -> tuple[Plan, str | None]:
    """``plan`` with ``jobs`` no larger than the jobs any phase of ``matrix`` can run at once and, on this
    machine (not a cluster backend), than its cores; and a line saying so when it was lowered."""
    widest = max([len(matrix.victims), len(matrix.cells),
                  *Counter(job.depth for job in matrix.attacks.values()).values(), 1])
    limit, why = widest, f"{widest} job{'s' if widest != 1 else ''} can run at once"
    cores = os.cpu_count() or 1
    if backend in (None, "loky", "threading") and cores < limit:
        limit, why = cores, f"this machine has {cores} core{'s' if cores != 1 else ''}"
    if plan.jobs <= limit:
        return plan, None
    return replace(plan, jobs=limit), f"--jobs {plan.jobs} lowered to {limit}: {why}"


def chain_kind(chain: Chain) -> str:
    """The threat class of a column: detection if it ends in detection; extraction if it starts with one
    (the attacker never had white-box access to the victim); otherwise the last step's kind."""
    kinds = [ATTACKS.get(s.name).kind for s in chain.steps]
    if kinds[-1] == "detection":
        return "detection"
    if kinds[0] == "extraction":
        return "extraction"
    return kinds[-1]


def _card_done(path: str, run_id: str) -> bool:
    if not os.path.exists(path):
        return False
    try:
        card = read_card(path)
    except WmbenchError:
        return False  # a corrupt card is re-run
    return card["run_id"] == run_id and card["status"] != "error"


# ---------------------------------------------------------------------------------------------------
# execution


def _check_dir(path: str, what: str, flag: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WmbenchError(f"cannot create {what} {path!r}: {exc.strerror}; pass a writable {flag}") from None
    if not os.access(path, os.W_OK):
        raise WmbenchError(f"{what} {path!r} is not writable; pass a writable {flag}")


def execute(plan: Plan, matrix: Matrix, *, progress: bool = True, backend: str | None = None) -> RunSummary:
    """Run every pending job of ``matrix`` with joblib; never stop on one failure."""
    _check_dir(plan.results_dir, "results directory", "--results")
    _check_dir(plan.cache_dir, "cache directory", "--cache-dir")
    sweep_temporaries(plan.results_dir)  # half-written cards of writers that are gone
    t0 = time.perf_counter()
    summary = RunSummary(cells=len(matrix.cells) + len(matrix.skipped))
    summary.counts["skipped"] = len(matrix.skipped)
    total = len(matrix.victims) + len(matrix.attacks) + len(matrix.cells)
    bar = tqdm(total=total, desc="wmbench", unit="job", disable=not progress, dynamic_ncols=True)
    try:  # results as they finish; joblib's dask backend supports that too
        parallel = Parallel(n_jobs=plan.jobs, backend=backend, return_as="generator_unordered")
    except ValueError:  # Ray's joblib backend returns no generator: each phase's results come at its end
        parallel = Parallel(n_jobs=plan.jobs, backend=backend, return_as="list")
    errors: dict[str, str] = {}

    def share(n_jobs: int) -> int | None:
        """How many of a phase's jobs run at once on this machine (None: a cluster decides)."""
        return min(plan.jobs, n_jobs) if backend in (None, "loky") else None

    def run_phase(jobs: dict[str, Any], label: str, phase: str) -> None:
        if not jobs:
            return
        bar.set_postfix_str(label)
        keys = list(jobs)
        calls = (delayed(_keyed)(k, share(len(keys)), _guard, jobs[k], plan) for k in keys)
        for key, (err, built), rebuilt in parallel(calls):
            summary.rebuilt += rebuilt
            if err is not None:
                errors[key] = f"{label} failed: {err}"  # the traceback rides along to the cells' cards
            elif built:
                summary.built[phase] += 1
            else:
                summary.loaded[phase] += 1
            bar.update(1)

    run_phase(matrix.victims, "training victims", "victims")
    # chain steps run in order of depth; an attack on a model that failed fails the same way
    for depth in sorted({job.depth for job in matrix.attacks.values()}):
        attack_jobs = {}
        for k, job in matrix.attacks.items():
            if job.depth != depth:
                continue
            if job.parent_key in errors:
                errors[k] = errors[job.parent_key]
                bar.update(1)
            else:
                attack_jobs[k] = job
        run_phase(attack_jobs, "attacking" if depth == 0 else f"attacking (chain step {depth + 1})", "attacks")

    def upstream(cell: Cell) -> str | None:
        for k in (cell.victim_key, *cell.attack_keys, *cell.null_keys):
            if k in errors:
                return errors[k]
        return None

    bar.set_postfix_str("scoring")
    n_cells = share(len(matrix.cells))
    calls = (delayed(_keyed)(i, n_cells, _guard_cell, c, plan, upstream(c)) for i, c in enumerate(matrix.cells))
    for i, status, rebuilt in parallel(calls):
        summary.rebuilt += rebuilt
        cell = matrix.cells[i]
        if status.startswith("unwritable:"):
            bar.close()
            raise WmbenchError(f"cannot write the card {cell.card}: {status.split(':', 1)[1].strip()}; free space "
                               f"or pass a writable --results (finished cards are kept; re-run to do the rest)")
        summary.counts[status] += 1
        summary.cards.append(cell.card)
        if status == "error":
            summary.errors.append(f"{cell.defense.label} x {cell.attack.label} seed {cell.seed}: "
                                  f"{read_card(cell.card)['error']}")
        bar.update(1)
    bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def _keyed(key, share: int | None, fn, *args):
    """Run ``fn(*args)`` as one of ``share`` concurrent jobs (its thread share; None = one per --jobs); returns
    (key, result, the cache entries this worker had to rebuild meanwhile, with the reason)."""
    _WORKER["share"] = share
    out = fn(*args)
    cache = _WORKER.get("cache")
    return key, out, cache.stats.drain_rebuilt() if cache is not None else []


def _guard_cell(cell: Cell, plan: Plan, upstream_error: str | None) -> str:
    err, status = _guard(cell, plan, upstream_error)
    if err is None:
        return status
    message = _split_error(err)[0]
    if message.startswith(("OSError", "PermissionError")) and str(Path(cell.card).parent.parent) in message:
        return f"unwritable:{message}"  # writing the card failed: the parent stops the run with the cause
    try:  # scoring itself failed: still leave an error card behind
        base = cell._base_card(plan)
        message, trace = _split_error(err)
        base.update(status="error", error=f"scoring failed: {message}")
        if trace:
            base["extras"]["traceback"] = trace
        write_card(cell.card, base)
    except OSError as exc:  # read-only, full, gone
        return f"unwritable:{type(exc).__name__}: {exc.strerror or exc}"
    return "error"


def make_plan(*, dataset: str = "fashion-mnist", arch: str | None = None, profile: str = "quick",
              results_dir: str = "results", cache_dir: str = ".wmbench-cache", device: str = "auto",
              data_root: str | None = None, jobs: int = 1, plugins: tuple[str, ...] = (),
              verbose: bool = False) -> Plan:
    from bench.data import check_dataset, default_arch
    from bench.errors import ConfigError
    from bench.models import create_model  # noqa: F401  (fail early on import problems)

    check_dataset(dataset)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        raise ConfigError(f"--data-root {str(data_root)[:80]!r} is not a folder; create it (data sets are looked "
                          "for and downloaded there) or leave it out to use ./data and the system copies")
    resolve_device(device)
    return Plan(dataset=dataset, arch=arch or default_arch(dataset), profile=get_profile(profile),
                results_dir=str(results_dir), cache_dir=str(cache_dir), device=device, data_root=data_root,
                jobs=jobs, plugins=tuple(str(Path(p).resolve()) for p in plugins), verbose=verbose,
                git_sha=git_sha(Path(__file__).resolve().parent.parent))


def preflight(plan: Plan) -> None:
    """Load the data and build one model up front, so a missing data set or a bad architecture is one
    clear error instead of an error card in every cell."""
    from bench.models import model_for_task

    model_for_task(plan_task(plan, 0))


__all__ += ["cap_jobs", "preflight", "make_plan", "make_target", "git_sha", "Cell", "Matrix", "plan_task"]

"""Planning, in the parent process: expand the defense x attack x seed matrix into the jobs it needs
(:class:`Matrix`: victims and independent null models, attack steps, cells), each artifact keyed by what
determines it so that it is built once; cells whose card is done are skipped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bench.api import derive_seed
from bench.cache import artifact_key, remembered_key
from bench.cells import Cell
from bench.config import config_to_dict
from bench.errors import ConfigError, WmbenchError
from bench.jobs import AttackJob, VictimJob, pool_answers_parts, verify_parts, victim_eval_parts
from bench.registry import ATTACKS, DEFENSES, load_plugins
from bench.results import card_path, read_card
from bench.settings import Settings
from bench.spec import Chain, Spec, expand_chains, expand_specs

__all__ = ["Matrix", "Estimate", "plan_matrix", "cap_jobs", "chain_kind", "describe", "estimate", "estimate_text",
           "job_costs", "NULL_DEFENSE"]

NULL_DEFENSE = Spec("none")


@dataclass
class Matrix:
    victims: dict[str, VictimJob]
    attacks: dict[str, AttackJob]
    cells: list[Cell]
    skipped: list[Cell]


def _component_id(registry, spec: Spec) -> dict:
    comp = registry.create(spec.name, **spec.config)
    return {"name": spec.name, "version": type(comp).version, "config": config_to_dict(comp.config)}, comp


def plan_matrix(settings: Settings, defenses: str | list[Spec], attacks: str | list[Spec], seeds: list[int],
             force: bool = False) -> Matrix:
    load_plugins(settings.plugins)
    d_specs = expand_specs(defenses, DEFENSES) if isinstance(defenses, str) else defenses
    a_specs = expand_chains(attacks, ATTACKS) if isinstance(attacks, str) else attacks
    prof = settings.profile.as_dict()
    data_id = {"dataset": settings.dataset, "arch": settings.arch,
               "sizes": [prof["victim_train"], prof["attacker_pool"], prof["test"]]}
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
                        for i in range(settings.profile.null_models)]
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
                path = str(card_path(settings.results_dir, settings.dataset, settings.arch, d.label, a.label, seed,
                                     settings.profile.precision))
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


def cap_jobs(settings: Settings, matrix: Matrix, backend: str | None) -> tuple[Settings, str | None]:
    """``settings`` with ``jobs`` no larger than the jobs any phase of ``matrix`` can run at once and, on this
    machine (not a cluster backend), than its cores; and a line saying so when it was lowered."""
    widest = max([len(matrix.victims), len(matrix.cells),
                  *Counter(job.depth for job in matrix.attacks.values()).values(), 1])
    limit, why = widest, f"{widest} job{'s' if widest != 1 else ''} can run at once"
    cores = os.cpu_count() or 1
    if backend in (None, "loky", "threading") and cores < limit:
        limit, why = cores, f"this machine has {cores} core{'s' if cores != 1 else ''}"
    if settings.jobs <= limit:
        return settings, None
    return replace(settings, jobs=limit), f"--jobs {settings.jobs} lowered to {limit}: {why}"


def describe(matrix: Matrix, has: Callable[[str], bool]) -> list[str]:
    """What running ``matrix`` would do, as lines for a person (``wmbench run --dry-run``): the cells to score,
    the models to train and those already in the cache (``has(key)``), and the attack steps still to run by
    attack (a chain's steps count under their own attack), most first."""
    victims = [k for k in matrix.victims if not has(k)]
    attacks = [job for k, job in matrix.attacks.items() if not has(k)]
    lines = [f"{len(matrix.cells)} cell{'s' if len(matrix.cells) != 1 else ''} to run, "
             f"{len(matrix.skipped)} already done",
             f"models to train: {len(victims)} victims and null models ({len(matrix.victims) - len(victims)} "
             f"cached), {len(attacks)} attack steps ({len(matrix.attacks) - len(attacks)} cached)"]
    by_step = Counter(job.attack.label for job in attacks)
    if by_step:
        lines.append("attack steps to run: " + ", ".join(f"{label} {n}" for label, n in
                                                           sorted(by_step.items(), key=lambda kv: (-kv[1], kv[0]))))
    # each of these is computed once per distinct input and kept in the cache (docs/performance.md)
    tables = {remembered_key(pool_answers_parts(job.parent_key, job.seed)) for job in attacks
              if ATTACKS.get(job.attack.name).kind == "extraction"}
    scored = [c for c in matrix.cells if c.attack_keys]
    evals = {remembered_key(victim_eval_parts(c.victim_key, c.seed)) for c in scored}
    verifies = {remembered_key(verify_parts(c.victim_key, k)) for c in scored for k in c.null_keys}
    todo = [sum(not has(k) for k in group) for group in (tables, evals, verifies)]
    lines.append(f"oracle passes over the attacker's pool: at most {todo[0]} (one per attacked model, shared by "
                 "every extraction on it; queries an attack makes of its own images come on top)")
    lines.append(f"evaluations: {todo[1]} victims on the test set ({len(evals) - todo[1]} cached), {todo[2]} "
                 f"verifications of a watermark on a null model ({len(verifies) - todo[2]} cached), "
                 f"{len(scored)} suspects scored (one per cell)")
    return lines


def _signatures(matrix: Matrix) -> dict[str, tuple]:
    """A seed-free name of every job of ``matrix``: a victim by its scheme and whether it is a null model, an
    attack step by its victim's name and the chain up to that step; the same job at another seed has the
    same name."""
    names: dict[str, tuple] = {k: ("victim", job.defense.label, job.train_seed == job.seed)
                               for k, job in matrix.victims.items()}

    def name(key: str) -> tuple | None:
        if key not in names and key in matrix.attacks:
            job = matrix.attacks[key]
            parent = name(job.parent_key)
            names[key] = None if parent is None else (*parent, job.attack.label)
        return names.get(key)

    for key in matrix.attacks:
        name(key)
    return {k: v for k, v in names.items() if v is not None}


@dataclass(frozen=True)
class Estimate:
    """What the models still to train took when the same jobs ran at other seeds: the summed single-job wall
    seconds of the ``timed`` ones (each the mean of its recorded runs), and how many were never timed."""

    seconds: float
    timed: int
    untimed: int


def job_costs(matrix: Matrix, reference: Matrix, meta: Callable[[str], dict | None],
              device: str | None = None) -> dict[str, float]:
    """The expected CPU seconds of the jobs of ``matrix`` that ran before at other seeds: the mean recorded
    ``cpu_s`` (``meta(key)``) of the jobs of ``reference`` with the same seed-free name (:func:`_signatures`),
    or their ``wall_s`` times their thread count where an entry recorded no CPU time (made before it was
    recorded); on another device than ``device`` left out. A job never timed is absent. The runner starts the
    longest first, so that the workers of a phase finish together."""
    recorded: dict[tuple, list[float]] = {}
    for key, sig in _signatures(reference).items():
        found = meta(key) or {}
        if device is not None and found.get("device") not in (None, device):
            continue
        cpu, wall, threads = found.get("cpu_s"), found.get("wall_s"), found.get("torch_threads") or 1
        if isinstance(cpu, (int, float)):
            recorded.setdefault(sig, []).append(float(cpu))
        elif isinstance(wall, (int, float)):
            recorded.setdefault(sig, []).append(float(wall) * threads)
    return {key: sum(recorded[sig]) / len(recorded[sig]) for key, sig in _signatures(matrix).items()
            if sig in recorded}


def estimate(matrix: Matrix, reference: Matrix, has: Callable[[str], bool],
             meta: Callable[[str], dict | None], device: str | None = None) -> Estimate:
    """:class:`Estimate` of ``matrix``'s uncached jobs from the recorded ``wall_s`` (``meta(key)``) of the
    jobs of ``reference`` (the same run planned with ``force`` over more seeds) that have the same seed-free
    name (:func:`_signatures`). A record made on another device than ``device`` (a GPU's seconds say nothing
    of a CPU run's) is left out; one that names no device (made before entries recorded it) is used."""
    recorded: dict[tuple, list[float]] = {}
    for key, sig in _signatures(reference).items():
        found = meta(key) or {}
        wall = found.get("wall_s")
        if device is not None and found.get("device") not in (None, device):
            continue
        if isinstance(wall, (int, float)):
            recorded.setdefault(sig, []).append(float(wall))
    seconds, timed, untimed = 0.0, 0, 0
    for key, sig in _signatures(matrix).items():
        if has(key):
            continue
        if sig in recorded:
            seconds += sum(recorded[sig]) / len(recorded[sig])
            timed += 1
        else:
            untimed += 1
    return Estimate(seconds, timed, untimed)


def _duration(seconds: float) -> str:
    """``7.9 h``, ``12 min`` or ``40 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def estimate_text(est: Estimate, jobs: int) -> str:
    """``time: about 7.9 h of single-job wall time for 420 of the 456 models to train (...)``."""
    total = est.timed + est.untimed
    if not total:
        return "time: nothing to train"
    if not est.timed:
        return f"time: no estimate (none of the {total} models to train was timed at another seed)"
    text = (f"time: about {_duration(est.seconds)} of single-job wall time for {est.timed} of the {total} models "
            "to train (each the mean recorded time of the same job at other seeds")
    if jobs > 1:
        text += f"; about {_duration(est.seconds / jobs)} at --jobs {jobs} if the jobs keep every worker busy"
    return text + ")" + (f"; {est.untimed} never timed" if est.untimed else "")


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

"""Scoring into cards: a :class:`Cell` (defense x attack chain x seed) loads its victim, its suspect and the
null models from the cache, asks the scorer for the numbers and writes one card atomically; a cell whose
inputs failed, or whose scoring fails, still leaves an error card that says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.api import Outcome
from bench.jobs import guard, must_load, split_error, verify_parts, victim_eval_parts, worker_cache
from bench.results import new_card, write_card
from bench.score import evaluate_victim, names_the_watermark, score_models
from bench.settings import Settings, device_name, load_task, versions
from bench.spec import Chain, Spec
from bench.train import resolve_device

__all__ = ["Cell", "guard_cell"]


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

    def __call__(self, settings: Settings, upstream_error: str | None) -> str:
        cache = worker_cache(settings)
        base = self.new_card(settings)
        if upstream_error is not None:
            message, trace = split_error(upstream_error)
            base.update(status="error", error=message)
            if trace:
                base["extras"]["traceback"] = trace
            write_card(self.card, base)
            return "error"
        if not self.attack_keys:
            base.update(status="n/a", error=None)
            write_card(self.card, base)
            return "n/a"
        task = load_task(settings, self.seed)
        protected, victim_meta = must_load(cache, self.victim_key, "victim")
        steps = [must_load(cache, k, "attack result") for k in self.attack_keys]
        outcome = steps[-1][0]
        loaded = [(k, must_load(cache, k, "null model")[0]) for k in self.null_keys]
        nulls = [n for _, n in loaded]
        null_models = [(k, n.model) for k, n in loaded if n.model is not None]
        device = resolve_device(settings.device)
        # what does not depend on this cell's attack is evaluated once per model and kept in the cache, so the
        # other cells of the victim (and of its null models) load it (docs/performance.md)
        victim_eval = cache.remember(victim_eval_parts(self.victim_key, self.seed),
                                     lambda: evaluate_victim(protected, task.x_test, device=device))
        null_verified = None
        if protected.has_watermark:
            null_verified = [cache.remember(verify_parts(self.victim_key, k),
                                            lambda m=m: list(protected.verify(m, device=device)))
                             for k, m in null_models]
        scores = score_models(protected=protected, suspect=outcome.model, x_test=task.x_test,
                              y_test=task.y_test, null_models=[m for _, m in null_models] if protected.has_watermark
                              else [], device=device, victim_eval=victim_eval, null_verified=null_verified)
        extras = scores.pop("extras")
        extras.update(outcome.extras)
        extras.update(victim_wall_s=victim_meta.get("wall_s"), victim_cpu_s=victim_meta.get("cpu_s"),
                      victim_info=protected.info, null_models=len(null_models))
        if victim_meta.get("device"):  # where the victim was trained (it may come from another run's cache)
            extras["victim_device"] = victim_meta["device"]
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
            extras["chain"] = [{"attack": a.label, "queries": o.queries, "epochs": o.epochs, "wall_s": m["wall_s"],
                                "cpu_s": m.get("cpu_s")} for a, (o, m) in zip(self.attack.steps, steps, strict=True)]
        cpu = [m.get("cpu_s") for _, m in steps]
        step_threads = [m.get("torch_threads") for _, m in steps if m.get("torch_threads") is not None]
        base.update(scores)
        base.update(
            status="ok", error=None, detected=outcome.detected, detected_target=outcome.detected_target,
            queries=sum(int(o.queries) for o, _ in steps), epochs=sum(int(o.epochs) for o, _ in steps),
            wall_s=float(sum(m["wall_s"] for _, m in steps)),
            cpu_s=float(sum(cpu)) if all(isinstance(v, (int, float)) for v in cpu) else None,
            threads=max(step_threads) if step_threads else None,
            peak_mem_mb=max((m["peak_mem_mb"] for _, m in steps if m.get("peak_mem_mb") is not None), default=None),
            extras=_jsonable(extras), split=task.split,
        )
        write_card(self.card, base)
        return "ok"

    def new_card(self, settings: Settings) -> dict:
        """This cell's card before scoring: its identity and provenance, every measurement empty."""
        c = self.config
        return new_card(
            run_id=self.run_id, dataset=settings.dataset, arch=settings.arch, defense=self.defense.label,
            defense_version=c["defense_version"], defense_config=c["defense_config"],
            has_watermark=c["has_watermark"], attack=self.attack.label, attack_version=c["attack_version"],
            attack_kind=c["attack_kind"], attack_config=c["attack_config"], seed=self.seed,
            profile=settings.profile.name, profile_config=settings.profile.as_dict(),
            versions=versions(settings.plugins), git_sha=settings.git_sha, device=device_name(settings.device),
            precision=settings.profile.precision,
        )


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


def guard_cell(cell: Cell, settings: Settings, upstream_error: str | None) -> str:
    err, status = guard(cell, settings, upstream_error)
    if err is None:
        return status
    message = split_error(err)[0]
    if message.startswith(("OSError", "PermissionError")) and str(Path(cell.card).parent.parent) in message:
        return f"unwritable:{message}"  # writing the card failed: the parent stops the run with the cause
    try:  # scoring itself failed: still leave an error card behind
        base = cell.new_card(settings)
        message, trace = split_error(err)
        base.update(status="error", error=f"scoring failed: {message}")
        if trace:
            base["extras"]["traceback"] = trace
        write_card(cell.card, base)
    except OSError as exc:  # read-only, full, gone
        return f"unwritable:{type(exc).__name__}: {exc.strerror or exc}"
    return "error"

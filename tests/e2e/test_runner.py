"""The runner end to end on the synthetic data set: cards, caching, failures, drop-in attacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.planning import plan_matrix
from bench.registry import ATTACKS
from bench.results import load_results, read_card
from bench.runner import execute
from bench.settings import make_settings

REPO = Path(__file__).resolve().parents[2]
SLICE_DEFENSES = "none,content[rate=0.1]"


def _plan(tmp_path, **kw):
    return make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "results"),
                     cache_dir=str(tmp_path / "cache"), device="cpu", **kw)


def _run(plan, defenses=SLICE_DEFENSES, attacks="identity,soft_label", seeds=(0,), **kw):
    return execute(plan, plan_matrix(plan, defenses, attacks, list(seeds), **kw), progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    plan = _plan(tmp)
    summary = _run(plan)
    return tmp, plan, summary


def test_slice_writes_valid_cards(finished):
    tmp, plan, summary = finished
    assert summary.counts["ok"] == 4 and summary.counts["error"] == 0
    df = load_results(tmp / "results")
    assert sorted(zip(df.defense, df.attack, strict=True)) == [
        ("content[rate=0.1]", "identity"), ("content[rate=0.1]", "soft_label"),
        ("none", "identity"), ("none", "soft_label")]
    content = df[(df.defense == "content[rate=0.1]") & (df.attack == "identity")].iloc[0]
    assert content.wsr_victim >= 0.9 and content.retained
    assert content.wsr_null <= 0.2 and content.p_value < 0.01
    none = df[(df.defense == "none") & (df.attack == "identity")].iloc[0]
    assert not none.has_watermark and content.has_watermark
    assert none.wsr_suspect is None or none.wsr_suspect != none.wsr_suspect  # null/NaN
    stolen = df[(df.defense == "none") & (df.attack == "soft_label")].iloc[0]
    assert stolen.queries == plan.profile.attacker_pool and stolen.epochs == plan.profile.attack_epochs
    assert stolen.wall_s > 0 and stolen.peak_mem_mb > 0 and stolen.fidelity > 0.5
    for p in df.path:
        card = read_card(p)
        assert card["split"]["victim_train"] == plan.profile.victim_train
        assert card["versions"]["torch"] and card["device"].startswith("cpu")
    # one victim per defense and one clean null model were trained; attacks ran on victims and nulls
    assert summary.built["victims"] == 3
    assert summary.built["attacks"] == 2 * 2 + 2


def test_rerun_skips_done_cells(finished):
    tmp, plan, _ = finished
    again = _run(plan)
    assert again.counts["skipped"] == 4 and sum(again.built.values()) == 0


def test_rerun_without_cards_trains_nothing(finished, tmp_path):
    tmp, plan, _ = finished
    fresh = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r2"),
                      cache_dir=plan.cache_dir, device="cpu")
    summary = _run(fresh)
    assert summary.counts["ok"] == 4 and sum(summary.built.values()) == 0
    a = load_results(tmp / "results").sort_values(["defense", "attack"]).reset_index(drop=True)
    b = load_results(tmp_path / "r2").sort_values(["defense", "attack"]).reset_index(drop=True)
    for col in ("clean_acc_victim", "clean_acc_suspect", "wsr_suspect", "fidelity", "run_id"):
        assert a[col].equals(b[col]), col


BOOM = '''
from dataclasses import dataclass
from bench.api import Attack
from bench.config import ComponentConfig
from bench.registry import register_attack

@register_attack("boom")
class Boom(Attack):
    """An attack that always raises (runner test)."""
    kind = "removal"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def run(self, target, ctx):
        raise RuntimeError("kaboom")
'''


def test_raising_attack_gives_error_card_and_sweep_goes_on(finished, tmp_path):
    _, plan, _ = finished
    plugin = tmp_path / "boom.py"
    plugin.write_text(BOOM)
    try:
        p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                      cache_dir=plan.cache_dir, device="cpu", plugins=(str(plugin),))
        summary = _run(p, attacks="identity,boom")
    finally:
        ATTACKS.unregister("boom")
    assert summary.counts["error"] == 2 and summary.counts["ok"] == 2
    df = load_results(tmp_path / "r")
    err = df[df.attack == "boom"]
    assert set(err.status) == {"error"}
    assert all("RuntimeError: kaboom" in e for e in err.error)
    assert sum(summary.built.values()) == 0  # victims and nulls came from the cache


DETECT = '''
from dataclasses import dataclass
from bench.api import Attack, Outcome
from bench.config import ComponentConfig
from bench.registry import register_attack

@register_attack("always_flag")
class AlwaysFlag(Attack):
    """A detector that flags every model as watermarked, target class 0 (runner test)."""
    kind = "detection"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def run(self, target, ctx):
        return Outcome(detected=True, detected_target=0, score=9.0)
'''


def test_detection_cells_and_na(finished, tmp_path):
    _, plan, _ = finished
    plugin = tmp_path / "det.py"
    plugin.write_text(DETECT)
    try:
        p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                      cache_dir=plan.cache_dir, device="cpu", plugins=(str(plugin),))
        summary = _run(p, attacks="always_flag")
    finally:
        ATTACKS.unregister("always_flag")
    assert summary.counts["n/a"] == 1 and summary.counts["ok"] == 1
    df = load_results(tmp_path / "r").set_index("defense")
    assert df.loc["none", "status"] == "n/a"
    assert bool(df.loc["content[rate=0.1]", "detected"]) and df.loc["content[rate=0.1]", "detected_target"] == 0
    # the detector also ran on the profile's independent clean models, and flagged them too: false alarms
    extras = df.loc["content[rate=0.1]", "extras"]
    assert extras["null_detected"] == [True] * plan.profile.null_models
    assert extras["null_detected_target"] == [0] * plan.profile.null_models
    assert extras["detection_correct"] is True  # content's target is class 0, the class it names


def test_parallel_jobs_give_same_cards(finished, tmp_path):
    tmp, plan, _ = finished
    p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                  cache_dir=str(tmp_path / "c"), device="cpu", jobs=2)
    summary = _run(p, defenses="none", attacks="identity,soft_label")
    assert summary.counts["ok"] == 2
    a = load_results(tmp / "results").set_index(["defense", "attack"])
    b = load_results(tmp_path / "r").set_index(["defense", "attack"])
    for attack in ("identity", "soft_label"):
        assert a.loc[("none", attack), "clean_acc_suspect"] == b.loc[("none", attack), "clean_acc_suspect"]


EXAMPLE = '''"""Example removal attack dropped in as one file (test fixture)."""

from dataclasses import dataclass

from bench.api import Attack, Context, Outcome, Target
from bench.config import ComponentConfig, param
from bench.registry import register_attack
from bench.train import fit


@register_attack("example")
class Example(Attack):
    """Fine-tune the white-box copy on the attacker's labelled pool for a few epochs."""

    kind = "removal"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        epochs: int = param(1, "fine-tuning epochs", ge=1)

    def run(self, target: Target, ctx: Context) -> Outcome:
        fit(target.model, target.x_pool, target.y_pool, ctx=ctx, epochs=self.config.epochs,
            batch_size=ctx.profile.batch_size, lr=1e-4)
        return Outcome(model=target.model, epochs=self.config.epochs)
'''


def test_dropped_in_attack_file_fills_its_column_from_cached_victims(finished):
    tmp, plan, _ = finished
    path = REPO / "attacks" / "removal" / "example.py"
    assert not path.exists(), "attacks/removal/example.py must not be committed"
    path.write_text(EXAMPLE)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-m", "wmbench", "run", "--dataset", "synthetic", "--profile", "test",
             "--defense", SLICE_DEFENSES, "--attack", "example", "--results", str(tmp / "results"),
             "--cache-dir", plan.cache_dir, "--device", "cpu", "-q"],
            capture_output=True, text=True, env=env, cwd=tmp, timeout=600,
        )
    finally:
        path.unlink()
    assert proc.returncode == 0, proc.stderr
    assert "models trained: 0 victims" in proc.stdout
    df = load_results(tmp / "results")
    assert set(df[df.attack == "example"].status) == {"ok"}
    assert len(df[df.attack == "example"]) == 2


def test_chain_reuses_its_first_step_and_scores_the_last(finished, tmp_path):
    _, plan, _ = finished
    p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                  cache_dir=plan.cache_dir, device="cpu")
    summary = _run(p, attacks="soft_label,soft_label>identity")
    assert summary.counts["ok"] == 4
    # the extraction (victims and nulls) came from the cache; only the identity steps on its copies ran
    assert summary.built["victims"] == 0 and summary.built["attacks"] == 2 + plan.profile.null_models
    df = load_results(tmp_path / "r").set_index(["defense", "attack"])
    d = "content[rate=0.1]"
    chain, single = df.loc[(d, "soft_label>identity")], df.loc[(d, "soft_label")]
    assert chain.wsr_suspect == single.wsr_suspect and chain.queries == single.queries
    assert chain.attack_kind == "extraction" and [s["attack"] for s in chain.extras["chain"]] == [
        "soft_label", "identity"]
    assert "soft_label__then__identity" in chain.path


def test_chain_with_detection_in_the_middle_is_rejected():
    from bench.config import ComponentConfig
    from bench.errors import ConfigError
    from bench.spec import expand_chains

    class Det:  # a stand-in registry with one detection attack
        kind = "detection"
        Config = ComponentConfig

    class Reg:
        def expand(self, pattern):
            return [pattern]

        def get(self, name):
            return Det if name == "det" else ATTACKS.get(name)

    with pytest.raises(ConfigError, match="det is a detection attack and produces no model; put it last"):
        expand_chains("det>identity", Reg())


PEEK = '''
import time
from dataclasses import dataclass
from pathlib import Path
from bench.api import Attack, Outcome
from bench.config import ComponentConfig
from bench.registry import register_attack

@register_attack("peek")
class Peek(Attack):
    """A removal attack that waits (up to a minute) for the identity column's card beside this file (runner test)."""
    kind = "removal"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def run(self, target, ctx):
        results, deadline = Path(__file__).parent / "r", time.monotonic() + 60
        while not list(results.rglob("identity/seed-0.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        cards = sorted(p.parent.name for p in results.rglob("seed-0.json"))
        return Outcome(model=target.model, extras={"cards_seen": cards})
'''


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_cell_is_scored_as_soon_as_its_models_exist(finished, tmp_path, jobs):
    """The identity column's models are done before the peek column's attacks run (in order with one job; with
    two, its jobs are dispatched first and peek waits), so its card is on disk while they run: a run killed
    there keeps it. Before, every card was written after the last attack."""
    _, plan, _ = finished
    plugin = tmp_path / "peek.py"
    plugin.write_text(PEEK)
    try:
        p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                          cache_dir=plan.cache_dir, device="cpu", plugins=(str(plugin),), jobs=jobs)
        summary = _run(p, defenses="content[rate=0.1]", attacks="identity,peek")
    finally:
        ATTACKS.unregister("peek")
    assert summary.counts["ok"] == 2
    df = load_results(tmp_path / "r").set_index("attack")
    assert df.loc["peek", "extras"]["cards_seen"] == ["identity"]


def _models(cache: Path) -> list[Path]:
    """The complete model entries of a cache (not the evaluations and oracle answers it remembers)."""
    from bench.cache import entry_exists, entry_meta

    return [p for p in cache.rglob("*.wm") if entry_exists(cache, p.stem)
            and "remembered" not in (entry_meta(cache, p.stem) or {})]


def test_killed_run_resumes_without_duplicates_or_corrupt_cards(tmp_path):
    import signal
    import time

    results, cache = tmp_path / "r", tmp_path / "c"
    argv = [sys.executable, "-m", "wmbench", "run", "--dataset", "synthetic", "--profile", "test",
            "--defense", "none,content[rate=0.1],content[rate=0.2]", "--attack", "identity,soft_label",
            "--results", str(results), "--cache-dir", str(cache), "--device", "cpu", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.rglob("*.sha256"))) < 3 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_models(cache))
    assert done_before >= 3
    again = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "6 cells: 6 ok" in again.stdout
    df = load_results(results)
    assert len(df) == 6 and set(df.status) == {"ok"}
    assert len(set(df.path)) == 6
    assert not list(results.rglob(".tmp-*"))
    # what was finished before the kill was not trained again
    total = len(_models(cache))
    trained = again.stdout.split("models trained: ")[1]
    victims, attacks = int(trained.split(" victims")[0]), int(trained.split(", ")[1].split(" by attacks")[0])
    assert victims + attacks == total - done_before


# --- loky's leak guard must not replace a worker whose per-process caches grow ---------------------------------

_HELD: list[bytearray] = []


def _set_up_worker(plan) -> int:
    from bench import jobs

    jobs.worker_cache(plan)
    return os.getpid()


def _grow_by(mb: int) -> int:
    import time

    _HELD.append(bytearray(b"\x01") * (mb << 20))  # filled, so resident: what a cached data set does
    time.sleep(1.2)  # loky checks a worker's memory at most once a second, after a job
    return os.getpid()


def test_worker_keeps_its_caches_when_memory_grows(tmp_path):
    pytest.importorskip("psutil")  # loky's guard needs psutil; without it there is nothing to switch off
    from joblib.externals.loky import get_reusable_executor

    plan = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                     cache_dir=str(tmp_path / "c"), device="cpu")
    executor = get_reusable_executor(max_workers=1, kill_workers=True, reuse=False)
    try:
        pid = executor.submit(_set_up_worker, plan).result()
        # 400 MB over the size after the first job: loky would call it a leak and start a fresh worker
        assert executor.submit(_grow_by, 400).result() == pid
        assert executor.submit(os.getpid).result() == pid
    finally:
        executor.shutdown(kill_workers=True)


def test_a_second_cell_on_the_same_models_queries_and_evaluates_nothing_again(finished, tmp_path, monkeypatch):
    """hard_label on the victim and null model soft_label already attacked: it trains only its own copies; the
    victim answers no query (the pool's answers are cached), and the victim's evaluation and the watermark's
    verification on the null model are loaded, not computed again."""
    import bench.cells
    from bench.api import Protected
    from bench.oracle import Oracle

    _, plan, _ = finished
    served, evaluated, verified = [], [], []
    real_served, real_eval, real_verify = Oracle._served, bench.cells.evaluate_victim, Protected.verify
    monkeypatch.setattr(Oracle, "_served", lambda self, x: served.append(len(x)) or real_served(self, x))
    monkeypatch.setattr(bench.cells, "evaluate_victim", lambda *a, **k: evaluated.append(1) or real_eval(*a, **k))
    monkeypatch.setattr(Protected, "verify", lambda self, m, **k: verified.append(m) or real_verify(self, m, **k))
    p = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                      cache_dir=plan.cache_dir, device="cpu")
    matrix = plan_matrix(p, "content[rate=0.1]", "hard_label", [0])
    summary = execute(p, matrix, progress=False)  # --jobs 1: in this process, where the counters are
    assert summary.counts["ok"] == 1 and summary.built["victims"] == 0
    assert summary.built["attacks"] == 1 + plan.profile.null_models
    assert served == [] and evaluated == []
    # verified: the suspect and the null models' hard_label copies, which are new; not the null model itself
    assert len(verified) == 1 + plan.profile.null_models
    card = read_card(matrix.cells[0].card)
    assert card["queries"] == plan.profile.attacker_pool and card["retained"] is not None


def test_jobs_start_longest_first_by_what_the_same_jobs_cost_at_other_seeds(tmp_path, monkeypatch):
    from bench.jobs import VictimJob
    from bench.planning import job_costs

    p = _plan(tmp_path)
    matrix = plan_matrix(p, SLICE_DEFENSES, "identity", [1])
    reference = plan_matrix(p, SLICE_DEFENSES, "identity", [0, 1], force=True)
    at_seed_0 = [k for k, job in reference.victims.items() if job.seed == 0]  # the null model, none, content
    recorded = {at_seed_0[0]: {"cpu_s": 5.0}, at_seed_0[1]: {"wall_s": 4.0, "torch_threads": 2},
                at_seed_0[2]: {"cpu_s": 9.0, "device": "cuda:Some GPU"}}  # another device's time says nothing
    costs = job_costs(matrix, reference, recorded.get, "cpu")
    keys = list(matrix.victims)
    assert costs == {keys[0]: 5.0, keys[1]: 8.0}  # wall seconds x threads where no CPU time was recorded
    order: list[str] = []
    real = VictimJob.__call__
    monkeypatch.setattr(VictimJob, "__call__", lambda self, s: order.append(self.key) or real(self, s))
    execute(p, matrix, progress=False, costs=costs)  # --jobs 1: in this process, in dispatch order
    assert order == [keys[2], keys[1], keys[0]]  # the never-timed one first, then the longest

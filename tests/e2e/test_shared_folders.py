"""A results or cache folder shared between runs, users and machines: overlapping runs build a model once,
dead writers leave nothing that lingers, files stay readable, a full or read-only folder is one clear line,
and workers die with their run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.atomic import KeyLock, atomic_write, pid_alive, sweep_temporaries
from bench.cache import artifact_key, entry_meta

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)



BUILD_ONCE = """
import sys, time
from bench.cache import Cache
cache = Cache(sys.argv[1])
def build():
    with open(sys.argv[3], "a") as fh:
        fh.write("built\\n")
    time.sleep(1.5)
    return {"by": sys.argv[4]}
obj, _ = cache.get_or_build(sys.argv[2], build)
print(obj["by"])
"""


def test_two_processes_build_one_key_once(tmp_path):
    key = artifact_key(kind="victim", n=7)
    log = tmp_path / "builds.txt"
    first = _python(BUILD_ONCE, str(tmp_path / "cache"), key, str(log), "first")
    deadline = time.monotonic() + 120
    while not log.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first is inside build(), holding the lock (however slow its start)
    second = _python(BUILD_ONCE, str(tmp_path / "cache"), key, str(log), "second")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert log.read_text() == "built\n"  # one build; the second waited and loaded it
    assert [o[0].strip() for o in outs] == ["first", "first"]
    with KeyLock(tmp_path / "cache" / key[:2] / f"{key}.lock") as free:  # released by both
        assert not free.waited


def test_a_lock_whose_holder_is_gone_does_not_block_and_a_live_one_does(tmp_path, dead_pid):
    from bench.atomic import _HOST

    lock = tmp_path / "k.lock"
    lock.write_text(f"{_HOST} {dead_pid}\n")  # left by a killed run: the kernel dropped its lock
    with KeyLock(lock) as held:
        assert lock.read_text().split()[1] == str(os.getpid())
    assert not held.waited
    holder = _python("""
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(1.5)
        """, str(lock))
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    with KeyLock(lock) as second:
        waited_s = time.monotonic() - t0
    holder.communicate(timeout=60)
    assert second.waited and waited_s > 0.5


def test_files_get_the_umask_mode_not_0600(tmp_path):
    from bench.atomic import _UMASK

    p = atomic_write(tmp_path / "card.json", b"{}")
    assert p.stat().st_mode & 0o777 == 0o666 & ~_UMASK
    if _UMASK & 0o044 == 0:  # a umask that lets the group and others read (022 on most machines)
        assert p.stat().st_mode & 0o044 == 0o044


def test_temporaries_of_dead_writers_are_swept(tmp_path, dead_pid):
    from bench.atomic import _HOST

    dead = tmp_path / "a" / f".tmp-{_HOST}-{dead_pid}-x"
    live = tmp_path / "a" / f".tmp-{_HOST}-{os.getpid()}-y"
    old = tmp_path / f".tmp-elsewhere-{os.getpid()}-z"
    for f in (dead, live, old):
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(dead, (time.time() - 120, time.time() - 120))  # a dead writer's file, past a minute
    assert sweep_temporaries(tmp_path) == 2
    assert live.exists() and not dead.exists() and not old.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_results_folder_is_one_line_and_no_card(tmp_path, monkeypatch, capsys, code):
    # (as root, chmod cannot make a folder read-only, so the write itself fails as the kernel would say)
    from bench import results
    from wmbench.cli import main

    def full(path, data):
        raise (PermissionError if code == errno.EACCES else OSError)(code, os.strerror(code), str(path))

    monkeypatch.setattr(results, "atomic_write", full)
    rc = main(["run", "--dataset", "synthetic", "--profile", "test", "--defense", "content", "--attack", "identity",
               "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "-q", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert os.strerror(code) in err[0] and "cannot write the card" in err[0] and "no such card" not in err[0]
    assert not list((tmp_path / "r").rglob("seed-*.json"))


def test_jobs_are_capped_at_what_can_run(monkeypatch):
    from bench.planning import cap_jobs

    plan = SimpleNamespace(jobs=1000)
    matrix = SimpleNamespace(victims={"a": 1}, cells=[1], attacks={})
    monkeypatch.setattr("bench.planning.replace", lambda p, jobs: SimpleNamespace(jobs=jobs))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    capped, note = cap_jobs(plan, matrix, None)
    assert capped.jobs == 1 and "--jobs 1000 lowered to 1: 1 job can run at once" == note
    many = SimpleNamespace(victims=dict.fromkeys(range(40)), cells=[], attacks={})
    assert cap_jobs(plan, many, "loky")[0].jobs == 16 and "16 cores" in cap_jobs(plan, many, "loky")[1]
    assert cap_jobs(plan, many, "dask")[0].jobs == 40  # a cluster decides its own cores
    assert cap_jobs(SimpleNamespace(jobs=2), many, None) == (SimpleNamespace(jobs=2), None)


ORPHAN = """
import os, sys, time
from joblib import Parallel, delayed

def work(path):
    from bench.jobs import _die_with_parent
    _die_with_parent()
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(120)

Parallel(n_jobs=2, backend="loky")(delayed(work)(sys.argv[1]) for _ in range(2))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process checks by pid")
def test_workers_die_with_their_parent(tmp_path):
    pids = tmp_path / "pids"
    run = _python(ORPHAN, str(pids), start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.2)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2 and all(pid_alive(p) for p in workers)
    run.send_signal(signal.SIGKILL)  # only the parent
    run.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.2)
    alive = [p for p in workers if pid_alive(p)]
    for p in alive:  # do not leave them behind if the check fails
        os.kill(p, signal.SIGKILL)
    assert not alive


def test_cards_record_the_thread_count_their_models_were_trained_with(tmp_path):
    import torch

    from bench.results import read_card
    from wmbench.cli import main

    rc = main(["run", "--dataset", "synthetic", "--profile", "test", "--defense", "content", "--attack",
               "soft_label", "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "-q",
               "--device", "cpu", "--jobs", "1"])
    card = read_card(next((tmp_path / "r").rglob("seed-0.json")))
    assert rc == 0 and card["extras"]["torch_threads"] == [torch.get_num_threads()] * 2  # victim, copy


def test_two_overlapping_runs_train_each_model_once(tmp_path):
    import re

    argv = ["-m", "wmbench", "run", "--dataset", "synthetic", "--profile", "test", "--defense", "none,content",
            "--attack", "identity,soft_label", "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
            "-q", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = [subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    trained = 0
    for out, _ in outs:
        m = re.search(r"models trained: (\d+) victims, (\d+) by attacks", out)
        trained += int(m.group(1)) + int(m.group(2))
    # none + content victims, 1 null victim, soft-label copies of the two victims and the null, 3 identity steps
    unique = len([p for p in (tmp_path / "c").rglob("*.wm")
                  if "remembered" not in (entry_meta(tmp_path / "c", p.stem) or {})])  # models, not evaluations
    assert trained == unique, (trained, unique, outs)

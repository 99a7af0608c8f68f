"""Distributed backends: a Dask cluster on loopback gives the same cards as a local run and shares the cache;
every bad --backend / --scheduler combination is one line."""

import os
import socket
import sys
import threading
from pathlib import Path

import pytest
import torch

from bench import backends
from bench.codec import from_bytes
from bench.planning import plan_matrix
from bench.results import load_results
from bench.runner import execute
from bench.settings import make_settings
from wmbench.cli import main

DEFENSES, ATTACKS = "none,content[rate=0.1]", "identity,soft_label"
METRICS = ("run_id", "status", "clean_acc_victim", "clean_acc_suspect", "fidelity", "wsr_victim", "wsr_suspect",
           "wsr_null", "n_verify", "p_value", "retained", "queries", "epochs")


def _err(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(capsys, argv, needle):
    code, _, err = _err(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("wmbench: error: "), err
    assert needle in lines[0], lines[0]
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cards(results: Path):
    df = load_results(results).sort_values(["defense", "attack"]).reset_index(drop=True)[list(METRICS)]
    return df.astype(object).where(df.notna(), None).to_dict("records")  # NaN == NaN


def _weights(cache_dir: Path) -> dict:
    out = {}
    for path in sorted(cache_dir.glob("*/*.wm")):
        obj = from_bytes(path.read_bytes())[1]
        model = getattr(obj, "model", None)
        if model is not None:
            out[path.stem] = {k: v.clone() for k, v in model.state_dict().items()}
    return out


# ---------------------------------------------------------------------------------------------------
# the Dask path, end to end


def _torch_threads(_):
    return torch.get_num_threads()


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0", memory_limit=0) as c:
        yield c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same matrix run in this process, each job with the thread share of one of two jobs (as on the
    cluster's two single-threaded workers), so the models can be compared bit for bit."""
    tmp = tmp_path_factory.mktemp("local")
    plan = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp / "results"),
                     cache_dir=str(tmp / "cache"), device="cpu", jobs=2)
    threads = torch.get_num_threads()
    try:
        summary = execute(plan, plan_matrix(plan, DEFENSES, ATTACKS, [0]), progress=False, backend="sequential")
    finally:
        torch.set_num_threads(threads)
    assert summary.counts["ok"] == 4
    return tmp


def test_dask_cluster_matches_a_local_run_and_shares_the_cache(cluster, reference, tmp_path, capsys,
                                                               monkeypatch):
    from distributed import Client

    monkeypatch.chdir(tmp_path)  # relative --results/--cache-dir: the workers get absolute paths
    def argv(results):
        return ["run", "--dataset", "synthetic", "--profile", "test", "--device", "cpu", "--defense", DEFENSES,
                "--attack", ATTACKS, "--results", results, "--cache-dir", "cache", "-q", "--backend", "dask",
                "--scheduler", cluster.scheduler_address]

    code, out, err = _err(capsys, argv("results"))
    assert code == 0, err
    assert "4 cells: 4 ok, 0 error" in out and "3 victims, 6 by attacks (0 from cache)" in out
    assert "Traceback" not in err

    # determinism: the same metrics and the same weights as the run in this process
    ours = _cards(tmp_path / "results")
    theirs = _cards(reference / "results")
    assert ours == theirs
    mine, local = _weights(tmp_path / "cache"), _weights(reference / "cache")
    assert mine.keys() == local.keys() and len(mine) == 9
    for key, state in mine.items():
        for name, tensor in state.items():
            assert torch.equal(tensor, local[key][name]), (key, name)

    # the workers wrote cards and cache entries themselves, with each job on its share of the cores
    with Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        shares = client.run(backends.cluster_threads)
        threads = client.gather(client.map(_torch_threads, range(2), workers=list(pids), pure=False))
    assert os.getpid() not in pids.values()
    share = max(1, (os.cpu_count() or 1) // 2)
    assert set(shares.values()) == {share} and set(threads) == {share}

    # a worker's address is not the scheduler's
    code, _, err = _err(capsys, argv("x")[:-1] + [next(iter(pids))])
    assert code == 2 and "is a Dask worker, not a Dask scheduler" in err and len(err.strip().splitlines()) == 1

    # the shared cache: a second run elsewhere on the cluster trains nothing
    code, out, _ = _err(capsys, argv("again"))
    assert code == 0 and "0 victims, 0 by attacks (9 from cache)" in out
    again = _cards(tmp_path / "again")
    assert again == ours


def test_dask_without_scheduler_starts_a_local_cluster_of_jobs_workers():
    pytest.importorskip("distributed")
    from distributed import get_client

    with backends.use_backend("dask", jobs=1) as backend:
        info = get_client().scheduler_info()
        assert backend is not None and backend != "loky"
        assert [w["nthreads"] for w in info["workers"].values()] == [1]
    host, port = info["address"].rsplit("/", 1)[1].rsplit(":", 1)
    assert host == "127.0.0.1"
    with pytest.raises(OSError):  # torn down
        socket.create_connection((host, int(port)), timeout=1).close()


def test_cluster_settings_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = make_settings(dataset="synthetic", profile="test", results_dir="r", cache_dir="c", device="cpu")
    assert backends.cluster_settings(plan, "loky") is plan
    shared = backends.cluster_settings(plan, "dask")
    assert shared.results_dir == str(tmp_path / "r") and shared.cache_dir == str(tmp_path / "c")
    assert shared.data_root == str(tmp_path / "data")


def test_threading_warns_that_it_is_not_reproducible():
    notes = []
    with backends.use_backend("threading", jobs=2, warn=notes.append) as backend:
        assert backend == "threading"
    assert len(notes) == 1 and "not bit-reproducible" in notes[0]
    with backends.use_backend("loky", jobs=2, warn=notes.append) as backend:
        assert backend == "loky"
    assert len(notes) == 1


# ---------------------------------------------------------------------------------------------------
# every bad combination is one line


def _run(tmp_path, *extra):
    return ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "none", "--attack", "identity",
            "-q", "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *extra]


@pytest.mark.parametrize("extra,needle", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler only applies to --backend dask"),
    (["--backend", "ray", "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler only applies to --backend dask"),
    (["--backend", "spark"], "unknown backend 'spark'; choose one of loky, threading, dask, ray"),
    (["--backend", "dsak"], "unknown backend 'dsak'; did you mean dask?"),
    (["--backend", "dask", "--scheduler", "localhost"], "missing port number"),
    (["--backend", "dask", "--scheduler", "foo://x:1"], "unknown address scheme 'foo'"),
])
def test_bad_backend_flags_are_one_line(capsys, tmp_path, extra, needle):
    pytest.importorskip("distributed")
    _one_line(capsys, _run(tmp_path, *extra), needle)
    assert not (tmp_path / "r").exists()  # rejected before any work


def test_reproduce_checks_the_flags_too(capsys, tmp_path):
    _one_line(capsys, ["reproduce", "mea-defender-fmnist", "--scheduler", "tcp://127.0.0.1:8786"],
              "--scheduler only applies to --backend dask")


def test_unreachable_scheduler_is_one_line_naming_it(capsys, tmp_path):
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"
    line = _one_line(capsys, _run(tmp_path, "--backend", "dask", "--scheduler", address),
                     f"cannot reach the Dask scheduler at {address}")
    assert "--scheduler" in line


def test_something_else_listening_is_one_line(capsys, tmp_path, monkeypatch):
    """A port that accepts connections but never speaks Dask: the short connect timeout ends it."""
    pytest.importorskip("distributed")
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass
        for conn in held:
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        _one_line(capsys, _run(tmp_path, "--backend", "dask", "--scheduler", address),
                  f"{address} is something that does not speak Dask, not a Dask scheduler")
    finally:
        stop.set()
        thread.join()
        server.close()


def test_scheduler_without_workers_is_one_line(capsys, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=":0") as c:
        _one_line(capsys, _run(tmp_path, "--backend", "dask", "--scheduler", c.scheduler_address),
                  f"the Dask scheduler at {c.scheduler_address} has no workers after 1 s")


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_missing_extra_says_what_to_install(capsys, tmp_path, monkeypatch, backend):
    if backend == "ray":
        monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    else:  # distributed is in use by this module's cluster: ask for a module that does not exist instead
        monkeypatch.setitem(backends._EXTRAS, "dask", ("wmbench_no_such_module", "wmbench[dask]"))
    _one_line(capsys, _run(tmp_path, "--backend", backend), f"install the extra: pip install 'wmbench[{backend}]'")


# ---------------------------------------------------------------------------------------------------
# Ray, for real (installed in CI with the ray extra)


def test_ray_matches_a_local_run(reference, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local instance, torn down after the run
    code, out, err = _err(capsys, ["run", "--dataset", "synthetic", "--profile", "test", "--device", "cpu",
                                   "--defense", DEFENSES, "--attack", ATTACKS, "--results", "results",
                                   "--cache-dir", "cache", "-q", "--backend", "ray", "--jobs", "2"])
    assert code == 0, err
    assert "4 cells: 4 ok, 0 error" in out and "Traceback" not in err
    assert _cards(tmp_path / "results") == _cards(reference / "results")  # the same numbers as a local run
    mine, local = _weights(tmp_path / "cache"), _weights(reference / "cache")
    assert mine.keys() == local.keys() and len(mine) == 9

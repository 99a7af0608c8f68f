import subprocess
import sys

import pytest
import torch

torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e carries the ``e2e`` marker: ``pytest -m "not e2e"`` is the quick loop."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def profile():
    from bench.profiles import get_profile

    return get_profile("test")


@pytest.fixture(scope="session")
def task(profile):
    from bench.data import make_task

    return make_task("synthetic", seed=0, victim_train=profile.victim_train,
                     attacker_pool=profile.attacker_pool, test=profile.test)


@pytest.fixture
def ctx(profile):
    from bench.api import Context

    return Context(device=torch.device("cpu"), seed=0, profile=profile)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited: what a killed run leaves in its lock and temporary-file names."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid

"""Cost measurement: wall seconds, CPU seconds and peak memory of one piece of work.

CPU seconds are the process's user + system time over every thread (``time.process_time``), so they do not
grow when other work shares the cores the way wall seconds do: a job that took 40 s alone and 100 s beside
another run took about the same CPU time both times. A job runs alone in its worker process, so its process
time is its own."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Cost", "measure"]


@dataclass
class Cost:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mem_mb: float | None = None


def _reset_peak_rss() -> bool:
    # Linux: writing 5 to clear_refs resets the VmHWM (peak resident set) of this process.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


@contextlib.contextmanager
def measure():
    """Time a block and record its peak memory: GPU peak allocation on CUDA, else peak process RSS."""
    cost = Cost()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - t0
        cost.cpu_s = time.process_time() - c0
        if cuda:
            cost.peak_mem_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            cost.peak_mem_mb = _peak_rss_mb()

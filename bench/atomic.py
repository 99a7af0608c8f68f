"""Atomic file writes and the small locks that make a shared results or cache folder safe.

``atomic_write``: a temporary file in the same folder, fsynced, then renamed over the target, so a reader
never sees a half-written card or cache entry and a killed process leaves no corrupt file. The file gets
the mode the umask gives a new file (cards and entries in a shared folder stay readable by the group), and
the temporary's name says who wrote it (``.tmp-<host>-<pid>-…``), so :func:`sweep_temporaries` can remove
what a dead writer left behind.

``KeyLock``: an exclusive ``flock`` on a lock file that names its holder; a second process waits for the
holder instead of doing the same work, and the kernel releases the lock when the holder is gone.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "sweep_temporaries", "KeyLock", "pid_alive"]

_HOST = socket.gethostname().replace("-", "_")[:40] or "host"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: setting it to read it is not thread-safe


def atomic_write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{_HOST}-{os.getpid()}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would lock other users out of a shared folder
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _writer(name: str) -> tuple[str, int] | None:
    """(host, pid) from a temporary's or lock's name/content ``.tmp-<host>-<pid>-…``; None if unknown."""
    parts = name.split("-")
    if len(parts) >= 4 and parts[0] == ".tmp" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def sweep_temporaries(root: str | Path, age_s: float = 3600.0) -> int:
    """Remove the temporary files under ``root`` whose writer on this host is gone, or that are older than
    ``age_s`` (a writer elsewhere); returns how many went."""
    now, gone = time.time(), 0
    for tmp in Path(root).rglob(".tmp-*"):
        try:
            who = _writer(tmp.name)
            age = now - tmp.stat().st_mtime
            dead = who is not None and who[0] == _HOST and not pid_alive(who[1]) and age > 60
            if dead or age > age_s:
                tmp.unlink()
                gone += 1
        except OSError:
            pass
    return gone


class KeyLock:
    """``with KeyLock(path): ...`` holds an exclusive ``flock`` on the lock file ``path`` while the block runs;
    a second holder waits. The kernel drops the lock when its holder dies, so a killed run never leaves a
    stale lock; the file (which stays, empty of meaning once unlocked) says who holds it, for a person
    looking at a folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.waited = False
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666 & ~_UMASK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"{_HOST} {os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""Atomic file writes and the small locks that make a shared results or cache folder safe.

``atomic_write``: a temporary file in the same folder, fsynced, then renamed over the target, so a reader
never sees a half-written card or cache entry and a killed process leaves no corrupt file. The file gets
the mode the umask gives a new file (cards and entries in a shared folder stay readable by the group), and
the temporary's name says who wrote it (``.tmp-<host>-<pid>-…``), so :func:`sweep_temporaries` can remove
what a dead writer left behind.

``KeyLock``: an ``O_EXCL`` lock file holding its holder's host and pid; a second process waits for the
holder instead of doing the same work, and breaks the lock when the holder is gone.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "sweep_temporaries", "KeyLock", "pid_alive"]

_HOST = socket.gethostname().replace("-", "_")[:40] or "host"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{_HOST}-{os.getpid()}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would lock other users out of a shared folder
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
            dead = who is not None and who[0] == _HOST and not pid_alive(who[1])
            if dead or now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
                gone += 1
        except OSError:
            pass
    return gone


class KeyLock:
    """``with KeyLock(path): ...`` holds ``path`` (a lock file) while the block runs. A second holder waits,
    polling every ``poll_s``; a lock whose holder on this host is gone, or that is older than ``stale_s``
    (a holder on another host), is broken."""

    def __init__(self, path: str | Path, *, poll_s: float = 0.5, stale_s: float = 6 * 3600.0) -> None:
        self.path = Path(path)
        self.poll_s, self.stale_s = poll_s, stale_s
        self.waited = False

    def _stale(self) -> bool:
        try:
            text = self.path.read_text().split()
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return False  # vanished or being written: try again
        if len(text) == 2 and text[1].isdigit() and text[0] == _HOST:
            return not pid_alive(int(text[1]))
        return age > self.stale_s

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                self.waited = True
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{_HOST} {os.getpid()}\n")
            return

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

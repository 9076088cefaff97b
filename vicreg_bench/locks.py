"""Exclusive file locks (fcntl.flock on a lock file beside what they guard), so that concurrent runs, SLURM
jobs included, never lose each other's results nor do the same work twice.

The lock file records who holds it (host, pid, what), so a process that has to wait can say on whom. The
operating system releases a lock when its process dies, so a killed job never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator


class FileLock:
    """An exclusive lock on `path` (created if missing); `acquire(wait=False)` tells whether it was free."""

    def __init__(self, path: str | os.PathLike, what: str = ""):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self, wait: bool = True) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "what": self.what,
                           "since": round(time.time(), 1)}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> dict | None:
        """Who holds the lock, as it recorded itself (None when unknown or free)."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return None

    def is_held_elsewhere(self) -> bool:
        """Whether another process holds the lock right now (this one does not take it)."""
        if self._fd is not None:
            return False
        if not self.path.exists():
            return False
        if self.acquire(wait=False):
            self.release()
            return False
        return True

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked(path: str | os.PathLike, what: str = "", on_wait: Callable[[dict | None], None] | None = None) -> Iterator[FileLock]:
    """Hold the lock on `path` for the block; when another process holds it, call `on_wait(holder)` once,
    then wait for it."""
    lock = FileLock(path, what)
    if not lock.acquire(wait=False):
        if on_wait is not None:
            on_wait(lock.holder())
        lock.acquire(wait=True)
    try:
        yield lock
    finally:
        lock.release()


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"process {holder.get('pid')} on {holder.get('host')}" + (f" ({holder['what']})" if holder.get("what") else "")

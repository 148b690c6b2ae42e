"""The home's run lock: one writer of `HOME/warehouse.duckdb` at a time, across processes.

DuckDB allows one writing process per file. Every step of a run (and `remeasure`) holds the
lock `HOME/.nudgeflow.lock` while it writes; a second run waits for it, printing who holds it,
and gives up with a one-line error after ``wait_seconds``. The lock is an advisory ``flock``
held by an open file, so a run that dies releases it with its process. Within one process it
is reentrant: `run` holds it around its steps, and each step takes it again at no cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path

from nudgeflow.config import NudgeflowError

DEFAULT_WAIT_SECONDS = 600.0
_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process
_guard = threading.Lock()


class LockTimeout(NudgeflowError):
    """Another process held the home's lock for longer than we waited (a retry may succeed)."""


def lock_path(home: Path) -> Path:
    return Path(home) / ".nudgeflow.lock"


def holder(home: Path) -> str:
    """Who holds the lock, as its holder wrote it (pid, command, since)."""
    try:
        info = json.loads(lock_path(home).read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid', '?')} ({info.get('what', '?')}, since {info.get('since', '?')})"


@contextlib.contextmanager
def home_lock(home: Path, what: str = "nudgeflow run", wait_seconds: float | None = None, progress=None):
    """Hold the home's lock for the duration of the block (see the module docstring)."""
    wait = float(os.environ.get("NUDGEFLOW_LOCK_WAIT", DEFAULT_WAIT_SECONDS)) if wait_seconds is None else wait_seconds
    path = str(lock_path(home))
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[path]
                _held[path] = (fd, depth - 1)
        return
    Path(home).mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{Path(home)} is locked by {holder(home)}; gave up after {wait:.0f}s "
                        "(set NUDGEFLOW_LOCK_WAIT to wait longer)"
                    ) from None
                if not told and progress:
                    progress(f"waiting for the home's lock, held by {holder(home)} (up to {wait:.0f}s)")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(
            fd, json.dumps({"pid": os.getpid(), "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
        )
        with _guard:
            _held[path] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                del _held[path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

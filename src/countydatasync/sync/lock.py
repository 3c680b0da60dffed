"""One run at a time: an OS file lock beside the staging databases.

The operating system releases the lock when its holder exits, however it exits, so a crashed or
killed sync never blocks the next one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from countydatasync.errors import RunLockedError

LOCK_NAME = ".countydatasync.lock"
OWNER_NAME = ".countydatasync.lock.owner"  # the holder's process id; exists only while the lock is held
WAIT_SECONDS = 2.0  # a busy check may hold the lock for a moment; that is not another sync


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the run lock of `directory` for the duration of the block, or raise RunLockedError when another
    holder keeps it for WAIT_SECONDS (2 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK_NAME, timeout=WAIT_SECONDS)
    owner_file = directory / OWNER_NAME
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = owner_file.read_text().strip()
        except FileNotFoundError:  # written just after the lock is taken, removed just before it is let go
            owner = "unknown"
        raise RunLockedError(
            f"another sync is running on {directory} (process {owner}); wait for it to finish"
        ) from None
    try:
        owner_file.write_text(str(os.getpid()))
        yield
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()


def is_locked(directory: Path) -> bool:
    """True while a sync holds the lock (used by the web API to answer 409).

    Without an owner file nobody holds it, and the lock is left alone: taking it even for a moment could
    make a sync starting then give up. An owner file left by a killed holder is checked on the lock itself.
    """
    if not (directory / OWNER_NAME).is_file():
        return False
    lock = FileLock(directory / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False

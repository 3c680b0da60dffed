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
OWNER_NAME = ".countydatasync.lock.owner"


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the run lock of `directory` for the duration of the block, or raise RunLockedError at once."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = (directory / OWNER_NAME).read_text().strip() if (directory / OWNER_NAME).is_file() else "unknown"
        raise RunLockedError(
            f"another sync is running on {directory} (process {owner}); wait for it to finish"
        ) from None
    try:
        (directory / OWNER_NAME).write_text(str(os.getpid()))
        yield
    finally:
        lock.release()


def is_locked(directory: Path) -> bool:
    """True while a sync holds the lock (used by the web API to answer 409)."""
    lock = FileLock(directory / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False

"""The run transaction flushes written pages early, and doing so never loosens SQLite's locks."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from countydatasync.load import transaction
from countydatasync.load.transaction import StagingTransaction
from countydatasync.settings import OutputSettings

pytestmark = pytest.mark.skipif(not hasattr(os, "fdatasync"), reason="no fdatasync on this system")


def test_pages_are_flushed_during_the_run_and_the_write_lock_holds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "WRITEBACK_SECONDS", 0.02)
    flushed: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    output = OutputSettings(directory=tmp_path, busy_timeout_seconds=0.1)
    tx = StagingTransaction(output)
    tx.con.execute("CREATE TABLE notes (n INTEGER)")
    tx.con.executemany("INSERT INTO notes VALUES (?)", [(n,) for n in range(50_000)])
    deadline = time.monotonic() + 10
    while len(set(flushed)) < 2 and time.monotonic() < deadline:  # both files, working and geo
        time.sleep(0.02)
    assert len(set(flushed)) == 2

    # The descriptors the flushing opened are still open, so the run's locks are intact: another writer
    # waits for them, and a reader does not see the uncommitted table.
    other = sqlite3.connect(output.working_path, timeout=0.1, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    assert other.execute("SELECT count(*) FROM sqlite_master WHERE name = 'notes'").fetchone()[0] == 0

    tx.commit()
    fds = tx.writeback.fds
    tx.close()
    for fd in fds:  # closed with the transaction
        with pytest.raises(OSError):
            os.fstat(fd)
    assert other.execute("SELECT count(*) FROM notes").fetchone()[0] == 50_000
    other.close()

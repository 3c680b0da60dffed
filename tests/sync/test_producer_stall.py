"""A run whose extract process is stuck (alive, handing over nothing) fails instead of waiting forever."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest

from countydatasync.errors import SourceError, TransientSourceError
from countydatasync.extract.sqlite import SqliteSource
from countydatasync.sync import producer, run_sync

from .helpers import sync_in_thread


def test_a_stuck_extract_process_is_stopped_and_fails_the_run(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(producer, "STALL_SECONDS", 2.0)
    # Batches small enough to sit whole in the pipe, so the child is never stopped halfway through one. No
    # retries: the stall limit is then STALL_SECONDS alone.
    settings = make_settings(sample_db, source={"batch_size": 20, "max_retries": 0})
    stopped: list[mp.process.BaseProcess] = []

    def stop_the_child(stage: str, done: int, total: int | None) -> None:
        if done and not stopped:
            child = next(p for p in mp.active_children() if p.name == "countydatasync-extract")
            assert child.pid is not None
            os.kill(child.pid, signal.SIGSTOP)  # stuck like a deadlocked child: alive, sending nothing
            stopped.append(child)

    runner, failures = sync_in_thread(settings, stop_the_child)
    try:
        assert not runner.is_alive(), "the run waits for its stuck extract process forever"
    finally:
        for child in stopped:
            if child.is_alive():
                child.kill()
    assert len(failures) == 1 and isinstance(failures[0], SourceError), failures
    assert "handed over no batch for 2 s and was stopped as stuck" in str(failures[0])
    assert not stopped[0].is_alive()
    assert run_sync(settings).status == "succeeded"  # the run lock was let go


def test_retries_in_the_extract_process_longer_than_the_stall_limit_do_not_stop_the_run(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer took a child retrying its source for a stuck one once the waits added up to the limit."""
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(producer, "STALL_SECONDS", 1.0)
    writer, failed = os.getpid(), []
    read = SqliteSource.run

    def dropped_twice_in_the_child(self, session, stmt, params):  # forked: the child runs this too
        if os.getpid() != writer and len(failed) < 2:
            failed.append(1)
            raise TransientSourceError("the source dropped the connection")
        return read(self, session, stmt, params)

    monkeypatch.setattr(SqliteSource, "run", dropped_twice_in_the_child)
    # Waits of 0.7 and 1.4 s before the first batch: 2.1 s in all, each wait within 1.0 s + the longest one.
    settings = make_settings(sample_db, source={"max_retries": 2, "retry_backoff_seconds": 0.7})
    assert producer.stall_seconds(settings) == pytest.approx(2.4)
    result = run_sync(settings)
    assert result.status == "succeeded" and result.reconciles
    retries = [r.getMessage() for r in caplog.records if "the source dropped the connection" in r.getMessage()]
    assert [m.split("; ")[1] for m in retries] == ["retry 1 of 2 in 0.7 s", "retry 2 of 2 in 1.4 s"]

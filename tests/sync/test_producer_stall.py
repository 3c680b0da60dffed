"""A run whose extract process is stuck (alive, handing over nothing) fails instead of waiting forever."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest

from countydatasync.errors import SourceError
from countydatasync.sync import producer, run_sync

from .helpers import sync_in_thread


def test_a_stuck_extract_process_is_stopped_and_fails_the_run(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(producer, "STALL_SECONDS", 2.0)
    # Batches small enough to sit whole in the pipe, so the child is never stopped halfway through one.
    settings = make_settings(sample_db, source={"batch_size": 20})
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

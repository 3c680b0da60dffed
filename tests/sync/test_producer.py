"""The extract-and-transform child process gives the same result as the in-thread producer."""

from __future__ import annotations

from pathlib import Path

import pytest

from countydatasync.sync import producer, run_sync

from .helpers import query
from .test_incremental import assert_same, published


def test_child_process_and_thread_publish_the_same(sample_db: Path, make_settings, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    threaded = make_settings(sample_db, output={"directory": tmp_path / "thread"})
    run_sync(threaded)
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    forked = make_settings(sample_db, output={"directory": tmp_path / "process"})
    result = run_sync(forked)
    assert result.reconciles and result.extracted == 3_000
    assert_same(published(threaded), published(forked))
    errors = "SELECT pin, source_row, reason FROM errors ORDER BY source_row"
    assert query(threaded.output.working_path, errors).equals(query(forked.output.working_path, errors))


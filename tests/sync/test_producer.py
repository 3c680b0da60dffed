"""The extract-and-transform child process gives the same result as the in-thread producer."""

from __future__ import annotations

import gc
import logging
import shutil
import sqlite3
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from concurrent_log_handler import ConcurrentRotatingFileHandler

from countydatasync.ops.logs import configure_logging
from countydatasync.sync import producer, run_sync
from countydatasync.transform import TransformPlan

from .edits import apply_edit
from .helpers import query, sync_in_thread
from .test_incremental import assert_same, published


def test_child_process_and_thread_publish_the_same(
    sample_db: Path, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threaded = make_settings(sample_db, output={"directory": tmp_path / "thread"})
    run_sync(threaded)
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    forked = make_settings(sample_db, output={"directory": tmp_path / "process"})
    result = run_sync(forked)
    assert result.reconciles and result.extracted == 3_000
    assert_same(published(threaded), published(forked))
    errors = "SELECT pin, source_row, reason FROM errors ORDER BY source_row"
    assert query(threaded.output.working_path, errors).equals(query(forked.output.working_path, errors))


def test_a_mass_update_read_by_the_child_process_publishes_the_same(
    sample_db: Path, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watermark run with many changed rows (a revaluation) is read and transformed in the child process."""
    source = tmp_path / "county.sqlite"
    shutil.copyfile(sample_db, source)
    threaded = make_settings(source, output={"directory": tmp_path / "thread"})
    forked = make_settings(source, output={"directory": tmp_path / "process"})
    run_sync(threaded)
    run_sync(forked)
    for op, pick in [("attribute", 5), ("geometry", 17), ("break", 29), ("delete", 41), ("insert", 53)]:
        apply_edit(source, op, pick)
    by_thread = run_sync(threaded)
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    children: list[object] = []
    real = producer.in_process
    monkeypatch.setattr(producer, "in_process", lambda *a: children.append(a[2]) or real(*a))
    by_process = run_sync(forked)
    assert children and children[0] is not None  # the child read only the changed rows
    assert by_process.mode == by_thread.mode == "incremental"
    counts = ("extracted", "inserted", "updated", "deleted", "rejected")
    assert [getattr(by_process, c) for c in counts] == [getattr(by_thread, c) for c in counts]
    assert by_process.updated == 2 and by_process.inserted == 1 and by_process.deleted == 1
    assert_same(published(threaded), published(forked))


def test_a_failed_run_stops_its_producer_thread_before_the_source_is_closed(
    sample_db: Path, make_settings, tmp_path: Path
) -> None:
    """The failed run's traceback keeps the batch generator alive; its thread must not go on reading from
    a source that the run has closed (that crashed the interpreter now and then)."""
    settings = make_settings(sample_db, output={"directory": tmp_path / "out"})

    def crash(stage: str, done: int, total: int | None) -> None:
        if done:
            raise RuntimeError("simulated crash after the first batch")

    with pytest.raises(RuntimeError, match="simulated crash") as failure:
        run_sync(settings, progress=crash)
    assert failure.value.__traceback__ is not None  # the generator's frame is still referenced
    assert not [t for t in threading.enumerate() if t.name == "extract-transform" and t.is_alive()]


def test_a_run_failing_while_the_producer_hands_over_its_end_does_not_hang(
    source_copy: Path, make_settings, tmp_path: Path
) -> None:
    """Two batches: while the writer applies the first, the producer queues the second and waits to hand
    over its end-of-batches mark. A writer failing then must not leave the run waiting for that thread
    forever (holding the run lock and the write transaction)."""
    con = sqlite3.connect(source_copy)
    with con:
        con.execute("DELETE FROM MasterParcels WHERE PIN IS NULL")  # their batch would come third
    rows = con.execute("SELECT count(*) FROM MasterParcels").fetchone()[0]
    con.close()
    settings = make_settings(source_copy, source={"batch_size": 2_000}, output={"directory": tmp_path / "out"})

    def crash(stage: str, done: int, total: int | None) -> None:
        if done:
            time.sleep(1.0)  # time for the producer to queue the last batch and block on the end mark
            raise RuntimeError("simulated failure after the first batch")

    runner, failures = sync_in_thread(settings, crash)
    assert not runner.is_alive(), "the failed run hangs waiting for its producer thread"
    assert [str(e) for e in failures] == ["simulated failure after the first batch"]
    assert not [t for t in threading.enumerate() if t.name == "extract-transform" and t.is_alive()]
    assert run_sync(settings).extracted == rows == 2_999  # the run lock was released


def test_the_child_process_collects_only_its_own_garbage(
    sample_db: Path, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each batch the child transforms notes how many objects its garbage collector leaves alone.
    notes = tmp_path / "frozen.txt"
    transform = producer.transform_batch

    def noting(*args, **kwargs):
        with notes.open("a") as out:
            out.write(f"{gc.get_freeze_count()}\n")
        return transform(*args, **kwargs)

    monkeypatch.setattr(producer, "transform_batch", noting)
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    before = gc.get_freeze_count()
    result = run_sync(make_settings(sample_db, output={"directory": tmp_path / "staging"}))
    counts = [int(line) for line in notes.read_text().split()]
    assert result.reconciles and len(counts) >= 2
    assert min(counts) > 10_000  # the imported stack and the run's objects, inherited from the writer
    assert gc.get_freeze_count() == before  # the writer's own collections are as before


@pytest.mark.parametrize("started_by", ["fork", "fork server"])
def test_the_extract_process_logs_to_the_writers_log_file_once(
    sample_db: Path, make_settings, tmp_path: Path, started_by: str
) -> None:
    """A child from the dashboard's fork server had no handlers: its records reached only stderr. A forked
    one wrote the file itself, beside the writer; now each record is written once, by the writer."""
    settings = make_settings(sample_db, logging={"file": tmp_path / "logs" / "cds.log", "level": "DEBUG"})
    root = logging.getLogger()
    level = root.level
    log_file = configure_logging(settings, console=False)
    try:
        with producer.avoid_fork() if started_by == "fork server" else nullcontext():
            batches = list(producer.in_process(settings, TransformPlan.from_settings(settings), None))
    finally:
        for handler in [h for h in root.handlers if isinstance(h, ConcurrentRotatingFileHandler)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    rows = sum(b.extracted for b in batches)
    lines = [line for line in log_file.read_text().splitlines() if "extract process" in line]
    assert len(lines) == 1, lines
    assert f": {rows} rows in {len(batches)} batches" in lines[0]
    assert "DEBUG" in lines[0] and "countydatasync.sync.producer" in lines[0]

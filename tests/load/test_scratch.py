"""Batches staged through ADBC's SQLite driver (load/scratch.py): values keep their storage class, and a
scratch file that cannot be written fails the run cleanly."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from countydatasync.errors import PublishError
from countydatasync.load import scratch
from countydatasync.sync import run_sync

from ..signals import sigint_after
from ..sync.helpers import file_digests

# The storage class SQLite should hold for each declared type (besides NULL).
STORAGE = {"TEXT": "text", "REAL": "real", "INTEGER": "integer", "DATE": "text", "DATETIME": "text"}


def _classes(path: Path, table: str) -> dict[str, set[str]]:
    """Column -> the storage classes its values have."""
    con = sqlite3.connect(path)
    try:
        columns = [(row[1], row[2].upper()) for row in con.execute(f'PRAGMA table_info("{table}")')]
        found = {}
        for name, declared in columns:
            kinds = {r[0] for r in con.execute(f'SELECT DISTINCT typeof("{name}") FROM "{table}"')}
            found[name] = (declared, kinds)
        return found
    finally:
        con.close()


def test_values_are_stored_in_the_class_their_column_declares(sample_db: Path, make_settings) -> None:
    settings = make_settings(sample_db)
    run_sync(settings)
    out = settings.output
    checked = 0
    for path, table in [(out.working_path, "parcels"), (out.geo_path, settings.output.layer)]:
        for name, (declared, kinds) in _classes(path, table).items():
            if declared == "MULTIPOLYGON":
                assert kinds == {"blob"}, name
            elif declared in STORAGE:
                assert kinds <= {STORAGE[declared], "null"}, f"{table}.{name} ({declared}) holds {kinds}"
                checked += STORAGE[declared] in kinds
    assert checked > 40  # most columns of both tables hold values of their own class
    hashes = sqlite3.connect(out.working_path).execute(
        "SELECT count(*) FROM parcels WHERE typeof(attr_hash) = 'integer' AND typeof(geom_hash) = 'integer'"
    )
    assert hashes.fetchone()[0] > 2_500


def test_an_unwritable_scratch_directory_fails_the_run_and_keeps_the_previous_state(
    source_copy: Path, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(source_copy)
    run_sync(settings)
    before = file_digests(settings)
    missing = tmp_path / "no such directory"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))  # what TMPDIR pointing nowhere gives
    with pytest.raises(PublishError, match="could not write a batch to a scratch file in") as failure:
        run_sync(settings, full=True)
    assert str(missing) in str(failure.value) and "TMPDIR" in str(failure.value)
    assert file_digests(settings) == before
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert run_sync(settings, full=True).status == "succeeded"
    assert not list(tmp_path.glob("countydatasync-*"))  # the scratch file goes with its batch


def test_a_python_whose_sqlite_cannot_deserialize_is_refused_before_anything_is_opened(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(sample_db)
    # An older build: sqlite3.Connection without deserialize (a C type, so the module is stood in for).
    monkeypatch.setattr(scratch, "sqlite3", SimpleNamespace(Connection=object, sqlite_version="3.31.1"))
    with pytest.raises(PublishError, match=r"SQLite \(3\.31\.1\) cannot load a database from memory .* 3\.36 or"):
        run_sync(settings)
    assert not settings.output.working_path.exists()


def test_ctrl_c_during_a_fill_reaches_python_and_the_batch_is_written_whole() -> None:
    """In the main thread, ADBC swapped in its own SIGINT handler while a call ran: Ctrl-C cancelled the
    scratch write (the run failed with a confusing scratch error) and never reached the CLI's handler,
    which stops a run cleanly. The scratch work now runs in a worker thread."""
    con = sqlite3.connect(":memory:")
    scratch.attach(con)
    table = scratch.ScratchTable(con, "batch_rows", ["n", "text"])
    rows = pa.table({"n": pa.array(range(3_000_000)), "text": pa.array(["a parcel's text"] * 3_000_000)})
    with sigint_after(0.2) as caught:
        start = time.monotonic()
        table.fill(rows)
        end = time.monotonic()
    assert end - start > 0.3, "the fill ended before the signal came; make the batch bigger"
    assert len(caught) == 1  # Python's handler saw Ctrl-C
    assert con.execute("SELECT count(*), max(n) FROM scratch.batch_rows").fetchone() == (3_000_000, 2_999_999)

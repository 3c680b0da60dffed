"""A batch's rows bound in C: ADBC's SQLite driver writes them into a scratch database file, and the run's
connection loads that file into memory (sqlite3's deserialize) as the attached schema `scratch`.

Bound one value at a time from Python (sqlite3's executemany), the rows cost the writer 5.6 s per
1,000,000 parcels, over a third of its time; this way they cost about 2.5 s. The run's connection cannot
attach a file once its transaction has begun, but it can replace the content of a database attached
before, and reads it inside the transaction like any other table.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa

from countydatasync.errors import PublishError
from countydatasync.load.geopackage import q
from countydatasync.signals import off_main_thread

SCHEMA = "scratch"
PAGE_SIZE = 65536
CACHE_KIB = 256 * 1024  # an upper bound: pages are taken as the batch needs them


def require_support() -> None:
    """Python 3.11+ has Connection.deserialize where its SQLite was built with the API (the default since
    SQLite 3.36)."""
    if not hasattr(sqlite3.Connection, "deserialize"):
        raise PublishError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) cannot load a database from memory (sqlite3's "
            "deserialize), which staging needs: use a Python built with SQLite 3.36 or later"
        )


def attach(con: sqlite3.Connection) -> None:
    """Make room for scratch tables; before the run's transaction begins (ATTACH is refused inside one)."""
    con.execute(f"ATTACH DATABASE ':memory:' AS {SCHEMA}")


class ScratchTable:
    """`scratch.<name>`, refilled batch by batch. Its columns have no declared type, so values keep the
    storage class they were bound with, as in a table filled by executemany."""

    def __init__(self, con: sqlite3.Connection, name: str, columns: list[str]) -> None:
        self.con, self.name, self.columns = con, name, columns

    def fill(self, rows: pa.Table) -> None:
        """Replace the table's rows with `rows` (columns named and ordered as `columns`)."""
        data = off_main_thread(lambda: self._written(rows))  # Ctrl-C stays with Python (see signals.py)
        self.con.deserialize(data, name=SCHEMA)

    def _written(self, rows: pa.Table) -> bytes:
        """The bytes of a scratch database holding `rows`."""
        # In a directory of its own (mode 0700): no other account can swap the file between write and read.
        # Written and read back within the batch, it seldom reaches the disk.
        directory = None
        try:
            directory = Path(tempfile.mkdtemp(prefix="countydatasync-"))
            path = directory / "batch.sqlite"
            with adbc.connect(str(path), autocommit=True) as scratch, scratch.cursor() as cursor:
                # Large pages and a cache that holds the whole batch: the rows go in with fewer page splits and
                # never leave memory (the driver's ingest took a fifth less time than with 4 KiB pages).
                cursor.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                cursor.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                cursor.execute("PRAGMA journal_mode = OFF")
                cursor.execute("PRAGMA synchronous = OFF")  # a scratch file: nothing to keep after a crash
                cursor.execute(f"CREATE TABLE {q(self.name)} ({', '.join(q(c) for c in self.columns)})")
                cursor.adbc_ingest(self.name, rows, mode="append")
            return path.read_bytes()
        except (adbc.Error, OSError) as exc:
            raise PublishError(
                f"could not write a batch to a scratch file in {directory or tempfile.gettempdir()} "
                f"({(str(exc).splitlines() or [type(exc).__name__])[0]}): free space there, or set TMPDIR to a "
                "directory with room. Nothing was published; the previous state is intact."
            ) from exc
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

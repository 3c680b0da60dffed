"""Ctrl-C while the writer's main thread reads the source (the key set, a small run's pages) reaches
Python's handler, which the command line uses to stop a run cleanly; ADBC would otherwise take it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from countydatasync.extract import open_source
from countydatasync.settings import Settings

from ..signals import sigint_after

ROWS = 1_500_000


def test_ctrl_c_during_a_read_in_the_main_thread_reaches_python(tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite"
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE "MasterParcels" ("PIN" TEXT PRIMARY KEY, "Shape" BLOB)')
    con.execute(
        'INSERT INTO "MasterParcels" WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n '
        f"WHERE i < {ROWS}) SELECT printf('P%09d', i), zeroblob(16) FROM n"
    )
    con.commit()
    con.close()
    settings = Settings(
        source={"url": f"sqlite:///{path}", "modified_column": "", "batch_size": ROWS},
        columns=[],
        stats={"dimensions": [], "measures": []},
    )
    source = open_source(settings)
    source.table()  # the catalog check, before the timed read
    try:
        with sigint_after(0.1) as caught:
            start = time.monotonic()
            pages = list(source.batches())
            end = time.monotonic()
    finally:
        source.close()
    assert len(caught) == 1  # Python's handler saw Ctrl-C; ADBC did not cancel the read
    assert start + 0.1 <= caught[0] <= end + 0.05, "the read ended before the signal came; make the table bigger"
    assert sum(len(p) for p in pages) == ROWS

"""Read-only access to the staging databases for the web app.

Every read opens its database with a `mode=ro` URI, so no request can change a file even through a bug,
and a sync that holds its write transaction only ever waits for our short reads. Connections are opened
per request: they are cheap, and a fresh connection always sees the files a sync has just replaced.
Paths come from the settings only, never from a request.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from countydatasync.load.transaction import is_published

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0  # a sync's commit holds an exclusive lock for a moment; wait that out


class StagingUnavailable(Exception):
    """A staging database is missing or unreadable (no sync has run yet, or a file is damaged)."""


def q(name: str) -> str:
    """Quote an SQL identifier (names come from the settings, which validate them too)."""
    return '"' + name.replace('"', '""') + '"'


def readonly_uri(path: Path) -> str:
    """A read-only SQLite URI; as_uri() percent-encodes ' ', '?', '#' and writes Windows drives right."""
    return path.resolve().as_uri() + "?mode=ro"


def roll_back_hot_journal(path: Path) -> None:
    """Roll back the journal a sync killed mid-run left beside `path`, as the next opener (a sync, GDAL,
    QGIS) would: a read-only connection cannot, and would fail every read until the next sync. This
    restores the last published state; a running sync holds its lock, so its journal is never hot."""
    con = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True, timeout=READ_TIMEOUT_S)
    try:
        con.execute("PRAGMA schema_version").fetchone()  # the first read rolls the journal back
    finally:
        con.close()


def _hot_journal(con: sqlite3.Connection, wanted: dict[str, Path]) -> Path | None:
    """Attach the `wanted` databases other than main and read each once: the first whose journal a killed
    sync left hot, or None. SQLite finds a hot journal on the first read of a file, so here and not in
    the middle of a request."""
    for schema, path in wanted.items():
        try:
            if schema != "main":
                con.execute(f"ATTACH DATABASE ? AS {q(schema)}", (readonly_uri(path),))
            con.execute(f"PRAGMA {q(schema)}.schema_version").fetchone()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_READONLY_ROLLBACK:
                return path
            raise
    return None


def _connect(wanted: dict[str, Path]) -> sqlite3.Connection:
    """A read-only connection with the `wanted` databases by schema name (main first), without hot journals."""
    for _ in range(len(wanted) + 1):  # each file may need one rollback
        con = sqlite3.connect(readonly_uri(wanted["main"]), uri=True, timeout=READ_TIMEOUT_S, check_same_thread=False)
        try:
            hot = _hot_journal(con, wanted)
        except BaseException:
            con.close()
            raise
        if hot is None:
            return con
        con.close()
        log.warning("rolling back the journal an interrupted sync left beside %s", hot.name)
        roll_back_hot_journal(hot)
    raise sqlite3.OperationalError("a journal left by an interrupted sync could not be rolled back")


@contextmanager
def open_readonly(path: Path, attach: dict[str, Path] | None = None) -> Iterator[sqlite3.Connection]:
    """A read-only connection to `path`, with other staging databases attached read-only by schema name.

    Raises StagingUnavailable when a file is missing or empty, so the API answers 503 instead of creating
    it or naming a table it lacks.
    """
    wanted = {"main": path, **(attach or {})}
    # File names only: a response must not reveal the server's folders.
    missing = [p.name for p in wanted.values() if not is_published(p)]
    if missing:
        raise StagingUnavailable("staging database not found or empty: " + ", ".join(missing) + "; run a sync first")
    try:
        con = _connect(wanted)
    except sqlite3.Error as exc:
        raise StagingUnavailable(f"cannot open {path.name}: {exc}") from exc
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        log.warning("staging read failed: %s", exc)
        raise StagingUnavailable(f"cannot read the staging databases: {exc}") from exc
    finally:
        con.close()


def has_table(con: sqlite3.Connection, schema: str, table: str) -> bool:
    row = con.execute(f"SELECT 1 FROM {q(schema)}.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None

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


@contextmanager
def open_readonly(path: Path, attach: dict[str, Path] | None = None) -> Iterator[sqlite3.Connection]:
    """A read-only connection to `path`, with other staging databases attached read-only by schema name.

    Raises StagingUnavailable when a file is missing, so the API answers 503 instead of creating it.
    """
    wanted = {"main": path, **(attach or {})}
    # File names only: a response must not reveal the server's folders.
    missing = [p.name for p in wanted.values() if not p.is_file()]
    if missing:
        raise StagingUnavailable("staging database not found: " + ", ".join(missing) + "; run a sync first")
    try:
        con = sqlite3.connect(readonly_uri(path), uri=True, timeout=READ_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StagingUnavailable(f"cannot open {path.name}: {exc}") from exc
    try:
        for schema, other in (attach or {}).items():
            con.execute(f"ATTACH DATABASE ? AS {q(schema)}", (readonly_uri(other),))
        yield con
    except sqlite3.DatabaseError as exc:
        log.warning("staging read failed: %s", exc)
        raise StagingUnavailable(f"cannot read the staging databases: {exc}") from exc
    finally:
        con.close()


def has_table(con: sqlite3.Connection, schema: str, table: str) -> bool:
    row = con.execute(f"SELECT 1 FROM {q(schema)}.sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone()
    return row is not None

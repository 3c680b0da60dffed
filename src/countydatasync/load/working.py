"""The working DB: an editable attribute copy with per-parcel sync status, the errors and the change log.

Only the tables named here are ours; tables that other applications add are never touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import pandas as pd

from countydatasync.load.geopackage import SQL_TYPES, q
from countydatasync.settings import ColumnSpec

STATUS_COLUMNS = [
    ("sync_status", "TEXT NOT NULL"),
    ("sync_reason", "TEXT"),
    ("sync_message", "TEXT"),
    ("attr_hash", "INTEGER"),
    ("geom_hash", "INTEGER"),
    ("first_seen", "TEXT"),
    ("source_modified", "TEXT"),
    ("last_changed", "TEXT"),
    ("last_synced", "TEXT"),
    ("last_run_id", "INTEGER"),
    ("in_geo", "INTEGER NOT NULL DEFAULT 0"),
]
# A parcel counts in the aggregates when its published version is its current one.
COUNTED = "in_geo = 1 AND sync_status != 'error'"

SUPPORT_DDL = [
    "CREATE TABLE IF NOT EXISTS {s}.errors (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, {key} TEXT, "
    "source_row INTEGER, reason TEXT NOT NULL, message TEXT, excerpt TEXT, severity TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {s}.ix_errors_run ON errors (run_id)",
    "CREATE INDEX IF NOT EXISTS {s}.ix_errors_key ON errors ({key})",
    "CREATE TABLE IF NOT EXISTS {s}.change_log (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, {key} TEXT "
    "NOT NULL, action TEXT NOT NULL CHECK (action IN ('insert', 'update', 'delete')), changed_fields TEXT, "
    "at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {s}.ix_change_log_key ON change_log ({key})",
    "CREATE INDEX IF NOT EXISTS {s}.ix_change_log_run ON change_log (run_id)",
    "CREATE TABLE IF NOT EXISTS {s}.sync_state (name TEXT PRIMARY KEY, value TEXT)",
]


def attribute_columns(columns: Sequence[ColumnSpec]) -> list[tuple[str, str]]:
    return [*((c.name, SQL_TYPES[c.type]) for c in columns), ("gis_acres", "REAL")]


def create_tables(con: sqlite3.Connection, schema: str, key_name: str, columns: Sequence[ColumnSpec]) -> None:
    """Create the parcels table and the support tables that do not exist yet."""
    cols = ", ".join(f"{q(n)} {t}" for n, t in [*attribute_columns(columns), *STATUS_COLUMNS])
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.parcels ({q(key_name)} TEXT PRIMARY KEY, {cols})")
    con.execute(f"CREATE INDEX IF NOT EXISTS {schema}.ix_parcels_sync_status ON parcels (sync_status)")
    for ddl in SUPPORT_DDL:
        con.execute(ddl.format(s=schema, key=q(key_name)))


EDITED_LOCALLY = "edited_locally"  # the reason, and the sync_state flag that makes the next run recompute


def create_edit_trigger(con: sqlite3.Connection, schema: str, key_name: str, attrs: Sequence[str]) -> None:
    """Mark a parcel whose carried columns someone edited by hand `pending` (reason edited_locally), and flag
    the edit in sync_state. The source is the master: the next sync restores its values, logs the fields
    it restored, and recomputes the aggregates, which still count the values from before the edit. A sync's
    own writes always set last_synced; an edit by hand leaves it alone."""
    columns = [key_name, *attrs]
    edited = " OR ".join(f"NEW.{q(c)} IS NOT OLD.{q(c)}" for c in columns)
    con.execute(
        f"CREATE TRIGGER IF NOT EXISTS {schema}.parcels_edited_locally AFTER UPDATE OF "
        f"{', '.join(q(c) for c in columns)} ON parcels WHEN NEW.last_synced IS OLD.last_synced AND ({edited}) "
        f"BEGIN UPDATE parcels SET sync_status = 'pending', sync_reason = '{EDITED_LOCALLY}', sync_message = "
        "'edited in the working DB; the next sync restores the values of the source' "
        f"WHERE {q(key_name)} = NEW.{q(key_name)} AND sync_status != 'error'; "
        f"INSERT INTO sync_state (name, value) VALUES ('{EDITED_LOCALLY}', '1') "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value; END"
    )


def drop_parcels(con: sqlite3.Connection, schema: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS {schema}.parcels")


def get_state(con: sqlite3.Connection, schema: str, name: str) -> str | None:
    try:
        row = con.execute(f"SELECT value FROM {schema}.sync_state WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # no such table: a new working DB
        return None
    return row[0] if row else None


def set_state(con: sqlite3.Connection, schema: str, name: str, value: str | None) -> None:
    con.execute(
        f"INSERT INTO {schema}.sync_state (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def previous_versions(
    con: sqlite3.Connection,
    schema: str,
    key_name: str,
    keys: list[str],
    columns: Sequence[str] = ("attr_hash", "geom_hash", "sync_status", "in_geo"),
) -> pd.DataFrame:
    """The stored state of the given parcels (absent keys are simply missing), indexed by key."""
    select = ", ".join(q(c) for c in (key_name, *columns))
    rows = con.execute(
        f"SELECT {select} FROM {schema}.parcels WHERE {q(key_name)} IN (SELECT value FROM json_each(?))",
        (json.dumps(list(keys)),),
    ).fetchall()
    return pd.DataFrame.from_records(rows, columns=[key_name, *columns]).set_index(key_name)

"""The stats DB: run history and aggregates by land use, zoning, neighbourhood and tax district.

Aggregates cover the parcels whose published version is current (not those held back by an error).
A full run computes them with GROUP BY; an incremental run adds the difference its changes made, so
unchanged parcels are never read again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from countydatasync.load.geopackage import q
from countydatasync.load.working import COUNTED, get_state
from countydatasync.sync.result import RunResult

Deltas = dict[tuple[str, str], list[float]]


# Declared types are what GDAL (QGIS, ogr2ogr, ArcGIS through its SQLite support) reads a column as: DATETIME
# as DateTime, BIGINT as a 64-bit Integer64; TEXT would be a string, and INTEGER a 32-bit Integer that clamps
# larger values to 2147483647. run_id stays INTEGER PRIMARY KEY, the rowid, which GDAL reads as the FID.
RUN_COUNTS = ("extracted", "inserted", "updated", "unchanged", "rejected", "deleted", "repaired")
RUN_COLUMNS = [
    ("run_id", "INTEGER PRIMARY KEY"),
    ("started_at", "DATETIME NOT NULL"),
    ("finished_at", "DATETIME"),
    ("status", "TEXT NOT NULL"),
    ("mode", "TEXT NOT NULL"),
    ("source", "TEXT"),
    *((count, "BIGINT") for count in RUN_COUNTS),
    ("duration_s", "REAL"),
    ("message", "TEXT"),
]
MEASURE_TYPES = [("_sum", "REAL"), ("_count", "BIGINT"), ("_mean", "REAL")]


def aggregate_columns(measures: Sequence[str]) -> list[tuple[str, str]]:
    """(name, declared type) of the aggregates table's columns."""
    measure_cols = [(m + suffix, typ) for m in measures for suffix, typ in MEASURE_TYPES]
    return [
        ("dimension", "TEXT NOT NULL"),
        ("value", "TEXT NOT NULL"),
        ("parcel_count", "BIGINT NOT NULL"),
        *measure_cols,
    ]


def _declared(con: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, declared type) of the table's columns; empty when there is no such table."""
    return [(row[1], row[2].upper()) for row in con.execute(f"PRAGMA {schema}.table_info({table})")]


def _types_differ(con: sqlite3.Connection, schema: str, table: str, columns: list[tuple[str, str]]) -> bool:
    """True when the table exists with other columns or types than `columns` (a stats DB written before)."""
    declared = _declared(con, schema, table)
    return bool(declared) and declared != [(name, typ.split()[0]) for name, typ in columns]


def _ddl(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{q(name)} {typ}" for name, typ in columns)


def _upgrade_runs(con: sqlite3.Connection, schema: str) -> None:
    """Move an older history into a table with today's types, keeping every row (its index goes with the old
    table and is made again by the caller)."""
    kept = ", ".join(q(name) for name, _ in _declared(con, schema, "runs") if name in dict(RUN_COLUMNS))
    con.execute(f"ALTER TABLE {schema}.runs RENAME TO runs_before_upgrade")
    con.execute(f"CREATE TABLE {schema}.runs ({_ddl(RUN_COLUMNS)})")
    con.execute(f"INSERT INTO {schema}.runs ({kept}) SELECT {kept} FROM {schema}.runs_before_upgrade")
    con.execute(f"DROP TABLE {schema}.runs_before_upgrade")


def create_tables(con: sqlite3.Connection, schema: str, measures: Sequence[str]) -> None:
    """Create the run history and the aggregates table if missing. Older tables get today's types: the history
    keeps its rows; the aggregates are dropped, and the run recomputes them (see `aggregates_lost`)."""
    if _types_differ(con, schema, "runs", RUN_COLUMNS):
        _upgrade_runs(con, schema)
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.runs ({_ddl(RUN_COLUMNS)})")
    con.execute(f"CREATE INDEX IF NOT EXISTS {schema}.ix_runs_started ON runs (started_at)")
    columns = aggregate_columns(measures)
    if _types_differ(con, schema, "aggregates", columns):
        drop_aggregates(con, schema)
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.aggregates ({_ddl(columns)}, PRIMARY KEY (dimension, value))")


def drop_aggregates(con: sqlite3.Connection, schema: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS {schema}.aggregates")


def next_run_id(con: sqlite3.Connection, stats: str, working: str) -> int:
    """One past the last run in the history or in the working DB, whichever is later: a lost stats DB must
    not restart the ids that the change log and the errors table already use."""
    last = int(con.execute(f"SELECT coalesce(max(run_id), 0) FROM {stats}.runs").fetchone()[0])
    return max(last, int(get_state(con, working, "last_run_id") or 0)) + 1


def aggregates_lost(con: sqlite3.Connection, stats: str, working: str) -> bool:
    """True when parcels count but no aggregate does (the stats DB was deleted or replaced): adding a run's
    differences to nothing would not give the totals."""
    query = (
        f"SELECT NOT EXISTS (SELECT 1 FROM {stats}.aggregates) "
        f"AND EXISTS (SELECT 1 FROM {working}.parcels WHERE {COUNTED})"
    )
    return con.execute(query).fetchone()[0] == 1


def record_run(con: sqlite3.Connection, schema: str, result: RunResult) -> None:
    """Insert or replace the run's row in the history."""
    record = result.as_record()
    con.execute(
        f"INSERT OR REPLACE INTO {schema}.runs ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
        list(record.values()),
    )


def _group_query(working: str, dimension: str, measures: Sequence[str]) -> str:
    sums = "".join(f", sum({q(m)}), count({q(m)})" for m in measures)
    return f"SELECT {q(dimension)}, count(*){sums} FROM {working}.parcels WHERE {COUNTED} GROUP BY 1"


def _group_labels(values: pd.Series) -> np.ndarray:
    """A dimension's values as the text of their groups, '' for missing. Batches and stored rows are labelled
    here alike: SQLite's CAST AS TEXT spells a REAL otherwise than Python does (5.0e-05 for 5e-05, and 0.3
    for 0.30000000000000004), so one parcel would count in two groups."""
    return values.astype("string").fillna("").to_numpy(dtype=object)


def recompute(
    con: sqlite3.Connection, stats: str, working: str, dimensions: Sequence[str], measures: Sequence[str]
) -> None:
    """Replace all aggregates with a GROUP BY over the working DB."""
    con.execute(f"DELETE FROM {stats}.aggregates")
    deltas: Deltas = {}
    for dim in dimensions:
        rows = con.execute(_group_query(working, dim, measures)).fetchall()
        labels = _group_labels(pd.Series([r[0] for r in rows], dtype=object))
        for label, row in zip(labels, rows, strict=True):  # NULL and '' are one group
            merge(deltas, {(dim, label): [float(v or 0) for v in row[1:]]})
    apply_deltas(con, stats, deltas, measures)


def contributions(
    con: sqlite3.Connection,
    working: str,
    key_name: str,
    keys: Iterable[str],
    dimensions: Sequence[str],
    measures: Sequence[str],
) -> Deltas:
    """What the given parcels currently add to each group: their rows read once, grouped in memory (a query
    per dimension read them once per dimension)."""
    if not dimensions and not measures:  # no statistics configured: nothing to read (nor a valid SELECT)
        return {}
    rows = con.execute(
        f"SELECT {', '.join(q(c) for c in [*dimensions, *measures])} FROM {working}.parcels "
        f"WHERE {COUNTED} AND {q(key_name)} IN (SELECT value FROM json_each(?))",
        (json.dumps(list(keys)),),
    ).fetchall()
    if not rows:
        return {}
    columns = list(zip(*rows, strict=True))
    groups = [_group_labels(pd.Series(c, dtype=object)) for c in columns[: len(dimensions)]]
    values = np.array(columns[len(dimensions) :], dtype="float64").T.reshape(len(rows), len(measures))
    return _grouped(dict(zip(dimensions, groups, strict=True)), values)


def frame_contributions(frame: pd.DataFrame, dimensions: Sequence[str], measures: Sequence[str]) -> Deltas:
    """What rows about to be published add to each group: the same figures as `contributions`, computed
    from the batch in memory instead of read back from the database."""
    if frame.empty:
        return {}
    groups = {dim: _group_labels(frame[dim]) for dim in dimensions}
    return _grouped(groups, frame[list(measures)].astype("float64").to_numpy())


def _grouped(groups: dict[str, np.ndarray], values: np.ndarray) -> Deltas:
    """Per dimension and group: parcel count, then (sum, count of non-null) per measure (a column of `values`)."""
    out: Deltas = {}
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    for dim, labels in groups.items():
        codes, names = pd.factorize(labels)
        n = len(names)
        table = np.empty((n, 1 + 2 * values.shape[1]))
        table[:, 0] = np.bincount(codes, minlength=n)
        for i in range(values.shape[1]):
            table[:, 1 + 2 * i] = np.bincount(codes, weights=filled[:, i], minlength=n)
            table[:, 2 + 2 * i] = np.bincount(codes, weights=present[:, i], minlength=n)
        out.update(zip(((dim, g) for g in names.tolist()), table.tolist(), strict=True))
    return out


def subtract(after: Deltas, before: Deltas) -> Deltas:
    """after - before, group by group."""
    out = {key: list(values) for key, values in after.items()}
    for key, values in before.items():
        current = out.get(key)
        out[key] = [-v for v in values] if current is None else [a - b for a, b in zip(current, values, strict=True)]
    return out


EXACT_LIMIT = 2.0**53  # floats hold every integer up to this; past it, sums lose what smaller values add


def inexact(*parts: Deltas) -> bool:
    """Whether any figure is too large to add and subtract exactly: a parcel valued at 2**62 (a typo at the
    source) swallows the cents of the whole group in floating point, and taking it out again does not give
    them back. A run that meets one recomputes the aggregates instead of applying differences."""
    return any(abs(v) >= EXACT_LIMIT for part in parts for values in part.values() for v in values)


def merge(total: Deltas, more: Deltas) -> None:
    for key, values in more.items():
        current = total.get(key)
        total[key] = values if current is None else [a + b for a, b in zip(current, values, strict=True)]


def apply_deltas(con: sqlite3.Connection, stats: str, deltas: Deltas, measures: Sequence[str]) -> None:
    """Add per-group differences (count, then sum and count per measure) and refresh the sums of no values and
    the means."""
    if not deltas:
        return
    cols = ["parcel_count"] + [c for m in measures for c in (f"{m}_sum", f"{m}_count")]
    updates = ", ".join(f"{q(c)} = {q(c)} + excluded.{q(c)}" for c in cols)
    con.executemany(
        f"INSERT INTO {stats}.aggregates (dimension, value, {', '.join(q(c) for c in cols)}) VALUES "
        f"(?, ?, {', '.join('?' * len(cols))}) ON CONFLICT (dimension, value) DO UPDATE SET {updates}",
        [(dim, value, *values) for (dim, value), values in deltas.items()],
    )
    con.execute(f"DELETE FROM {stats}.aggregates WHERE parcel_count <= 0")
    # Over no values the sum is 0, as a rebuild has it: what floating point leaves of added and subtracted
    # values (0.1 + 0.2 - 0.1 - 0.2 is 2.8e-17) is not a sum of anything.
    settled = ", ".join(
        f"{q(m + '_sum')} = CASE WHEN {q(m + '_count')} > 0 THEN {q(m + '_sum')} ELSE 0.0 END, "
        f"{q(m + '_mean')} = CASE WHEN {q(m + '_count')} > 0 THEN {q(m + '_sum')} / {q(m + '_count')} END"
        for m in measures
    )
    if settled:
        con.execute(f"UPDATE {stats}.aggregates SET {settled}")

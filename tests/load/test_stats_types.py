"""The stats DB as GDAL reads it (QGIS, ogr2ogr, and ArcGIS through its SQLite support): run times as
DateTime, counts as 64-bit integers, also in a stats DB written before the columns had those types."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyogrio

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from ..sync.helpers import query

RUN_COUNTS = ["extracted", "inserted", "updated", "unchanged", "rejected", "deleted", "repaired"]
# The tables as the stats DB had them before: TEXT times and INTEGER counts, which GDAL reads as text and as
# 32-bit integers (a larger value comes out as 2147483647).
OLD_RUNS = (
    "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT "
    "NULL, mode TEXT NOT NULL, source TEXT, extracted INTEGER, inserted INTEGER, updated INTEGER, unchanged "
    "INTEGER, rejected INTEGER, deleted INTEGER, repaired INTEGER, duration_s REAL, message TEXT)"
)
OLD_AGGREGATES = (
    "CREATE TABLE aggregates (dimension TEXT NOT NULL, value TEXT NOT NULL, parcel_count INTEGER NOT NULL, "
    "acres_sum REAL, acres_count INTEGER, acres_mean REAL, PRIMARY KEY (dimension, value))"
)


def _gdal_types(path: Path, layer: str) -> dict[str, str]:
    info = pyogrio.read_info(path, layer=layer)
    return dict(zip(info["fields"], info["dtypes"], strict=True))


def _assert_gdal_reads_types(path: Path) -> None:
    runs = _gdal_types(path, "runs")
    assert runs["started_at"].startswith("datetime64"), runs
    assert runs["finished_at"].startswith("datetime64"), runs
    assert {runs[c] for c in RUN_COUNTS} == {"int64"}, runs
    aggregates = _gdal_types(path, "aggregates")
    assert aggregates["parcel_count"] == "int64" and aggregates["acres_count"] == "int64", aggregates


def test_gdal_reads_run_times_as_datetimes_and_counts_as_64_bit_integers(
    sample_db: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sample_db, stats={"dimensions": ["land_use"], "measures": ["acres"]})
    result = run_sync(settings)
    stats = settings.output.stats_path
    _assert_gdal_reads_types(stats)
    runs = pyogrio.read_dataframe(stats, layer="runs", read_geometry=False)
    started = pd.Timestamp(runs["started_at"][0])
    assert abs(started - pd.Timestamp(result.started_at)) < pd.Timedelta(milliseconds=1)
    assert runs["inserted"].tolist() == [result.inserted]


def test_a_stats_db_from_before_gets_the_types_and_keeps_its_history(
    sample_db: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(sample_db, stats={"dimensions": ["land_use"], "measures": ["acres"]})
    first = run_sync(settings)
    stats = settings.output.stats_path
    aggregates_sql = "SELECT * FROM aggregates ORDER BY dimension, value"
    expected = query(stats, aggregates_sql)
    con = sqlite3.connect(stats)
    with con:  # the same rows in the tables as they were declared before
        for table, ddl in (("runs", OLD_RUNS), ("aggregates", OLD_AGGREGATES)):
            con.execute(f"ALTER TABLE {table} RENAME TO {table}_kept")
            con.execute(ddl)
            con.execute(f"INSERT INTO {table} SELECT * FROM {table}_kept")
            con.execute(f"DROP TABLE {table}_kept")
        con.execute("CREATE INDEX ix_runs_started ON runs (started_at)")
    con.close()

    second = run_sync(settings)
    _assert_gdal_reads_types(stats)
    assert query(stats, "SELECT run_id, inserted FROM runs ORDER BY run_id").values.tolist() == [
        [first.run_id, first.inserted],
        [second.run_id, 0],
    ]
    indexes = query(stats, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")
    assert indexes["name"].tolist() == ["ix_runs_started"]
    pd.testing.assert_frame_equal(query(stats, aggregates_sql), expected)

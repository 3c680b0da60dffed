"""What a real county's PostGIS MasterParcels table can hold, column type by column type, through whole runs
against the live server: every odd value is loaded as PostgreSQL holds it or rejected on its own row with
the column and value named; no run crashes, and every extracted row is accounted for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from countydatasync.settings import Settings
from countydatasync.sync import run_sync
from countydatasync.sync.result import RunResult

pytestmark = pytest.mark.postgres

SQUARE = "'SRID=2927;POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'"


def _table(conninfo: str, schema: str, columns: str, rows: list[str], name: str = "MasterParcels") -> None:
    """MasterParcels with a key, a square for every row, a modified column and `columns`; each of `rows`
    is the SQL of the values of `columns` (its key is K0, K1, ...)."""
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(f'CREATE TABLE {schema}."{name}" ("PIN" text, "Shape" geometry, "LastModified" {columns})')
        for i, values in enumerate(rows):
            con.execute(f"INSERT INTO {schema}.\"{name}\" VALUES ('K{i}', {SQUARE}, {values})")


def _settings(url: str, schema: str, staging: Path, columns: list[dict[str, str]], **source: object) -> Settings:
    return Settings(
        source={
            "url": url,
            "db_schema": schema,
            "geometry_encoding": "native",
            "batch_size": 3,
            "max_retries": 0,
            **source,
        },
        columns=columns,
        stats={"dimensions": [columns[0]["name"]], "measures": []},
        output={"directory": staging},
    )


def _sync(settings: Settings) -> RunResult:
    result = run_sync(settings)
    assert result.status == "succeeded", result.error
    assert result.extracted == result.inserted + result.updated + result.unchanged + result.rejected
    return result


def _working(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(settings.output.working_path) as con:
        return con.execute(sql).fetchall()


def test_dates_and_timestamps_python_cannot_hold_are_rejected_naming_the_value(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    """'infinity' (PostgreSQL's "no end date"), BC and years past 9999 crashed the conversion of the whole
    page (dates, timestamptz) or arrived silently as the year -290278 (timestamp)."""
    odd = ["'infinity'", "'-infinity'", "'0044-03-15 BC'", "'12000-01-01'"]
    rows = ["now(), '2024-05-01', '2024-05-01 10:00', '2024-05-01 10:00+00'"]
    rows += [f"now(), {v}, NULL, NULL" for v in odd] + [f"now(), NULL, {v}, NULL" for v in odd]
    rows += [f"now(), NULL, NULL, {v}" for v in odd] + ["now(), '9999-12-31', '9999-12-31 23:59:59', NULL"]
    _table(pg_conninfo, pg_schema, 'timestamp, "Ended" date, "Stamp" timestamp, "StampTz" timestamptz', rows)
    columns = [
        {"source": "Ended", "name": "ended", "type": "date"},
        {"source": "Stamp", "name": "stamp", "type": "datetime"},
        {"source": "StampTz", "name": "stamp_tz", "type": "datetime"},
    ]
    settings = _settings(pg_url, pg_schema, tmp_path, columns)
    first = _sync(settings)
    assert (first.extracted, first.inserted, first.rejected) == (14, 2, 12)
    loaded = _working(settings, "SELECT pin, ended, stamp, stamp_tz FROM parcels WHERE sync_status = 'synced'")
    assert sorted(loaded) == [
        ("K0", "2024-05-01", "2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.000Z"),
        ("K13", "9999-12-31", "9999-12-31T23:59:59.000Z", None),
    ]
    errors = _working(settings, "SELECT pin, reason, message FROM errors ORDER BY CAST(substr(pin, 2) AS INTEGER)")
    assert [e[1] for e in errors] == ["bad_attribute"] * 12
    for (pin, _, message), column in zip(errors, ["ended"] * 4 + ["stamp"] * 4 + ["stamp_tz"] * 4, strict=True):
        value = odd[(int(pin[1:]) - 1) % 4].strip("'").split(" ")[0]
        assert message.startswith(f"column {column}: value '{value}"), message
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f'UPDATE {pg_schema}."MasterParcels" SET "LastModified" = now()')
    again = _sync(settings)
    assert (again.mode, again.extracted, again.unchanged, again.rejected) == ("incremental", 14, 2, 12)


@pytest.mark.parametrize("modified", ["timestamp", "timestamptz", "date"])
def test_an_infinite_modified_value_never_becomes_the_watermark(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path, modified: str
) -> None:
    """The rows are read (an 'infinity' row in every watermark run) and their watermark is the latest
    finite value; source_modified is left empty instead of a wrapped-around year -290278."""
    rows = ["'2024-01-01', 'a'", "'infinity', 'b'", "'-infinity', 'c'", "'2024-01-02', 'd'"]
    _table(pg_conninfo, pg_schema, f'{modified}, "OwnerName" text', rows)
    settings = _settings(pg_url, pg_schema, tmp_path, [{"source": "OwnerName", "name": "owner_name"}])
    assert _sync(settings).inserted == 4
    stored = _working(settings, "SELECT pin, source_modified FROM parcels ORDER BY pin")
    assert [(pin, (when or "")[:10]) for pin, when in stored] == [
        ("K0", "2024-01-01"),
        ("K1", ""),
        ("K2", ""),
        ("K3", "2024-01-02"),
    ]
    assert _working(settings, "SELECT value FROM sync_state WHERE name = 'watermark'")[0][0].startswith("2024-01-02")
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(
            f'UPDATE {pg_schema}."MasterParcels" SET "OwnerName" = \'new\', "LastModified" = now() WHERE "PIN" = \'K0\''
        )
    second = _sync(settings)
    assert (second.mode, second.updated) == ("incremental", 1)
    assert _working(settings, "SELECT owner_name FROM parcels WHERE pin = 'K0'") == [("new",)]


def test_money_is_read_as_its_amount_not_in_cents(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    rows = ["now(), '$1,234.50', '$1,234.50'", "now(), '-0.01', '-0.01'", "now(), NULL, '0'"]
    _table(pg_conninfo, pg_schema, 'timestamp, "Value" money, "ValueText" money', rows)
    columns = [{"source": "Value", "name": "value", "type": "real"}, {"source": "ValueText", "name": "value_text"}]
    settings = _settings(pg_url, pg_schema, tmp_path, columns)
    assert _sync(settings).inserted == 3
    assert _working(settings, "SELECT value, value_text FROM parcels ORDER BY pin") == [
        (1234.5, "1234.50"),
        (-0.01, "-0.01"),
        (None, "0.00"),
    ]


def test_a_real_column_keeps_its_decimal_value(pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path) -> None:
    """float4 widened to float64 loaded 0.1 as 0.10000000149011612."""
    _table(pg_conninfo, pg_schema, 'timestamp, "Acres" real', ["now(), 0.1", "now(), 2.3", "now(), 1e30"])
    columns = [{"source": "Acres", "name": "acres", "type": "real"}, {"source": "Acres", "name": "acres_text"}]
    settings = _settings(pg_url, pg_schema, tmp_path, columns)
    _sync(settings)
    assert _working(settings, "SELECT acres, acres_text FROM parcels ORDER BY pin") == [
        (0.1, "0.1"),
        (2.3, "2.3"),
        (1e30, "1e+30"),
    ]


# Types that ADBC hands over as raw binary, numpy arrays or Python objects: each is carried as the text
# PostgreSQL shows for it.
AS_TEXT = {
    "int[]": ["'{1,2,3}'", "(SELECT array_agg(g) FROM generate_series(1, 1500) g)"],  # numpy cut it to '...'
    "text[]": ["'{a,\"b c\",NULL}'", "'{{x,y},{z,w}}'"],
    "interval": ["'1 day 02:00'", "'-3 months'"],
    "time": ["'24:00'", "'10:00:00.5'"],  # 24:00 failed the whole run
    "timetz": ["'10:00+02'", "'00:00Z'"],
    "inet": ["'192.168.0.1/24'", "'::1'"],
    "point": ["'(1,2)'", "'(3.5,-4)'"],
    "int4range": ["'[1,5)'", "'empty'"],
    "geometry": ["'SRID=2927;POINT(1 2)'", "'POINT EMPTY'"],
}


def test_types_without_a_faithful_arrow_form_are_carried_as_their_text(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    names = [f"C{i}" for i in range(len(AS_TEXT))]
    columns_sql = ", ".join(f'"{n}" {t}' for n, t in zip(names, AS_TEXT, strict=True))
    rows = ["now(), " + ", ".join(values[i] for values in AS_TEXT.values()) for i in range(2)]
    _table(pg_conninfo, pg_schema, f"timestamp, {columns_sql}", rows)
    settings = _settings(pg_url, pg_schema, tmp_path, [{"source": n, "name": n.lower()} for n in names])
    assert _sync(settings).inserted == 2
    with psycopg.connect(pg_conninfo) as con:
        expected = con.execute(
            f'SELECT {", ".join(f"{chr(34)}{n}{chr(34)}::text" for n in names)} FROM {pg_schema}."MasterParcels" '
            'ORDER BY "PIN"'
        ).fetchall()
    assert _working(settings, f"SELECT {', '.join(n.lower() for n in names)} FROM parcels ORDER BY pin") == expected


def test_a_date_modified_column_reads_edits_made_later_on_the_watermark_day(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    """`col > since` cast to a date skipped the rest of the watermark's own day (without an overlap)."""
    _table(pg_conninfo, pg_schema, 'date, "OwnerName" text', ["current_date - 1, 'a'", "current_date - 1, 'b'"])
    settings = _settings(
        pg_url, pg_schema, tmp_path, [{"source": "OwnerName", "name": "owner_name"}], modified_overlap_seconds=0
    )
    _sync(settings)
    for pin, owner in (("K0", "first edit"), ("K1", "second edit")):
        with psycopg.connect(pg_conninfo, autocommit=True) as con:
            con.execute(
                f'UPDATE {pg_schema}."MasterParcels" SET "OwnerName" = %s, "LastModified" = current_date '
                'WHERE "PIN" = %s',
                (owner, pin),
            )
        assert _sync(settings).updated == 1
    assert _working(settings, "SELECT owner_name FROM parcels ORDER BY pin") == [("first edit",), ("second edit",)]


def test_a_materialized_view_is_read_like_a_table(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    _table(pg_conninfo, pg_schema, 'timestamp, "OwnerName" text', ["now(), 'a'", "now(), 'b'"], name="Base")
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f'CREATE MATERIALIZED VIEW {pg_schema}."MasterParcels" AS SELECT * FROM {pg_schema}."Base"')
    settings = _settings(pg_url, pg_schema, tmp_path, [{"source": "OwnerName", "name": "owner_name"}])
    assert _sync(settings).inserted == 2


def test_numerics_and_dates_arrive_as_the_text_postgresql_writes(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    """ADBC hands numerics over as their text and dates as dates; both reach the transform as Arrow text.
    Integers past 2**53 stay exact, a numeric carried as text keeps PostgreSQL's spelling (not 1.000E-7, as
    Python's Decimal would write it), and a numeric NaN is a bad value of its row."""
    columns_sql = 'timestamp, "Big" numeric(30,0), "Price" numeric(14,2), "Tiny" numeric(20,10), "Sold" date'
    rows = [
        "now(), 9007199254740993, 1234.50, 0.0000001, '2024-05-01'",
        "now(), NULL, NULL, NULL, NULL",
        "now(), -9007199254740993, 'NaN', 12, '0001-01-01'",
    ]
    _table(pg_conninfo, pg_schema, columns_sql, rows)
    columns = [
        {"source": "Big", "name": "big", "type": "integer"},
        {"source": "Price", "name": "price", "type": "real"},
        {"source": "Price", "name": "price_text", "type": "text"},
        {"source": "Tiny", "name": "tiny_text", "type": "text"},
        {"source": "Sold", "name": "sold", "type": "date"},
        {"source": "Sold", "name": "sold_text", "type": "text"},
    ]
    settings = _settings(pg_url, pg_schema, tmp_path, columns)
    result = _sync(settings)
    assert (result.extracted, result.inserted, result.rejected) == (3, 2, 1)
    loaded = _working(
        settings,
        "SELECT pin, big, price, price_text, tiny_text, sold, sold_text FROM parcels WHERE sync_status = 'synced'",
    )
    assert sorted(loaded) == [
        ("K0", 9007199254740993, 1234.5, "1234.50", "0.0000001000", "2024-05-01", "2024-05-01"),
        ("K1", None, None, None, None, None, None),
    ]
    errors = _working(settings, "SELECT pin, reason, lower(message) FROM errors")
    assert errors == [("K2", "bad_attribute", "column price: value 'nan' is not a valid value")]  # ADBC writes nan

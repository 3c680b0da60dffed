"""The PostgreSQL/PostGIS source against the real server: paging, geometry, snapshots, retries, errors."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

import pandas as pd
import psycopg
import pytest
import shapely

from countydatasync.errors import PermanentSourceError, SchemaError, TransientSourceError
from countydatasync.extract import RAW_GEOM, RAW_KEY, RAW_MODIFIED, RAW_SRID, open_source
from countydatasync.extract.postgres import PostgresSource, is_transient
from countydatasync.sample.county import sample_batches
from countydatasync.settings import Settings
from tests.conftest import PG_SAMPLE_COUNTY

pytestmark = pytest.mark.postgres

SECRET = "s3;cr}t@p%ss"  # noqa: S105 - a test password with ; } @ and %


def _settings(url: str, schema: str, table: str = "MasterParcels", **source: object) -> Settings:
    values: dict[str, object] = {
        "url": url,
        "db_schema": schema,
        "table": table,
        "geometry_encoding": "native",
        "batch_size": 700,
        "max_retries": 3,
        "retry_backoff_seconds": 0.05,
    }
    values.update(source)
    return Settings(
        source=values,
        columns=[{"source": "OwnerName", "name": "owner_name"}],
        stats={"dimensions": [], "measures": []},
    )


def _sample_settings(pg_url: str, pg_sample: str, **source: object) -> Settings:
    return Settings(
        source={
            "url": pg_url,
            "db_schema": pg_sample,
            "geometry_encoding": "native",
            "batch_size": 700,
            "max_retries": 3,
            "retry_backoff_seconds": 0.05,
            **source,
        }
    )


def _source_keys(conninfo: str, schema: str, table: str = "MasterParcels") -> list[str | None]:
    with psycopg.connect(conninfo) as con:
        return [r[0] for r in con.execute(f'SELECT "PIN" FROM {schema}."{table}"')]


def _sorted(keys: list[object]) -> list[str]:
    return sorted(str(k) for k in keys)


def _keys(frames: Iterator[pd.DataFrame]) -> list[object]:
    return [None if pd.isna(k) else k for frame in frames for k in frame[RAW_KEY]]


def test_reads_every_sample_row_once_with_geometry_and_srid(pg_url: str, pg_conninfo: str, pg_sample: str) -> None:
    source = open_source(_sample_settings(pg_url, pg_sample))
    assert isinstance(source, PostgresSource)
    frames = list(source.batches())
    got = pd.concat(frames, ignore_index=True)
    assert _sorted(list(got[RAW_KEY].astype(object).where(got[RAW_KEY].notna(), None))) == _sorted(
        _source_keys(pg_conninfo, pg_sample)
    )
    assert len(got) == PG_SAMPLE_COUNTY.parcels == source.count_rows()
    assert max(len(f) for f in frames) <= 700
    assert set(got[RAW_SRID].dropna()) == {2927}
    # Geometry survives the trip: compare with the generator's own shapes for keys that occur once.
    original = pd.concat(sample_batches(PG_SAMPLE_COUNTY), ignore_index=True)
    original = original[original["PIN"].notna() & ~original["PIN"].duplicated(keep=False)]
    original = original[[isinstance(g, shapely.Geometry) for g in original["Shape"]]].set_index("PIN")["Shape"]
    read = got[got[RAW_KEY].isin(original.index) & got[RAW_GEOM].notna()]
    shapes = shapely.from_wkb(read[RAW_GEOM].to_numpy(dtype=object))
    assert len(read) > 2_900
    assert shapely.equals_exact(shapes, original.loc[read[RAW_KEY].to_numpy()].to_numpy(), 1e-6).all()
    source.close()


def test_modified_since_accepts_datetime_and_text(pg_url: str, pg_sample: str, pg_conninfo: str) -> None:
    source = open_source(_sample_settings(pg_url, pg_sample))
    with psycopg.connect(pg_conninfo) as con:
        expected = con.execute(
            f'SELECT count(*) FROM {pg_sample}."MasterParcels" WHERE "LastModified" > %s', ("2025-06-01",)
        ).fetchone()[0]
    for since in (datetime(2025, 6, 1), "2025-06-01T00:00:00"):
        rows = pd.concat(source.batches(modified_since=since))  # type: ignore[arg-type]
        assert len(rows) == expected
        assert (rows[RAW_MODIFIED] > pd.Timestamp("2025-06-01")).all()
    assert source.count_rows(datetime(2025, 6, 1)) == expected
    source.close()


def _make_table(
    conninfo: str,
    schema: str,
    keys: list[str | None],
    table: str = "MasterParcels",
    shape: str = "geometry(Geometry, 2927)",
    value: str = "ST_GeomFromText('POINT(1 2)', 2927)",
) -> None:
    with psycopg.connect(conninfo) as con:
        con.execute(
            f'CREATE TABLE {schema}."{table}" ("PIN" text, "Shape" {shape}, "LastModified" timestamp, "OwnerName" text)'
        )
        with con.cursor() as cur:
            cur.executemany(
                f'INSERT INTO {schema}."{table}" VALUES (%s, {value}, now(), %s)',
                [(k, f"owner {i}") for i, k in enumerate(keys)],
            )


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 100])
def test_paging_keeps_duplicates_together_and_null_keys_last(
    pg_url: str, pg_conninfo: str, pg_schema: str, batch: int
) -> None:
    keys = ["A", "B", "B", "B", "C", "D", "D", "E", None, "F", None, "a", "b"]
    _make_table(pg_conninfo, pg_schema, keys)
    source = open_source(_settings(pg_url, pg_schema, batch_size=batch))
    batches = [_keys(iter([b])) for b in source.batches()]
    assert _sorted([k for b in batches for k in b]) == _sorted(keys)
    for key in ("B", "D"):
        assert sum(key in b for b in batches) == 1
    assert batches[-1] == [None, None]
    source.close()


@pytest.mark.parametrize(
    ("encoding", "column", "value"),
    [
        ("wkb", "bytea", "ST_AsBinary(ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))'))"),
        ("wkt", "text", "'POLYGON((0 0, 1 0, 1 1, 0 0))'"),
    ],
)
def test_wkb_and_wkt_columns_are_read_as_stored(
    pg_url: str, pg_conninfo: str, pg_schema: str, encoding: str, column: str, value: str
) -> None:
    _make_table(pg_conninfo, pg_schema, ["A"], shape=column, value=value)
    frame = next(open_source(_settings(pg_url, pg_schema, geometry_encoding=encoding)).batches())
    assert RAW_SRID not in frame.columns
    geom = frame[RAW_GEOM].iloc[0]
    parsed = shapely.from_wkb(geom) if encoding == "wkb" else shapely.from_wkt(geom)
    assert parsed.equals(shapely.from_wkt("POLYGON((0 0, 1 0, 1 1, 0 0))"))


def test_a_geography_column_arrives_as_longitude_latitude_with_its_srid(
    pg_url: str, pg_conninfo: str, pg_schema: str
) -> None:
    ring = "POLYGON((-122.90 47.03, -122.89 47.03, -122.89 47.04, -122.90 47.04, -122.90 47.03))"
    _make_table(
        pg_conninfo,
        pg_schema,
        ["A"],
        shape="geography(Polygon, 4326)",
        value=f"ST_GeogFromText('SRID=4326;{ring}')",
    )
    frame = next(open_source(_settings(pg_url, pg_schema)).batches())
    assert frame[RAW_SRID].iloc[0] == 4326
    assert shapely.from_wkb(frame[RAW_GEOM].iloc[0]).equals(shapely.from_wkt(ring))  # x is the longitude


@pytest.mark.parametrize("field", ["table", "db_schema", "key_column", "geometry_column", "modified_column"])
def test_names_from_settings_cannot_inject_sql(pg_url: str, pg_conninfo: str, pg_schema: str, field: str) -> None:
    _make_table(pg_conninfo, pg_schema, ["A", "B"])
    evil = f'MasterParcels"; DROP TABLE {pg_schema}."MasterParcels"; --'
    source = open_source(_settings(pg_url, pg_schema, **{field: evil}))
    with pytest.raises(SchemaError, match="not found|has no column"):
        list(source.batches())
    assert len(_source_keys(pg_conninfo, pg_schema)) == 2


def test_a_killed_connection_is_resumed_after_the_last_complete_batch(
    pg_url: str, pg_conninfo: str, pg_sample: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend from a second connection after the first batch: no duplicates, no gaps."""
    source = open_source(_sample_settings(pg_url, pg_sample, batch_size=500))
    pids: list[int] = []
    frames = []
    with caplog.at_level(logging.WARNING, logger="countydatasync.extract"):
        for i, frame in enumerate(source.batches()):
            frames.append(frame)
            pid = source._frame(__import__("sqlalchemy").text("SELECT pg_backend_pid() AS pid"))["pid"].iloc[0]
            pids.append(int(pid))
            if i in (0, 3):
                with psycopg.connect(pg_conninfo, autocommit=True) as admin:
                    assert admin.execute("SELECT pg_terminate_backend(%s)", (int(pid),)).fetchone()[0]
    got = [k for k in _keys(iter(frames))]
    assert _sorted(got) == _sorted(_source_keys(pg_conninfo, pg_sample))
    assert len(got) == PG_SAMPLE_COUNTY.parcels
    non_null = [k for k in got if k is not None]
    assert pd.Series(non_null).is_monotonic_increasing  # each key once, in order, across the reconnects
    assert len(set(pids)) == 3  # two reconnects happened
    assert sum("retry 1 of 3" in r.getMessage() for r in caplog.records) == 2
    source.close()


def test_an_extraction_reads_one_snapshot(pg_url: str, pg_conninfo: str, pg_schema: str) -> None:
    _make_table(pg_conninfo, pg_schema, [f"K{i:03d}" for i in range(20)])
    source = open_source(_settings(pg_url, pg_schema, batch_size=5))
    batches = source.batches()
    first = next(batches)
    with psycopg.connect(pg_conninfo, autocommit=True) as writer:
        writer.execute(f'DELETE FROM {pg_schema}."MasterParcels" WHERE "PIN" = \'K019\'')
        writer.execute(f'UPDATE {pg_schema}."MasterParcels" SET "OwnerName" = \'changed\'')
        writer.execute(f'INSERT INTO {pg_schema}."MasterParcels" ("PIN") VALUES (\'K010a\')')
    rest = pd.concat(list(batches), ignore_index=True)
    assert list(first[RAW_KEY]) + list(rest[RAW_KEY]) == [f"K{i:03d}" for i in range(20)]
    assert "changed" not in set(rest["OwnerName"])
    assert sorted(pd.concat(source.batches())[RAW_KEY]) == sorted([f"K{i:03d}" for i in range(19)] + ["K010a"])
    source.close()


def test_missing_table_fails_at_once(pg_url: str, pg_schema: str) -> None:
    source = open_source(_settings(pg_url, pg_schema, table="NoSuchTable", max_retries=5, retry_backoff_seconds=5))
    with pytest.raises(SchemaError, match="'NoSuchTable' not found"):
        list(source.batches())


@pytest.fixture
def secret_role(pg_conninfo: str, pg_schema: str) -> Iterator[str]:
    """A login role whose password holds ; } @ and %, and that may not read anything yet."""
    role = f"cds_{pg_schema}"
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(SECRET)
            )
        )
        con.execute(f"GRANT USAGE ON SCHEMA {pg_schema} TO {role}")
    yield role
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f"DROP OWNED BY {role}")
        con.execute(f"DROP ROLE {role}")


def _as_role(pg_url: str, role: str, schema: str, **source: object) -> Settings:
    url = __import__("sqlalchemy").engine.make_url(pg_url).set(username=role, password=None)
    return _settings(url.render_as_string(), schema, password=SECRET, **source)


def _assert_no_secret(text: str) -> None:
    from urllib.parse import quote

    for form in (SECRET, quote(SECRET, safe=""), "cr}t", "p%ss", "s3;cr"):
        assert form not in text


def test_permission_denied_fails_at_once_without_the_password(
    pg_url: str, pg_conninfo: str, pg_schema: str, secret_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    _make_table(pg_conninfo, pg_schema, ["A"])
    source = open_source(_as_role(pg_url, secret_role, pg_schema, retry_backoff_seconds=5))
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(PermanentSourceError, match="permission denied") as info,
    ):
        list(source.batches())
    _assert_no_secret(str(info.value))
    _assert_no_secret(source.description)
    _assert_no_secret(caplog.text)
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        con.execute(f'GRANT SELECT ON {pg_schema}."MasterParcels" TO {secret_role}')
    # The password's special characters survive URL building for both drivers (this server trusts
    # local logins, so it is carried, not checked).
    assert _keys(open_source(_as_role(pg_url, secret_role, pg_schema)).batches()) == ["A"]


def test_an_unknown_login_fails_at_once_without_the_password(pg_url: str, pg_schema: str) -> None:
    source = open_source(_as_role(pg_url, "no_such_role_x", pg_schema, retry_backoff_seconds=5))
    with pytest.raises(PermanentSourceError, match='role "no_such_role_x" does not exist') as info:
        list(source.batches())
    _assert_no_secret(str(info.value))


def test_an_unreachable_server_is_retried_then_reported(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = __import__("sqlalchemy").engine.make_url(pg_url).set(port=1, password=None).render_as_string()
    source = open_source(_settings(url, "public", password=SECRET, max_retries=2, retry_backoff_seconds=0.01))
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(TransientSourceError, match="gave up after 2 retries") as info,
    ):
        source.count_rows()
    assert [r.getMessage().split("; ")[-1][:10] for r in caplog.records] == ["retry 1 of", "retry 2 of"]
    _assert_no_secret(str(info.value) + caplog.text)


@pytest.mark.parametrize(
    ("sqlstate", "text", "transient"),
    [
        ("57P01", "terminating connection due to administrator command", True),
        ("40P01", "deadlock detected", True),
        ("40001", "could not serialize access", True),
        ("57014", "canceling statement due to statement timeout", True),
        ("25P03", "terminating connection due to idle-in-transaction timeout", True),
        ("08006", "connection failure", True),
        (None, "server closed the connection unexpectedly", True),
        (None, 'FATAL:  password authentication failed for user "x"', False),
        (None, 'FATAL:  database "x" does not exist', False),
        ("28P01", "password authentication failed", False),
        ("42P01", 'relation "x" does not exist', False),
        ("42501", "permission denied for table x", False),
        (None, 'IO: [libpq] Failed to connect: invalid sslmode value: "bogus"', False),
        (None, 'invalid connection option "sslmod"', False),
    ],
)
def test_errors_are_classified_by_sqlstate(sqlstate: str | None, text: str, transient: bool) -> None:
    assert is_transient(sqlstate, text) is transient
    # Without a SQLSTATE only connection-level errors are worth a retry.
    assert is_transient(sqlstate, text, connection_error=False) is (transient and sqlstate is not None)


def test_a_statement_timeout_is_transient_and_retried_on_a_new_session(
    pg_url: str, pg_sample: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = __import__("sqlalchemy").text
    source = open_source(_sample_settings(pg_url, pg_sample, max_retries=1, retry_backoff_seconds=0.01))
    source._frame(text("SELECT set_config('statement_timeout', '1', false)"))  # this session only
    with caplog.at_level(logging.WARNING):
        frame = source._frame(text("SELECT count(*) AS n FROM generate_series(1, 3000000)"))
    assert frame["n"].iloc[0] == 3_000_000
    assert "statement timeout" in caplog.text and "retry 1 of 1" in caplog.text
    source.close()


@pytest.mark.parametrize("key_type", ["integer", "bigint", "numeric(12,0)", "varchar(20)"])
def test_keys_of_any_common_type_page_without_gaps(
    pg_url: str, pg_conninfo: str, pg_schema: str, key_type: str
) -> None:
    keys = [5, 1, 3, 3, 2, 9, 7, 7, 7, 4, None]
    with psycopg.connect(pg_conninfo) as con:
        con.execute(
            f'CREATE TABLE {pg_schema}."MasterParcels" ("PIN" {key_type}, "Shape" bytea, '
            '"LastModified" timestamptz, "OwnerName" text)'
        )
        with con.cursor() as cur:
            cur.executemany(f'INSERT INTO {pg_schema}."MasterParcels" ("PIN") VALUES (%s)', [(k,) for k in keys])
    source = open_source(_settings(pg_url, pg_schema, batch_size=2, geometry_encoding="wkb"))
    got = [None if pd.isna(k) else int(k) for frame in source.batches() for k in frame[RAW_KEY]]
    assert got == [1, 2, 3, 3, 4, 5, 7, 7, 7, 9, None]
    copies = pd.concat(source.all_keys())
    assert [int(k) for k in copies[RAW_KEY]] == [1, 2, 3, 4, 5, 7, 9]
    assert list(copies["__copies"]) == [1, 1, 2, 1, 1, 3, 1]
    # The sync asks for keys as text (its normalized form); they compare as the column's type.
    again = pd.concat(source.rows_for_keys(["3", "9", "8"]))
    assert [int(k) for k in again[RAW_KEY]] == [3, 3, 9]
    source.close()


def test_a_snapshot_closed_by_the_idle_timeout_is_resumed(
    pg_url: str, pg_conninfo: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends a transaction left idle too long (a slow writer between two batches)."""
    import time

    import sqlalchemy as sa

    _make_table(pg_conninfo, pg_schema, [f"K{i:03d}" for i in range(30)])
    source = open_source(_settings(pg_url, pg_schema, batch_size=10))
    keys: list[object] = []
    with caplog.at_level(logging.WARNING):
        for i, frame in enumerate(source.batches()):
            keys.extend(frame[RAW_KEY])
            if i == 0:
                source._frame(sa.text("SELECT set_config('idle_in_transaction_session_timeout', '100', false)"))
                time.sleep(0.5)
    assert keys == [f"K{i:03d}" for i in range(30)]
    assert "retry 1 of 3" in caplog.text
    source.close()


def _keyed_table(conninfo: str, schema: str, key_type: str, keys: list[str], modified: str = "timestamp") -> None:
    with psycopg.connect(conninfo, autocommit=True) as con:
        if key_type == "citext":
            con.execute("CREATE EXTENSION IF NOT EXISTS citext")
        con.execute(f"CREATE COLLATION {schema}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        con.execute(
            f'CREATE TABLE {schema}."MasterParcels" ("PIN" {key_type}, "Shape" bytea, '
            f'"LastModified" {modified}, "OwnerName" text)'
        )
        with con.cursor() as cur:
            cur.executemany(
                f'INSERT INTO {schema}."MasterParcels" ("PIN", "OwnerName") VALUES (%s, %s)',
                [(k, f"owner {i}") for i, k in enumerate(keys)],
            )


def _rows(frames: Iterator[pd.DataFrame]) -> list[tuple[object, object]]:
    return [(k, o) for frame in frames for k, o in zip(frame[RAW_KEY], frame["OwnerName"], strict=True)]


@pytest.mark.parametrize(
    ("key_type", "keys", "batches", "copies", "wanted", "selected"),
    [
        # numeric without a scale: 1.5 = 1.50 in SQL, but ADBC reads '1.5' and '1.50'
        (
            "numeric",
            ["1.5", "1.50", "2"],
            [[("1.5", "owner 0"), ("1.5", "owner 1")], [("2", "owner 2")]],
            [("1.5", 2), ("2", 1)],
            "1.50",
            [("1.5", "owner 0"), ("1.5", "owner 1")],
        ),
        # case-insensitive keys ('a' = 'A' in SQL): paged as their text, so two keys; citext used to loop
        (
            "citext",
            ["a", "A", "b"],
            [[("A", "owner 1")], [("a", "owner 0")], [("b", "owner 2")]],
            [("A", 1), ("a", 1), ("b", 1)],
            "a",
            [("a", "owner 0")],
        ),
        (
            "text COLLATE {schema}.ci",
            ["a", "A", "b"],
            [[("A", "owner 1")], [("a", "owner 0")], [("b", "owner 2")]],
            [("A", 1), ("a", 1), ("b", 1)],
            "a",
            [("a", "owner 0")],
        ),
    ],
)
def test_keys_the_database_calls_equal_are_neither_lost_nor_looped_over(
    pg_url: str,
    pg_conninfo: str,
    pg_schema: str,
    key_type: str,
    keys: list[str],
    batches: list[list[tuple[str, str]]],
    copies: list[tuple[str, int]],
    wanted: str,
    selected: list[tuple[str, str]],
) -> None:
    _keyed_table(pg_conninfo, pg_schema, key_type.format(schema=pg_schema), keys)
    source = open_source(_settings(pg_url, pg_schema, batch_size=2, geometry_encoding="wkb", max_retries=0))
    assert [_rows(iter([frame])) for frame in itertools.islice(source.batches(), 6)] == batches
    assert _rows(source.rows_for_keys([wanted])) == selected
    frame = pd.concat(source.all_keys())
    assert list(zip(frame[RAW_KEY], frame["__copies"], strict=True)) == copies
    source.close()


@pytest.mark.parametrize("modified", ["timestamp", "timestamptz", "text"])
def test_a_watermark_as_text_or_datetime_matches_a_text_or_timestamp_column(
    pg_url: str, pg_conninfo: str, pg_schema: str, modified: str
) -> None:
    """The sync passes text ('2024-03-01T00:00:00') exactly when the modified column holds text."""
    _keyed_table(pg_conninfo, pg_schema, "text", ["A", "B", "C"], modified=modified)
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        stamps = ["2024-01-01 00:00:00", "2024-07-01 00:00:00", "2024-07-02 00:00:00"]
        for key, stamp in zip(["A", "B", "C"], stamps, strict=True):
            con.execute(f'UPDATE {pg_schema}."MasterParcels" SET "LastModified" = %s WHERE "PIN" = %s', (stamp, key))
    source = open_source(_settings(pg_url, pg_schema, geometry_encoding="wkb", max_retries=0))
    for since in ("2024-03-01T00:00:00", "2024-03-01 00:00:00", datetime(2024, 3, 1)):
        assert source.count_rows(since) == 2  # type: ignore[arg-type]
        assert _rows(source.batches(since)) == [("B", "owner 1"), ("C", "owner 2")]  # type: ignore[arg-type]
    source.close()


PASSWORD_WITH_SPACE = 'my pass@word;}%"q'


def test_a_password_with_spaces_and_quotes_connects_and_never_shows(
    pg_url: str, pg_conninfo: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server trusts local logins, so the password is carried, not checked: connecting proves ADBC got a
    connection string libpq accepts (a URL with the raw space was refused, echoing the password)."""
    _keyed_table(pg_conninfo, pg_schema, "text", ["A"])
    url = __import__("sqlalchemy").engine.make_url(pg_url).set(password=None)
    source = open_source(
        _settings(
            url.render_as_string(), pg_schema, geometry_encoding="wkb", max_retries=0, password=PASSWORD_WITH_SPACE
        )
    )
    assert _rows(source.batches()) == [("A", "owner 0")]
    source.close()
    forms = {PASSWORD_WITH_SPACE, quote(PASSWORD_WITH_SPACE, safe=""), quote(PASSWORD_WITH_SPACE, safe=" +"), "my pass"}
    bad_option = url.update_query_dict({"sslmode": "bogus"}).render_as_string()
    for where in (url.set(database="no_such_db").render_as_string(), bad_option):
        failing = open_source(_settings(where, pg_schema, password=PASSWORD_WITH_SPACE, retry_backoff_seconds=5))
        with caplog.at_level(logging.DEBUG), pytest.raises(PermanentSourceError) as info:  # refused, not retried
            list(failing.batches())
        assert not any(form in str(info.value) + caplog.text for form in forms)

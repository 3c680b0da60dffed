"""The SQL Server source without a server: its statements compiled by SQLAlchemy's mssql dialect, its error
classification, and its row handling fed the value types pyodbc returns. No SQL Server runs here, so the
queries themselves are not executed; see the README."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote_plus

import pytest
import shapely
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import make_url

from countydatasync.errors import ConfigError, PermanentSourceError, TransientSourceError
from countydatasync.extract import open_source
from countydatasync.extract.base import RAW_GEOM, RAW_KEY, RAW_MODIFIED, RAW_SRID, SourceSpec
from countydatasync.extract.mssql import MssqlSource
from countydatasync.settings import Settings
from countydatasync.transform import TransformPlan, transform_batch

SECRET = "s3;cr}t@p%ss"  # noqa: S105 - a test password with ; } @ and %
ODD_TABLE = "Master Parcels]; DROP TABLE x; --"
ODD_COLUMN = "Owner [Name]"


def _source(key_type: sa.types.TypeEngine[object] | None = None, encoding: str = "native") -> MssqlSource:
    spec = SourceSpec(
        table=ODD_TABLE,
        db_schema="dbo",
        key_column="PIN",
        geometry_column="Shape",
        geometry_encoding=encoding,
        modified_column="LastModified",
        attribute_columns=(ODD_COLUMN, "Acres"),
        batch_size=500,
    )
    url = make_url("mssql+pyodbc://cds@sqlhost:1433/county?driver=ODBC+Driver+18+for+SQL+Server")
    source = MssqlSource(url.set(password=SECRET), spec)
    # What `_reflect` would find in the catalog (it needs a server); the names were checked there.
    source.catalog_types = {"PIN": key_type if key_type is not None else sa.NVARCHAR(20)}
    source._table = sa.Table(
        ODD_TABLE,
        sa.MetaData(),
        *(sa.Column(c) for c in ["PIN", "Shape", "LastModified", ODD_COLUMN, "Acres"]),
        schema="dbo",
    )
    return source


def _sql(source: MssqlSource, stmt: sa.sql.Executable, **params: object) -> str:
    compiled = stmt.compile(dialect=source.dialect)
    return compiled.construct_expanded_state(params).statement  # type: ignore[attr-defined]


def test_page_query_uses_top_methods_binary_collation_and_a_bound_key() -> None:
    source = _source()
    sql = _sql(source, source.page_statement(datetime(2024, 1, 1), True, 500), last="x", since=None)
    assert sql.startswith("SELECT TOP 500 ")
    assert "LIMIT" not in sql and "OFFSET" not in sql
    assert "[Shape].STCurveToLine().STAsBinary() ELSE " in sql
    assert "[Shape].STSrid AS __srid" in sql
    assert "[PIN] COLLATE Latin1_General_BIN2) > ?" in sql
    assert sql.rstrip().endswith("ORDER BY dbo.[Master Parcels]]; DROP TABLE x; --].[PIN] COLLATE Latin1_General_BIN2")
    assert "[LastModified] > ?" in sql
    # Odd names are quoted (a ] inside doubled), never spliced in raw.
    assert "FROM dbo.[Master Parcels]]; DROP TABLE x; --]" in sql
    assert ".[Owner [Name]]]" in sql


def test_first_page_equal_key_and_key_list_queries() -> None:
    source = _source()
    first = _sql(source, source.page_statement(None, False, 50))
    assert first.startswith("SELECT TOP 50 ") and " > ?" not in first
    keys = source.key_expression(source.table().c.PIN)
    assert "COLLATE Latin1_General_BIN2) = ?" in _sql(
        source, source.select_rows().where(keys == sa.bindparam("k")), k="A"
    )
    in_list = _sql(source, source.keys_statement(["A", "B", "C"]))
    assert "COLLATE Latin1_General_BIN2) IN (?, ?, ?) ORDER BY" in in_list


def test_numeric_keys_get_no_collation_and_stored_geometry_is_read_as_is() -> None:
    source = _source(key_type=sa.Integer(), encoding="wkb")
    sql = _sql(source, source.page_statement(None, True, 10), last=5)
    assert "COLLATE" not in sql
    assert "[PIN] > ?" in sql
    assert "STAsBinary" not in sql and "__srid" not in sql


def test_the_password_is_braced_for_odbc_and_never_shown() -> None:
    source = _source()
    args, _ = source.dialect.create_connect_args(source.url)
    assert "PWD={s3;cr}}t@p%ss}" in args[0]  # ; and } cannot end the value early
    assert SECRET not in source.description and "***" in source.description


def test_a_password_inside_an_odbc_connect_url_is_never_shown() -> None:
    """The whole ODBC string in the URL, PWD after other keys: SQLAlchemy's hide_password misses it."""
    braced = "{" + SECRET.replace("}", "}}") + "}"
    connect = quote_plus(f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=sqlhost;UID=cds;PWD={braced};")
    source = open_source(Settings(source={"url": f"mssql+pyodbc:///?odbc_connect={connect}"}))
    assert "UID%3Dcds" in source.description and quote_plus(SECRET) not in source.description
    assert "PWD%3D***" in source.description


class PyodbcError(Exception):
    """The shape of a pyodbc error: args = (SQLSTATE, '[SQLSTATE] [driver]... message (number) (call)')."""


def _wrapped(sqlstate: str, text: str) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("SELECT ...", None, PyodbcError(sqlstate, text))


@pytest.mark.parametrize(
    ("sqlstate", "text", "transient"),
    [
        (
            "08S01",
            "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x68 (104)",
            True,
        ),
        (
            "40001",
            "[40001] Transaction (Process ID 57) was deadlocked on lock resources ... victim. (1205)",
            True,
        ),
        ("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0)", True),
        ("42000", "[42000] Database 'county' on server is not currently available. (40613)", True),
        ("28000", f"[28000] Login failed for user 'cds'. (18456) PWD={SECRET}", False),
        ("42S02", "[42S02] Invalid object name 'dbo.MasterParcels'. (208)", False),
        ("42000", "[42000] The SELECT permission was denied on the object 'MasterParcels'. (229)", False),
    ],
)
def test_driver_errors_are_classified_and_the_password_masked(sqlstate: str, text: str, transient: bool) -> None:
    error = _source().translate(_wrapped(sqlstate, text))
    assert isinstance(error, TransientSourceError if transient else PermanentSourceError)
    assert SECRET not in str(error) and "cr}}t" not in str(error)


def test_row_handling_takes_pyodbc_value_types_into_the_transform() -> None:
    """pyodbc returns bytes for STAsBinary, int for STSrid, Decimal for numeric, datetime, and None."""
    polygon = shapely.from_wkt("POLYGON((1000000 600000, 1000100 600000, 1000100 600200, 1000000 600000))")
    rows = [
        ("P1", shapely.to_wkb(polygon), 2927, datetime(2024, 5, 1, 12, 30), "Olsen, Mary", Decimal("0.2296")),
        ("P2", None, None, None, None, None),
    ]
    source = _source()
    frame = source.frame_from_rows(rows, [RAW_KEY, RAW_GEOM, RAW_SRID, RAW_MODIFIED, ODD_COLUMN, "Acres"])
    settings = Settings(
        columns=[
            {"source": ODD_COLUMN, "name": "owner_name"},
            {"source": "Acres", "name": "acres", "type": "real"},
        ],
        stats={"dimensions": [], "measures": []},
        source={"geometry_encoding": "native", "modified_column": None},
    )
    batch = transform_batch(frame, TransformPlan.from_settings(settings))
    parcels = batch.parcels.set_index("pin")
    assert list(parcels.index) == ["P1"]
    assert parcels.loc["P1", "acres"] == pytest.approx(0.2296)
    assert parcels.loc["P1", "owner_name"] == "Olsen, Mary"
    assert shapely.from_wkb(batch.wkb[0]).equals(shapely.multipolygons([polygon]))
    assert list(batch.issues["reason"]) == ["null_geometry"]


def test_other_drivers_are_refused() -> None:
    settings = Settings(source={"url": "mssql+pymssql://cds@sqlhost/county"})
    with pytest.raises(ConfigError, match="mssql\\+pyodbc"):
        open_source(settings)


@pytest.mark.skipif(importlib.util.find_spec("pyodbc") is not None, reason="pyodbc is installed")
def test_a_missing_pyodbc_is_a_clear_configuration_error() -> None:
    source = open_source(Settings(source={"url": "mssql+pyodbc://cds@sqlhost/county", "password": SECRET}))
    with pytest.raises(ConfigError, match=r"countydatasync\[mssql\]"):
        source.count_rows()


# --- column types: read by their reflected type --------------------------------------------------------


def _output(source: MssqlSource, column_type: sa.types.TypeEngine[object]) -> str:
    """The SELECT expression for the carried column ODD_COLUMN reflected as `column_type`."""
    source.catalog_types[ODD_COLUMN] = column_type
    outputs = source.attribute_outputs(source.table().c[ODD_COLUMN])
    return _sql(source, sa.select(*outputs))


@pytest.mark.parametrize(
    ("column_type", "cast"),
    [
        # pyodbc cannot return these at all: "ODBC SQL type -155 / -150 / -151 is not yet supported".
        (mssql.DATETIMEOFFSET(7), "CAST(dbo.[Master Parcels]]; DROP TABLE x; --].[Owner [Name]]] AS NVARCHAR(34))"),
        (mssql.SQL_VARIANT(), "AS NVARCHAR(max))"),
        (sa.types.NullType(), "AS NVARCHAR(max))"),  # hierarchyid and other CLR types, reflected as NullType
        # Non-Unicode text arrives in the client's code page, which pyodbc decodes as UTF-8.
        (mssql.VARCHAR(20, collation="SQL_Latin1_General_CP1_CI_AS"), "AS NVARCHAR(20))"),
        (mssql.VARCHAR(8000), "AS NVARCHAR(max))"),
        (mssql.VARCHAR(None), "AS NVARCHAR(max))"),
        (mssql.CHAR(10), "AS NVARCHAR(10))"),
        (mssql.TEXT(), "AS NVARCHAR(max))"),
    ],
)
def test_types_pyodbc_cannot_return_or_decodes_wrongly_are_cast_to_nvarchar(
    column_type: sa.types.TypeEngine[object], cast: str
) -> None:
    sql = _output(_source(), column_type)
    assert f"{cast} AS [Owner [Name]]] " in sql  # still carries the column's name


@pytest.mark.parametrize(
    "column_type",
    [
        mssql.NVARCHAR(50),
        mssql.NTEXT(),
        mssql.XML(),
        mssql.DATETIME2(7),
        mssql.DATETIME(),
        mssql.SMALLDATETIME(),
        mssql.DATE(),
        mssql.TIME(7),
        mssql.MONEY(),
        mssql.DECIMAL(38, 10),
        mssql.REAL(),
        mssql.BIT(),
        mssql.BIGINT(),
        mssql.UNIQUEIDENTIFIER(),
        mssql.VARBINARY(None),
    ],
)
def test_types_pyodbc_returns_faithfully_are_read_as_stored(column_type: sa.types.TypeEngine[object]) -> None:
    assert "CAST" not in _output(_source(), column_type)


def test_a_varchar_key_is_returned_as_nvarchar_but_compared_as_stored() -> None:
    source = _source(key_type=mssql.VARCHAR(20))
    sql = _sql(source, source.page_statement(None, True, 10), last="A")
    assert (
        "CAST(dbo.[Master Parcels]]; DROP TABLE x; --].[PIN] COLLATE Latin1_General_BIN2 AS NVARCHAR(20)) AS __key"
        in sql
    )
    assert "[PIN] COLLATE Latin1_General_BIN2) > ?" in sql  # the comparison and order keep the column's index
    unicode_key = _source(key_type=mssql.NVARCHAR(20))
    assert "CAST" not in _sql(unicode_key, unicode_key.page_statement(None, True, 10), last="A")


def test_a_datetimeoffset_modified_column_is_read_as_utc_and_compared_as_an_instant() -> None:
    source = _source()
    source.catalog_types["LastModified"] = mssql.DATETIMEOFFSET(7)
    sql = _sql(source, source.page_statement(datetime(2024, 1, 1), False, 10), since=datetime(2024, 1, 1))
    column = "dbo.[Master Parcels]]; DROP TABLE x; --].[LastModified]"
    assert f"CAST(SWITCHOFFSET({column}, '+00:00') AS DATETIME2(7)) AS __modified" in sql
    assert f"{column} > ?" in sql  # a naive UTC `since` takes the offset +00:00 in the comparison


def test_a_date_modified_column_is_compared_by_day() -> None:
    """Watermark 2024-05-01 (a date reads back as midnight) with no overlap: a row edited later that day has
    the same date and must still be read."""
    source = _source()
    source.catalog_types["LastModified"] = mssql.DATE()
    sql = _sql(source, source.page_statement(datetime(2024, 5, 1), False, 10), since=datetime(2024, 5, 1))
    assert "[LastModified] > DATEADD(day, -1, CAST(? AS DATE))" in sql


def test_an_invalid_geometry_is_read_without_stcurvetoline() -> None:
    """STCurveToLine raises on an invalid instance (one bad parcel failed the run); STAsBinary works on any."""
    source = _source()
    sql = _sql(source, source.select_rows())
    shape = "dbo.[Master Parcels]]; DROP TABLE x; --].[Shape]"
    valid, linear, stored = f"{shape}.STIsValid()", f"{shape}.STCurveToLine().STAsBinary()", f"{shape}.STAsBinary()"
    assert f"CASE WHEN ({valid} = 1) THEN {linear} ELSE {stored} END AS __geom" in sql


def test_pyodbc_bigints_with_nulls_reals_and_datetimeoffset_text_load_exactly() -> None:
    """pyodbc returns int for bigint (pandas made a column with a NULL float64: 2**60 + 1 became 2**60), a
    widened float32 for real (0.1 as 0.10000000149011612), and our nvarchar text of a datetimeoffset."""
    polygon = shapely.from_wkt("POLYGON((1000000 600000, 1000100 600000, 1000100 600200, 1000000 600000))")
    wkb = shapely.to_wkb(polygon)
    rows = [
        ("P1", wkb, 2927, 2**60 + 1, 0.10000000149011612, "2024-05-01 12:30:00.1234567 -07:00", 2**60 + 1),
        ("P2", wkb, 2927, None, None, None, None),
    ]
    source = _source()
    source.catalog_types.update({"Big": mssql.BIGINT(), "Ratio": mssql.REAL(), "Stamped": mssql.DATETIMEOFFSET()})
    frame = source.frame_from_rows(rows, [RAW_KEY, RAW_GEOM, RAW_SRID, "Big", "Ratio", "Stamped", "BigText"])
    settings = Settings(
        columns=[
            {"source": "Big", "name": "big", "type": "integer"},
            {"source": "BigText", "name": "big_text", "type": "text"},
            {"source": "Ratio", "name": "ratio", "type": "real"},
            {"source": "Stamped", "name": "stamped", "type": "datetime"},
        ],
        stats={"dimensions": [], "measures": []},
        source={"geometry_encoding": "native", "modified_column": None, "timezone": "America/Los_Angeles"},
    )
    parcels = transform_batch(frame, TransformPlan.from_settings(settings)).parcels.set_index("pin")
    assert parcels.loc["P1", "big"] == 2**60 + 1
    assert parcels.loc["P1", "big_text"] == str(2**60 + 1)
    assert parcels.loc["P1", "ratio"] == 0.1
    assert parcels.loc["P1", "stamped"] == "2024-05-01T19:30:00.123Z"  # the instant, not local time
    assert parcels.loc["P2"].drop("gis_acres").isna().all()

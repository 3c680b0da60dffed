"""SQL Server source, through SQLAlchemy's `mssql+pyodbc` dialect (Microsoft ODBC Driver 17/18 or FreeTDS).

Install the driver with the `mssql` extra (`pip install countydatasync[mssql]`, which brings pyodbc; pyodbc
needs unixODBC's libodbc on Linux). SQLAlchemy's dialect writes `TOP n` where other databases get LIMIT.

Geometry: a native `geometry` or `geography` column is read as `col.STCurveToLine().STAsBinary()` (circular
arcs become line strings, since WKB readers outside SQL Server do not take curves) with `col.STSrid` per
row. Both types have these methods. SQL Server stores invalid instances but runs only a few methods on them
(STIsValid, MakeValid, STAsText, STAsBinary, ToString, AsTextZM, AsGml): STCurveToLine on one fails the whole
statement, so an invalid instance is read as stored (`col.STAsBinary()`) and the transform repairs or rejects
it like any invalid parcel; a NULL stays NULL. SQL Server writes geography WKB in longitude/latitude order (x =
longitude), the axis order the transform assumes for EPSG:4326 and the like, so no swap is needed. Ring
orientation matters to SQL Server's geography only (the exterior ring is counter-clockwise so that the
interior is the smaller side); a planar reader gets the same parcel from either orientation, and a parcel is
far smaller than a hemisphere, so the rings are passed on as they are.

Keys: SQL Server's usual collations ignore case (and sometimes accents), so `'ab' = 'AB'` in SQL while
Python, and so the paging code, tells them apart; a keyset page boundary could then skip or repeat keys.
Text keys are therefore ordered and compared under the binary collation Latin1_General_BIN2. If the key
column has another collation, its index cannot serve that ORDER BY; declaring the key column (or an
indexed computed copy of it) with a _BIN2 collation avoids the sort.

Consistency: when the database allows snapshot isolation (`ALLOW_SNAPSHOT_ISOLATION ON`), an extraction
runs in one SNAPSHOT transaction and sees the table as of its start. Otherwise (the default) each page
is read at READ COMMITTED and the run has the key-range guarantee of keyset paging: every key is read
exactly once, a row that exists throughout the run is read in a committed state, and rows inserted,
deleted or re-keyed during the run may or may not be seen until the next run. After a reconnect the
snapshot, if any, is a new one.

Column types: pyodbc fails the whole statement on a type it has no conversion for ("ODBC SQL type -155 is not
yet supported" for datetimeoffset, -150 for sql_variant, -151 for CLR types such as hierarchyid), and reads
some others unfaithfully, so a carried column is read by its reflected type:

* `datetimeoffset`: its text with the offset ('2024-05-01 12:30:00.1234567 -07:00'), which the transform
  reads as that instant; as the modified column, its UTC time as datetime2(7), so the watermark and the `since`
  bound back compare as instants (SQL Server gives a datetime2 the offset +00:00 when comparing).
* `sql_variant`, CLR types (hierarchyid, a second geometry/geography, user CLR types: SQLAlchemy reflects them
  as NullType) and any other type SQLAlchemy does not know: CAST to nvarchar(max), which calls ToString on CLR
  types ('/1/2/', WKT).
* `varchar`, `char`, `text` (and a key of these types): CAST to nvarchar. The driver hands non-Unicode text
  over in the client's code page (CP1252 on a Western Windows, the locale on Linux) and pyodbc decodes it as
  UTF-8: anything past ASCII failed the run or came out garbled. The server's conversion to UTF-16 is exact
  for every collation.
* `real`: pyodbc widens float32 to a Python float (0.1 arrives as 0.10000000149011612); it is read back as the
  shortest decimal that gives the same float32 (0.1).
* integer columns holding NULLs: pandas would turn them into float64, rounding bigints past 2**53; they are
  kept as exact nullable integers.
* `date` as the modified column: compared by day, so an edit later on the watermark's own day is read.

datetime2(7), datetimeoffset(7) and time(7) hold 100 ns; pyodbc truncates to microseconds, so a watermark is
never later than the stored time and `col > since` re-reads rather than skips. The others (datetime, date,
smalldatetime, money and decimal as Decimal, float, bit, tinyint, bigint, uniqueidentifier as text, nvarchar,
ntext, xml, varbinary as bytes) arrive as Python values the transform reads as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.mssql import DATE, DATETIME2, DATETIMEOFFSET, NTEXT, NVARCHAR, SQL_VARIANT, XML
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from countydatasync.errors import ConfigError, PermanentSourceError, SourceError, TransientSourceError
from countydatasync.extract.base import SourceSpec
from countydatasync.extract.sql import SqlSource

log = logging.getLogger(__name__)

BINARY_COLLATION = "Latin1_General_BIN2"
# ODBC SQLSTATEs worth retrying: link failure, cannot connect, rejected connection, deadlock victim
# (SQL Server reports error 1205 as 40001), timeouts.
TRANSIENT_SQLSTATES = {"08S01", "08001", "08004", "08007", "40001", "HYT00", "HYT01"}
# SQL Server error numbers that are transient whatever SQLSTATE the driver attaches (deadlock, lock
# timeout, Azure SQL throttling and failover).
TRANSIENT_ERRORS = {1205, 1222, 4060, 10928, 10929, 40197, 40501, 40613, 49918, 49919, 49920}
PERMANENT_HINTS = {
    "28000": "login failed: check the user and password",
    "42S02": "table or view not found",
    "42S22": "column not found",
    "42000": "permission denied or invalid statement",
}


# nvarchar(n) holds at most 4000 characters; longer varchar columns become nvarchar(max).
NVARCHAR_LIMIT = 4000


def is_code_page_text(column_type: Any) -> bool:
    """Whether a reflected type is non-Unicode text (varchar, char, text), read in a code page."""
    unicode = sa.Unicode | sa.UnicodeText | NTEXT | XML
    return isinstance(column_type, sa.String) and not isinstance(column_type, unicode)


def as_nvarchar(column: sa.ColumnElement[Any], column_type: Any) -> sa.ColumnElement[Any]:
    """`column` converted by the server to nvarchar of its length (max when it has none or is too long)."""
    length = getattr(column_type, "length", None)
    return sa.cast(column, NVARCHAR(length if length and length <= NVARCHAR_LIMIT else None))


def utc_datetime2(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A datetimeoffset as its UTC time in a datetime2(7), which pyodbc can return."""
    return sa.cast(sa.func.SWITCHOFFSET(column, sa.literal_column("'+00:00'")), DATETIME2(7))


def shortest_float32(values: pd.Series) -> pd.Series:
    """Floats that came from float32 (real) as the shortest decimal that gives the same float32."""
    return pd.Series([float(str(v)) for v in values.to_numpy(dtype=np.float32)], index=values.index)


class MethodCall(sa.sql.expression.ColumnElement[Any]):
    """`column.Method()...` or `column.Property`: SQL Server's CLR-type member syntax."""

    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], members: tuple[str, ...], type_: Any) -> None:
        self.column = column
        self.members = members
        self.type = type_

    @property
    def _cache_key_members(self) -> tuple[str, ...]:
        return self.members


@compiles(MethodCall)
def _compile_method_call(element: MethodCall, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw) + "".join(f".{member}" for member in element.members)


def sql_server_error(exc: BaseException) -> tuple[str | None, int | None]:
    """SQLSTATE and SQL Server error number of a pyodbc error (`args[0]` is the SQLSTATE; the number is
    the last parenthesised integer of the message, e.g. '... deadlocked ... (1205) (SQLExecDirectW)')."""
    original = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    sqlstate = args[0] if args and isinstance(args[0], str) and len(args[0]) == 5 else None
    numbers = re.findall(r"\((\d{3,6})\)", str(args[1] if len(args) > 1 else original))
    return sqlstate, int(numbers[-1]) if numbers else None


class MssqlSource(SqlSource):
    """MasterParcels in SQL Server, optionally with a geometry or geography column."""

    def __init__(self, url: URL, spec: SourceSpec) -> None:
        if url.drivername != "mssql+pyodbc":
            raise ConfigError(f"SQL Server sources use mssql+pyodbc:// URLs, not {url.drivername}://")
        # fast_executemany is for writes; reads gain from a larger fetch, which pyodbc sizes itself. pyodbc's
        # timeout is the login timeout: a server that does not answer fails the try instead of hanging it.
        super().__init__(url, spec, pool_pre_ping=True, connect_args={"timeout": spec.connect_timeout_seconds})
        self._snapshot_allowed: bool | None = None

    @property
    def engine(self) -> sa.Engine:
        try:
            return super().engine
        except ImportError:
            raise ConfigError(
                "SQL Server sources need pyodbc: pip install 'countydatasync[mssql]' (and unixODBC on Linux)"
            ) from None

    @property
    def dialect(self) -> sa.Dialect:
        # Without pyodbc loaded the dialect cannot ask it for its paramstyle; pyodbc's is qmark.
        if self._engine is not None:
            return self._engine.dialect
        return self.url.get_dialect()(paramstyle="qmark")  # type: ignore[call-arg]

    # --- dialect hooks ---------------------------------------------------------------------------------
    def geometry_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self.spec.geometry_encoding == "native":
            # STCurveToLine raises on an invalid instance (failing the statement); STAsBinary works on any.
            valid = MethodCall(column, ("STIsValid()",), sa.Integer()) == sa.literal_column("1")
            linear = MethodCall(column, ("STCurveToLine()", "STAsBinary()"), sa.LargeBinary())
            return sa.case((valid, linear), else_=MethodCall(column, ("STAsBinary()",), sa.LargeBinary()))
        return column

    def srid_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        if self.spec.geometry_encoding != "native":
            return None
        return MethodCall(column, ("STSrid",), sa.Integer())

    def key_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        key_type = self.catalog_types.get(self.spec.key_column)
        if isinstance(key_type, sa.String):
            return column.collate(BINARY_COLLATION)
        return column

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # A varchar key arrives in the client's code page, which pyodbc decodes as UTF-8 (see the module doc).
        key_type = self.catalog_types.get(self.spec.key_column)
        return as_nvarchar(key, key_type) if is_code_page_text(key_type) else key

    def modified_output(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if isinstance(self.catalog_types.get(self.spec.modified_column or ""), DATETIMEOFFSET):
            return utc_datetime2(column)
        return column

    def modified_parameter(self, parameter: sa.BindParameter[Any]) -> sa.ColumnElement[Any]:
        # A date column holds the day, not the instant: `col > since` must read all of since's day, else an
        # edit later on the watermark's own day is missed (with an overlap under a day).
        if isinstance(self.catalog_types.get(self.spec.modified_column or ""), sa.Date):
            return sa.func.DATEADD(sa.literal_column("day"), sa.literal_column("-1"), sa.cast(parameter, DATE()))
        return parameter

    def attribute_outputs(self, column: sa.Column[Any]) -> list[sa.ColumnElement[Any]]:
        column_type = self.catalog_types.get(column.name)
        if isinstance(column_type, DATETIMEOFFSET):  # pyodbc: "ODBC SQL type -155 is not yet supported"
            return [sa.cast(column, NVARCHAR(34)).label(column.name)]
        if isinstance(column_type, sa.types.NullType | SQL_VARIANT):  # pyodbc: -151 (CLR types), -150
            return [sa.cast(column, NVARCHAR(None)).label(column.name)]
        if is_code_page_text(column_type):
            return [as_nvarchar(column, column_type).label(column.name)]
        return [column]

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], columns: list[str]) -> pd.DataFrame:
        frame = super().frame_from_rows(rows, columns)
        for i, name in enumerate(columns):
            if frame[name].dtype.kind != "f":
                continue
            values = [row[i] for row in rows]
            if any(type(v) is int for v in values):  # ints with a NULL among them: pandas made them float64
                frame[name] = pd.array(values, dtype="Int64")
            elif isinstance(self.catalog_types.get(name), sa.REAL):
                frame[name] = shortest_float32(frame[name])
        return frame

    def snapshot_options(self) -> dict[str, Any]:
        if self._snapshot_allowed is None:
            query = sa.text("SELECT snapshot_isolation_state FROM sys.databases WHERE name = DB_NAME()")
            try:
                with self.engine.connect() as conn:
                    self._snapshot_allowed = conn.execute(query).scalar() == 1
            except sa.exc.DBAPIError as exc:
                raise self.translate(exc) from None
            log.info(
                "%s: extraction isolation %s",
                self.description,
                "SNAPSHOT" if self._snapshot_allowed else "READ COMMITTED (key-range guarantee)",
            )
        return {"isolation_level": "SNAPSHOT"} if self._snapshot_allowed else {}

    def translate(self, exc: BaseException) -> SourceError:
        sqlstate, number = sql_server_error(exc)
        if (
            sqlstate in TRANSIENT_SQLSTATES
            or number in TRANSIENT_ERRORS
            or (sqlstate is None and getattr(exc, "connection_invalidated", False))
        ):
            return TransientSourceError(self.message(exc, "lost or could not reach"))
        hint = PERMANENT_HINTS.get(sqlstate or "")
        return PermanentSourceError(self.message(exc) + (f" ({hint})" if hint else ""))

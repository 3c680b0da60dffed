"""PostgreSQL / PostGIS source.

The catalog check runs through SQLAlchemy and psycopg 3 (so login, database and table problems are
reported with their SQLSTATE before any data is read); the rows are read through ADBC's PostgreSQL driver,
which streams each page as Arrow columns (COPY in binary) instead of a Python tuple per row: about twice
as fast as psycopg's tuples on the sample county (figures in `bench/extract_postgres.py`).

Geometry: a native `geometry` or `geography` column (`geometry_encoding = "native"`) is read as
`ST_AsBinary(col)` with `ST_SRID(col)` per row; geography comes out as longitude/latitude WKB with SRID
4326, which the transform reprojects like any other SRID. WKB (`bytea`) and WKT (`text`) columns are read
as stored.

Consistency: an extraction (`batches`) runs in one `REPEATABLE READ READ ONLY` transaction, so without a
failure the run sees one snapshot of the table, whatever is edited meanwhile. After a transient failure
the reconnect starts a new snapshot: batches already read come from the old one, the rest from the new
one. What always holds is the key-range guarantee of keyset paging: every key is read exactly once; a row
that existed throughout the run is read, in its state at one of the two snapshots; a row inserted,
deleted or re-keyed during the run may or may not be seen, and the next run picks it up.
"""

from __future__ import annotations

import logging
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy.dialects.postgresql import CITEXT, DOMAIN, DOUBLE_PRECISION, MONEY, REAL
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect
from sqlalchemy.engine import URL

from countydatasync.errors import PermanentSourceError, SourceError, TransientSourceError
from countydatasync.extract.base import RAW_GEOM, RAW_KEY, RAW_MODIFIED, RAW_SRID, SourceSpec
from countydatasync.extract.sql import SqlSource

log = logging.getLogger(__name__)

# SQLSTATEs worth retrying: connection exceptions (class 08), insufficient resources (53), serialization
# failure, deadlock, admin/crash shutdown, cannot connect now, query cancelled or timed out, lock timeout,
# and a snapshot closed by idle_in_transaction_session_timeout while the sync was busy writing.
TRANSIENT_CLASSES = ("08", "53")
TRANSIENT_CODES = {"40001", "40P01", "57P01", "57P02", "57P03", "57014", "55P03", "25P03"}
# A failed connection attempt carries no SQLSTATE; the server's FATAL text tells refusals from outages,
# and libpq's own text a connection string it cannot use (a setting in the URL that needs fixing).
REFUSED_LOGIN = (
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "not permitted to log in",
    "no password supplied",
    "invalid connection option",
    "invalid integer value",
    "invalid port number",
    "invalid sslmode value",
    "unexpected spaces found",
    "invalid percent-encoded token",
)

# Whether the key column's collation is deterministic (equal means identical text); true without a collation.
KEY_COLLATION_IS_DETERMINISTIC = sa.text(
    "SELECT coalesce(bool_and(c.collisdeterministic), true) FROM pg_attribute a "
    "JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = to_regclass(:table) AND a.attname = :column"
)

HINTS = {
    "42501": " (grant SELECT on the table to this login)",
    "42883": " (is PostGIS installed and the column a geometry? if not, set geometry_encoding to wkb or wkt)",
}

ARROW_TEXT = pd.StringDtype("pyarrow")


def _pandas_type(arrow_type: pa.DataType) -> Any:
    if arrow_type in (pa.string(), pa.large_string()):
        return ARROW_TEXT
    return None


# Carried columns of these types arrive through ADBC as values the transform reads faithfully. Any other type
# (arrays, interval, time, inet, ranges, geometry, unknown extension types...) is read as PostgreSQL's own
# text of it: ADBC hands those over as raw binary (decoded to garbage), numpy reprs (a long array cut to
# '[1 2 3 ... 1500]') or Python objects that fail to convert ('24:00' as a time), and the text is what
# psql shows.
NATIVE_ATTRIBUTE_TYPES = (sa.Integer, sa.Numeric, sa.Float, sa.Boolean, sa.String, sa.Uuid, sa.JSON, sa.LargeBinary)
# Python's dates and pandas' conversion of them hold the years 1 to 9999 only: 'infinity', '-infinity'
# (PostgreSQL's "no end date"), BC dates and years past 9999 either crashed the conversion of the whole
# page or arrived silently wrapped around (a timestamp 'infinity' as the year -290278). Untyped literals take
# the column's type; the offset keeps a timestamptz bound at UTC whatever the session's time zone.
TIME_RANGE = (sa.literal_column("'0001-01-01 00:00:00+00'"), sa.literal_column("'10000-01-01 00:00:00+00'"))
# Prefix of a helper column holding, for the rows whose value cannot be carried natively, its text.
AS_TEXT = "__as_text__"
RAW_COLUMNS = {RAW_KEY, RAW_GEOM, RAW_SRID, RAW_MODIFIED}


def base_type(column_type: Any) -> Any:
    """A reflected type with its domains unwrapped."""
    while isinstance(column_type, DOMAIN):
        column_type = column_type.data_type
    return column_type


def out_of_range(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """Whether a date or timestamp lies outside the years 1 to 9999 (infinities included)."""
    low, high = TIME_RANGE
    return sa.or_(column < low, column >= high)


def attributes_as_text(table: pa.Table) -> pa.Table:
    """Carried numeric and date columns as Arrow text (the text psql shows). ADBC hands numerics over as an
    opaque type holding their text, and dates as dates; pandas made a Python object of every such value,
    which the transform then read one by one (3 s of the extract process's CPU per 1,000,000 parcels of the
    sample county). The key and the modified column stay as they are: they are bound back into queries."""
    for i, field in enumerate(table.schema):
        if field.name in RAW_COLUMNS:
            continue
        column = table.column(i)
        if isinstance(field.type, pa.BaseExtensionType) and pa.types.is_string(field.type.storage_type):
            table = table.set_column(i, field.name, pa.chunked_array([c.storage for c in column.chunks], pa.string()))
        elif pa.types.is_decimal(field.type) or pa.types.is_date(field.type):
            table = table.set_column(i, field.name, pc.cast(column, pa.string()))
    return table


def fold_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each `AS_TEXT` helper column folded into its column: where the helper holds text, the
    column holds that text instead of the NULL read natively, so the transform reports the value as written
    ('infinity', '0044-03-15 BC') as a bad attribute, or carries it as text."""
    for helper in [c for c in frame.columns if str(c).startswith(AS_TEXT)]:
        text = frame.pop(helper)
        odd = text.notna().to_numpy()
        if odd.any():
            name = helper[len(AS_TEXT) :]
            values = frame[name].astype(object)
            values[odd] = text[odd].astype(object)
            frame[name] = values
    return frame


def compares_as_stored(key_type: Any) -> bool:
    """Whether keys of this reflected type can be paged by the column itself: ADBC returns them as values
    that bind back as the same key and that Python finds equal exactly when PostgreSQL does (integers,
    decimals, plain text). citext, for one, comes back as bytes and ignores case."""
    key_type = base_type(key_type)
    if isinstance(key_type, sa.Integer | sa.Numeric):
        return True
    return isinstance(key_type, sa.String) and not isinstance(key_type, CITEXT | sa.Enum)


def is_transient(sqlstate: str | None, text: str, connection_error: bool = True) -> bool:
    """Whether a PostgreSQL error is worth retrying: by SQLSTATE when the server sent one; otherwise only a
    connection-level error (the driver's OperationalError) is, unless its text says the login was refused."""
    if sqlstate:
        return sqlstate.startswith(TRANSIENT_CLASSES) or sqlstate in TRANSIENT_CODES
    return connection_error and not any(marker in text for marker in REFUSED_LOGIN)


def connection_limits(url: URL, connect_timeout: int) -> dict[str, int]:
    """libpq's connection timeout and TCP keepalives, where the URL does not set them. Without them a try at
    an unreachable server waits as long as the OS lets a connect hang (about two minutes), and a connection
    that died without a word (a dropped VPN, a failed-over firewall) goes unnoticed for the OS's keepalive
    idle time (two hours on Linux): a run hung instead of retrying."""
    limits = {
        "connect_timeout": connect_timeout,
        "keepalives": 1,
        "keepalives_idle": 60,
        "keepalives_interval": 10,
        "keepalives_count": 5,
    }
    return {name: value for name, value in limits.items() if name not in url.query}


class PostgresSource(SqlSource):
    """MasterParcels in PostgreSQL, optionally with a PostGIS geometry or geography column."""

    def __init__(self, url: URL, spec: SourceSpec) -> None:
        # Plain postgresql:// URLs use psycopg 3 too (SQLAlchemy's default would be psycopg2).
        url = url.set(drivername="postgresql+psycopg")
        limits = connection_limits(url, spec.connect_timeout_seconds)
        super().__init__(url, spec, pool_pre_ping=True, connect_args=limits)
        # ADBC connects with the libpq conninfo psycopg would use, every value quoted as libpq needs: a URI
        # rendered by SQLAlchemy keeps the spaces of a password, which libpq rejects, echoing the password.
        args, options = self.dialect.create_connect_args(url)
        self.adbc_conninfo = make_conninfo(*args, **limits, **options)
        # Statements compiled for ADBC use $1, $2 ... placeholders.
        self.adbc_dialect = pg_dialect.dialect(paramstyle="numeric_dollar")
        self.key_as_text = False
        """Whether keys are compared as text (see `key_expression`); set by the catalog check."""

    # --- dialect hooks ---------------------------------------------------------------------------------
    def geometry_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self.spec.geometry_encoding == "native":
            return sa.func.ST_AsBinary(column)
        return column

    def srid_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        return sa.func.ST_SRID(column) if self.spec.geometry_encoding == "native" else None

    def key_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The key column itself when it `compares_as_stored` under a deterministic collation; otherwise its
        text under the binary collation "C", so that keys are equal exactly when their text is ('a' and 'A'
        of a citext or case-insensitive key are two keys). Such keys are sorted without the column's index."""
        return sa.cast(column, sa.Text).collate("C") if self.key_as_text else column

    def key_parameter(self, parameter: sa.BindParameter[Any]) -> sa.ColumnElement[Any]:
        # ADBC returns NUMERIC keys as text and binds Python str as text; PostgreSQL has no numeric > text.
        key_type = sa.Text() if self.key_as_text else self.catalog_types.get(self.spec.key_column)
        if key_type is None or isinstance(key_type, sa.types.NullType):
            return parameter
        return sa.cast(parameter, key_type)

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # A NUMERIC without a declared scale keeps each value's own: 1.5 and 1.50 are one key, read as '1.5'.
        key_type = self.catalog_types.get(self.spec.key_column)
        if isinstance(key_type, sa.Numeric) and key_type.scale is None and not self.key_as_text:
            return sa.func.trim_scale(key)
        return key

    def modified_output(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # 'infinity' and other years Python cannot hold are left out of the watermark (an 'infinity' watermark
        # would hide every later edit); the WHERE clause still compares the stored values.
        if isinstance(base_type(self.catalog_types.get(self.spec.modified_column or "")), sa.Date | sa.DateTime):
            return sa.case((out_of_range(column), sa.null()), else_=column)
        return column

    def attribute_outputs(self, column: sa.Column[Any]) -> list[sa.ColumnElement[Any]]:
        column_type = base_type(self.catalog_types.get(column.name))
        if isinstance(column_type, sa.Date | sa.DateTime):  # natively, with the text of what Python cannot hold
            odd = out_of_range(column)
            return [
                sa.case((odd, sa.null()), else_=column).label(column.name),
                sa.case((odd, sa.cast(column, sa.Text))).label(AS_TEXT + column.name),
            ]
        if isinstance(column_type, MONEY):  # ADBC returns money as an integer count of cents
            return [sa.cast(column, sa.Numeric).label(column.name)]
        if isinstance(column_type, REAL):  # through its text: 0.1, not float32's 0.10000000149011612
            return [sa.cast(sa.cast(column, sa.Text), DOUBLE_PRECISION).label(column.name)]
        if isinstance(column_type, NATIVE_ATTRIBUTE_TYPES):
            return [column]
        return [sa.cast(column, sa.Text).label(column.name)]

    def modified_parameter(self, parameter: sa.BindParameter[Any]) -> sa.ColumnElement[Any]:
        # PostgreSQL compares text with text and timestamps with timestamps only: `since` takes the column's type.
        modified_type = self.catalog_types.get(self.spec.modified_column or "")
        if modified_type is None or isinstance(modified_type, sa.types.NullType):
            return parameter
        if isinstance(base_type(modified_type), sa.Date):
            # A date column holds the day, not the instant: a row edited later on the watermark's own day has
            # that same date, so `col > since` must read the whole day (col > day before).
            return sa.cast(parameter, modified_type) - sa.literal_column("1")
        return sa.cast(parameter, modified_type)

    def _reflect(self) -> sa.Table:
        table = super()._reflect()
        target = {"table": self.dialect.identifier_preparer.format_table(table), "column": self.spec.key_column}
        try:
            with self.engine.connect() as connection:
                deterministic = connection.execute(KEY_COLLATION_IS_DETERMINISTIC, target).scalar_one()
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None
        self.key_as_text = not (deterministic and compares_as_stored(self.catalog_types[self.spec.key_column]))
        return table

    def translate(self, exc: BaseException) -> SourceError:
        original = getattr(exc, "orig", None) or exc
        sqlstate = getattr(original, "sqlstate", None)
        connection_error = isinstance(original, psycopg.OperationalError | adbc.OperationalError) or bool(
            getattr(exc, "connection_invalidated", False)
        )
        if is_transient(sqlstate, str(original), connection_error):
            return TransientSourceError(self.message(exc, "lost or could not reach"))
        hint = HINTS.get(sqlstate or "", "")
        if sqlstate == "42883" and "st_" not in str(original).lower():
            hint = ""
        return PermanentSourceError(self.message(exc) + hint)

    # --- sessions: ADBC ---------------------------------------------------------------------------------
    def connect(self) -> Any:
        # Statements are built from the checked catalog (psycopg, with SQLSTATEs) before any session opens.
        try:
            session = adbc.connect(self.adbc_conninfo, autocommit=True)
        except adbc.Error as exc:
            raise self.translate(exc) from None
        if self._in_snapshot:
            self.run(session, sa.text("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), {}, results=False)
        return session

    def run(self, session: Any, stmt: sa.Executable, params: dict[str, Any], results: bool = True) -> pd.DataFrame:
        expanded = self.compiled(stmt, self.adbc_dialect).construct_expanded_state(params)
        values = list(expanded.positional_parameters)
        try:
            cursor = session.cursor()
            try:
                cursor.execute(expanded.statement, values or None)
                if not results:
                    return pd.DataFrame()
                table = cursor.fetch_arrow_table()
            finally:
                cursor.close()
        except adbc.Error as exc:
            raise self.translate(exc) from None
        return fold_text(attributes_as_text(table).to_pandas(types_mapper=_pandas_type))

    def disconnect(self, session: Any) -> None:
        try:
            session.close()
        except adbc.Error as exc:  # the server may be gone already; the session is dropped either way
            log.debug("closing a broken PostgreSQL session: %s", type(exc).__name__)

"""A source backend on SQLAlchemy Core: statements are built, not formatted, so identifiers are quoted,
and every configured table and column is checked against the database catalog before the first query.

Backends for particular databases subclass `SqlSource` and override the geometry and SRID expressions.

Reading goes through a *session* (by default a SQLAlchemy connection; a backend may use an Arrow driver
instead) that is opened lazily and kept for the source's life. `batches` runs on one session inside a
snapshot when the backend offers one (`snapshot_options`, or its own `connect`). A transient failure (see
`translate`) drops the session, waits `retry_backoff_seconds` (doubling on each further try, up to
`max_retries` tries) and runs the same statement again on a new session: since paging resumes from the
last key of the last *completed* batch, a retried extraction has no duplicates and no gaps. The new
session starts a new snapshot, so after a reconnect a run only guarantees what keyset paging guarantees
(see the backend modules).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from countydatasync.errors import (
    ConfigError,
    PermanentSourceError,
    SchemaError,
    SourceError,
    TransientSourceError,
)
from countydatasync.extract.base import (
    KEY_COPIES,
    RAW_GEOM,
    RAW_KEY,
    RAW_MODIFIED,
    RAW_SRID,
    SourceSpec,
    check_progress,
    paginate,
)
from countydatasync.ops.redact import redact as redact_secrets
from countydatasync.signals import off_main_thread

log = logging.getLogger(__name__)
T = TypeVar("T")

# Variables per IN (...) list: below every supported database's limit (SQL Server allows 2100).
KEYS_PER_QUERY = 1000


class SqlSource:
    """A MasterParcels table read through SQLAlchemy."""

    def __init__(self, url: URL, spec: SourceSpec, **engine_options: Any) -> None:
        self.spec = spec
        self.url = url
        # redact(): hide_password misses a password inside an `odbc_connect` query parameter.
        self.description = redact_secrets(f"{url.render_as_string(hide_password=True)} table {spec.table}")
        self._engine_options = engine_options
        self._engine: Engine | None = None
        self.catalog_types: dict[str, Any] = {}
        """Column name -> SQLAlchemy type as reflected (NullType where the dialect does not know it)."""
        self._table: sa.Table | None = None
        self._session: Any = None
        self._in_snapshot = False
        # The few statements a read runs page after page, compiled once (compiling cost 2 ms a page); bounded,
        # as one-off statements (key chunks, counts) pass through too.
        self._compile = functools.lru_cache(maxsize=8)(lambda stmt, dialect: stmt.compile(dialect=dialect))

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created on first use (so statements compile without the driver)."""
        if self._engine is None:
            self._engine = sa.create_engine(self.url, **self._engine_options)
        return self._engine

    @property
    def dialect(self) -> sa.Dialect:
        """The SQL dialect statements are compiled for; needs no driver installed."""
        return self._engine.dialect if self._engine is not None else self.url.get_dialect()()

    # --- catalog -------------------------------------------------------------------------------------
    def table(self) -> sa.Table:
        """The source table as reflected from the catalog, checked against the settings (once)."""
        if self._table is None:
            self._table = self.retrying(self._reflect)
        return self._table

    def _reflect(self) -> sa.Table:
        spec = self.spec
        try:
            inspector = sa.inspect(self.engine)
            names = set(inspector.get_table_names(schema=spec.db_schema))
            names |= set(inspector.get_view_names(schema=spec.db_schema))
            with suppress(NotImplementedError):  # a materialized view is a table to read like any other
                names |= set(inspector.get_materialized_view_names(schema=spec.db_schema))
            if spec.table not in names:
                where = f" in schema {spec.db_schema}" if spec.db_schema else ""
                raise SchemaError(f"source table {spec.table!r} not found{where} at {self.description}")
            with warnings.catch_warnings():  # spatial types are unknown to SQLAlchemy: reflected as NullType
                warnings.simplefilter("ignore", sa.exc.SAWarning)
                columns = {c["name"]: c for c in inspector.get_columns(spec.table, schema=spec.db_schema)}
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None
        wanted = [spec.key_column, spec.geometry_column, *spec.attribute_columns]
        if spec.modified_column:
            wanted.append(spec.modified_column)
        self.catalog_types = {name: info["type"] for name, info in columns.items()}
        missing = [c for c in dict.fromkeys(wanted) if c not in columns]
        if missing:
            named_by = {
                spec.key_column: "source.key_column",
                spec.geometry_column: "source.geometry_column",
                spec.modified_column: "source.modified_column",
            }
            listed = ", ".join(f"{c!r} ({named_by.get(c, 'the source of a [[columns]] entry')})" for c in missing)
            raise SchemaError(
                f"source table {spec.table!r} has no column {listed}; it has: {', '.join(sorted(columns))}. "
                "If the column was renamed, set that setting to its new name; if it is gone, remove it from "
                "the settings"
            )
        # Column objects only; types stay generic so no driver-specific reflection is needed.
        return sa.Table(
            spec.table,
            sa.MetaData(),
            *(sa.Column(name) for name in dict.fromkeys(wanted)),
            schema=spec.db_schema,
        )

    # --- dialect hooks ---------------------------------------------------------------------------------
    def geometry_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """SELECT expression for the geometry; WKB and WKT columns are read as stored."""
        if self.spec.geometry_encoding == "native":
            raise SchemaError(
                f"geometry_encoding 'native' is not supported for {self.url.get_backend_name()} sources; "
                "store WKB or WKT, or use a PostgreSQL or SQL Server source"
            )
        return column

    def srid_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        """SELECT expression for a per-row SRID, or None when the column carries none."""
        return None

    def key_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The key as compared and ordered by (a backend may pin a binary collation here)."""
        return column

    def key_parameter(self, parameter: sa.BindParameter[Any]) -> sa.ColumnElement[Any]:
        """A key value bound for comparison with the key column (a backend may cast it to the column's
        type, for drivers that bind keys read back as text)."""
        return parameter

    def modified_parameter(self, parameter: sa.BindParameter[Any]) -> sa.ColumnElement[Any]:
        """The `since` value bound for comparison with the modified column: a datetime, or text when the
        column holds text (a backend may cast it to the column's type)."""
        return parameter

    def translate(self, exc: BaseException) -> SourceError:
        """Map a driver error to the package's error tree, without the URL's secrets. Backends classify
        their driver's codes; this default treats a connection SQLAlchemy saw drop as transient and
        everything else as permanent."""
        if getattr(exc, "connection_invalidated", False):
            return TransientSourceError(self.message(exc, "lost the connection to"))
        return PermanentSourceError(self.message(exc))

    def message(self, exc: BaseException, doing: str = "cannot read") -> str:
        """`doing` the source, with the driver's first line; any trace of the password is masked."""
        return self.redact(f"{doing} {self.description}: {type(exc).__name__}: {_first_line(exc)}")

    def redact(self, text: str) -> str:
        """`text` with the password (in any form it takes in a URL or an ODBC string) replaced by ***."""
        return redact_secrets(text, [str(self.url.password or "")])

    def snapshot_options(self) -> dict[str, Any]:
        """SQLAlchemy execution options that make one connection's reads a consistent snapshot (none here)."""
        return {}

    def modified_column(self) -> sa.ColumnElement[Any]:
        """The configured modified column: reading rows modified since a time needs one."""
        if not self.spec.modified_column:
            raise ConfigError("reading changed rows needs source.modified_column; none is configured")
        return self.table().c[self.spec.modified_column]

    # --- statements ----------------------------------------------------------------------------------
    def select_rows(self) -> sa.Select[Any]:
        """SELECT of every column a raw batch carries, in the raw-batch layout."""
        table = self.table()
        spec = self.spec
        cols: list[sa.ColumnElement[Any]] = [
            self.key_output(self.key_expression(table.c[spec.key_column])).label(RAW_KEY),
            self.geometry_expression(table.c[spec.geometry_column]).label(RAW_GEOM),
        ]
        srid = self.srid_expression(table.c[spec.geometry_column])
        if srid is not None:
            cols.append(srid.label(RAW_SRID))
        if spec.modified_column:
            cols.append(self.modified_output(table.c[spec.modified_column]).label(RAW_MODIFIED))
        cols.extend(c for name in spec.attribute_columns for c in self.attribute_outputs(table.c[name]))
        return sa.select(*cols)

    def modified_output(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The modified column as read for the watermark (a backend may leave out values its driver cannot
        return faithfully)."""
        return column

    def attribute_outputs(self, column: sa.Column[Any]) -> list[sa.ColumnElement[Any]]:
        """SELECT expressions for a carried column, the first labelled with its name: the column itself here.
        A backend may read a type its driver returns unfaithfully in another form (its text, say), and add
        helper columns that its `run` folds back in."""
        return [column]

    def page_statement(self, modified_since: datetime | None, after: bool, limit: int) -> sa.Select[Any]:
        """Rows with key > :last (when `after`), optionally modified after :since, in key order, :limit."""
        key = self.key_expression(self.table().c[self.spec.key_column])
        stmt = self.select_rows().where(key.is_not(None))
        if after:
            stmt = stmt.where(key > self.key_parameter(sa.bindparam("last")))
        if modified_since is not None:
            stmt = stmt.where(self.modified_column() > self.modified_parameter(sa.bindparam("since")))
        return stmt.order_by(key).limit(limit)

    def compiled(self, stmt: sa.Executable, dialect: sa.Dialect) -> Any:
        """`stmt` compiled for `dialect`, from the cache when it ran lately (the cache holds the statement, so
        its identity, by which it is found, stays unique)."""
        return self._compile(stmt, dialect)

    # --- sessions ------------------------------------------------------------------------------------
    def connect(self) -> Any:
        """A new session (here a SQLAlchemy connection); raises a translated error."""
        try:
            connection = self.engine.connect()
            if self._in_snapshot:
                connection = connection.execution_options(**self.snapshot_options())
            return connection
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None

    def run(self, session: Any, stmt: sa.Executable, params: dict[str, Any]) -> pd.DataFrame:
        """Execute `stmt` on `session` and return all its rows; raises a translated error."""
        try:
            result = session.execute(stmt, params)
            frame = self.frame_from_rows(result.fetchall(), list(result.keys()))
            if not self._in_snapshot:
                session.rollback()  # end the implicit transaction: never sit idle inside one
            return frame
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], columns: list[str]) -> pd.DataFrame:
        """A raw batch from driver rows; values stay as the driver returned them (the transform types)."""
        return pd.DataFrame.from_records(rows, columns=columns)

    def disconnect(self, session: Any) -> None:
        """Close `session`, ignoring errors (it may be the one that just failed)."""
        with suppress(Exception):  # a broken connection may fail to close; it is dropped either way
            session.close()

    def _drop_session(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self.disconnect(session)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the enclosed reads on one session in the backend's snapshot (a new one after a reconnect)."""
        self._drop_session()
        self._in_snapshot = True
        try:
            yield
        finally:
            self._in_snapshot = False
            self._drop_session()

    def _frame(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Rows of `stmt`, on the current session (opened when needed), retried as `retrying` says."""

        def attempt() -> pd.DataFrame:
            if self._session is None:
                self._session = self.connect()
            return self.run(self._session, stmt, params or {})

        # Off the main thread: ADBC would take Ctrl-C away from Python there (see signals.py).
        return self.retrying(lambda: off_main_thread(attempt))

    def retrying(self, call: Callable[[], T]) -> T:
        """`call()`, tried again after each TransientSourceError on a new session: up to `max_retries`
        more times, waiting `retry_backoff_seconds`, then twice that, and so on."""
        spec = self.spec
        tries = 0
        while True:
            try:
                return call()
            except TransientSourceError as exc:
                self._drop_session()
                if tries >= spec.max_retries:
                    raise TransientSourceError(f"{exc} (gave up after {tries} retries)") from None
                delay = spec.retry_backoff_seconds * 2**tries
                tries += 1
                log.warning("%s; retry %d of %d in %.1f s", exc, tries, spec.max_retries, delay)
                time.sleep(delay)

    def batches(self, modified_since: datetime | None = None) -> Iterator[pd.DataFrame]:
        base = {"since": modified_since} if modified_since is not None else {}
        # Built once: every page runs one of these, and building one cost 1.5 ms.
        page_statement = functools.cache(lambda after, limit: self.page_statement(modified_since, after, limit))

        def fetch_after(last: Any | None, limit: int) -> pd.DataFrame:
            if last is None:
                return self._frame(page_statement(False, limit), base)
            return self._frame(page_statement(True, limit), {**base, "last": last})

        def fetch_equal(key: Any) -> pd.DataFrame:
            column = self.key_expression(self.table().c[self.spec.key_column])
            stmt = self.select_rows().where(column == self.key_parameter(sa.bindparam("key")))
            return self._frame(stmt, {"key": key})

        self.table()  # check the catalog before any snapshot starts
        with self.snapshot():
            yield from paginate(fetch_after, fetch_equal, self.spec.batch_size)
            nulls = self.select_rows().where(self.table().c[self.spec.key_column].is_(None))
            if modified_since is not None:
                nulls = nulls.where(self.modified_column() > self.modified_parameter(sa.bindparam("since")))
            null_rows = self._frame(nulls, base)
            if len(null_rows):
                yield null_rows

    def keys_statement(self, keys: Sequence[Any]) -> sa.Select[Any]:
        """Rows whose key is one of `keys` (each a bound parameter), in key order."""
        key = self.key_expression(self.table().c[self.spec.key_column])
        values = [self.key_parameter(sa.bindparam(f"k{i}", value)) for i, value in enumerate(keys)]
        return self.select_rows().where(key.in_(values)).order_by(key)

    def rows_for_keys(self, keys: Sequence[Any]) -> Iterator[pd.DataFrame]:
        pending: list[pd.DataFrame] = []
        size = 0
        for start in range(0, len(keys), KEYS_PER_QUERY):
            frame = self._frame(self.keys_statement(keys[start : start + KEYS_PER_QUERY]))
            pending.append(frame)
            size += len(frame)
            if size >= self.spec.batch_size:
                yield pd.concat(pending, ignore_index=True)
                pending, size = [], 0
        if size:
            yield pd.concat(pending, ignore_index=True)

    def all_keys(self) -> Iterator[pd.DataFrame]:
        key = self.key_expression(self.table().c[self.spec.key_column])
        copies = sa.func.count().label(KEY_COPIES)
        base = sa.select(self.key_output(key).label(RAW_KEY), copies).where(key.is_not(None))
        limit = max(self.spec.batch_size, 200_000)
        last: Any | None = None
        while True:
            stmt = base if last is None else base.where(key > self.key_parameter(sa.bindparam("last")))
            stmt = stmt.group_by(key).order_by(key).limit(limit)
            frame = self._frame(stmt, {} if last is None else {"last": last})
            if frame.empty:
                return
            yield frame
            if len(frame) < limit:
                return
            last = check_progress(last, frame[RAW_KEY].iloc[-1])

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The key as returned to Python (a backend may cast it, e.g. to text)."""
        return key

    def count_rows(self, modified_since: datetime | None = None) -> int:
        """How many rows `batches` will yield (for progress bars; the source may change meanwhile)."""
        stmt = sa.select(sa.func.count()).select_from(self.table())
        if modified_since is None:
            return int(self._frame(stmt).iloc[0, 0])
        stmt = stmt.where(self.modified_column() > self.modified_parameter(sa.bindparam("since")))
        return int(self._frame(stmt, {"since": modified_since}).iloc[0, 0])

    def close(self) -> None:
        self._drop_session()
        if self._engine is not None:
            self._engine.dispose()


def _first_line(exc: BaseException) -> str:
    """The driver's message without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__

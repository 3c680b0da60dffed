"""A source backend on SQLAlchemy Core: statements are built, not formatted, so identifiers are quoted,
and every configured table and column is checked against the database catalog before the first query.

Backends for particular databases subclass `SqlSource` and override the geometry and SRID expressions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from countydatasync.errors import PermanentSourceError, SchemaError
from countydatasync.extract.base import (
    KEY_COPIES,
    RAW_GEOM,
    RAW_KEY,
    RAW_MODIFIED,
    RAW_SRID,
    SourceSpec,
    paginate,
)

log = logging.getLogger(__name__)

# Variables per IN (...) list: below every supported database's limit (SQL Server allows 2100).
KEYS_PER_QUERY = 1000


class SqlSource:
    """A MasterParcels table read through SQLAlchemy."""

    def __init__(self, url: URL, spec: SourceSpec, **engine_options: Any) -> None:
        self.spec = spec
        self.url = url
        self.description = f"{url.render_as_string(hide_password=True)} table {spec.table}"
        self.engine: Engine = sa.create_engine(url, **engine_options)
        self._table: sa.Table | None = None

    # --- catalog -------------------------------------------------------------------------------------
    def table(self) -> sa.Table:
        """The source table as reflected from the catalog, checked against the settings (once)."""
        if self._table is None:
            self._table = self._reflect()
        return self._table

    def _reflect(self) -> sa.Table:
        spec = self.spec
        try:
            inspector = sa.inspect(self.engine)
            names = set(inspector.get_table_names(schema=spec.db_schema))
            names |= set(inspector.get_view_names(schema=spec.db_schema))
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None
        if spec.table not in names:
            where = f" in schema {spec.db_schema}" if spec.db_schema else ""
            raise SchemaError(f"source table {spec.table!r} not found{where} at {self.description}")
        columns = {c["name"]: c for c in inspector.get_columns(spec.table, schema=spec.db_schema)}
        wanted = [spec.key_column, spec.geometry_column, *spec.attribute_columns]
        if spec.modified_column:
            wanted.append(spec.modified_column)
        missing = [c for c in dict.fromkeys(wanted) if c not in columns]
        if missing:
            raise SchemaError(
                f"source table {spec.table!r} has no column(s) {', '.join(missing)}; "
                f"it has: {', '.join(sorted(columns))}"
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
                f"geometry_encoding 'native' is not supported for {self.engine.dialect.name} sources; "
                "store WKB or WKT, or use a PostgreSQL or SQL Server source"
            )
        return column

    def srid_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any] | None:
        """SELECT expression for a per-row SRID, or None when the column carries none."""
        return None

    def key_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The key as compared and ordered by (a backend may pin a binary collation here)."""
        return column

    def translate(self, exc: BaseException) -> Exception:
        """Map a driver error to the package's error tree, without the URL's secrets."""
        return PermanentSourceError(f"cannot read {self.description}: {type(exc).__name__}: {_first_line(exc)}")

    # --- statements ----------------------------------------------------------------------------------
    def select_rows(self) -> sa.Select[Any]:
        """SELECT of every column a raw batch carries, in the raw-batch layout."""
        table = self.table()
        spec = self.spec
        cols: list[sa.ColumnElement[Any]] = [
            table.c[spec.key_column].label(RAW_KEY),
            self.geometry_expression(table.c[spec.geometry_column]).label(RAW_GEOM),
        ]
        srid = self.srid_expression(table.c[spec.geometry_column])
        if srid is not None:
            cols.append(srid.label(RAW_SRID))
        if spec.modified_column:
            cols.append(table.c[spec.modified_column].label(RAW_MODIFIED))
        cols.extend(table.c[name] for name in spec.attribute_columns)
        return sa.select(*cols)

    def page_statement(self, modified_since: datetime | None, after: bool, limit: int) -> sa.Select[Any]:
        """Rows with key > :last (when `after`), optionally modified after :since, in key order, :limit."""
        key = self.key_expression(self.table().c[self.spec.key_column])
        stmt = self.select_rows().where(key.is_not(None))
        if after:
            stmt = stmt.where(key > sa.bindparam("last"))
        if modified_since is not None:
            stmt = stmt.where(self.table().c[self.spec.modified_column] > sa.bindparam("since"))
        return stmt.order_by(key).limit(limit)

    # --- reading -------------------------------------------------------------------------------------
    def _frame(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                result = conn.execute(stmt, params or {})
                return pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()))
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None

    def batches(self, modified_since: datetime | None = None) -> Iterator[pd.DataFrame]:
        base = {"since": modified_since} if modified_since is not None else {}

        def fetch_after(last: Any | None, limit: int) -> pd.DataFrame:
            if last is None:
                return self._frame(self.page_statement(modified_since, False, limit), base)
            return self._frame(self.page_statement(modified_since, True, limit), {**base, "last": last})

        def fetch_equal(key: Any) -> pd.DataFrame:
            stmt = self.select_rows().where(self.table().c[self.spec.key_column] == sa.bindparam("key"))
            return self._frame(stmt, {"key": key})

        yield from paginate(fetch_after, fetch_equal, self.spec.batch_size)
        nulls = self.select_rows().where(self.table().c[self.spec.key_column].is_(None))
        if modified_since is not None:
            nulls = nulls.where(self.table().c[self.spec.modified_column] > modified_since)
        null_rows = self._frame(nulls)
        if len(null_rows):
            yield null_rows

    def rows_for_keys(self, keys: Sequence[Any]) -> Iterator[pd.DataFrame]:
        key = self.table().c[self.spec.key_column]
        stmt = self.select_rows().where(key.in_(sa.bindparam("keys", expanding=True))).order_by(key)
        pending: list[pd.DataFrame] = []
        size = 0
        for start in range(0, len(keys), KEYS_PER_QUERY):
            frame = self._frame(stmt, {"keys": list(keys[start : start + KEYS_PER_QUERY])})
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
            stmt = base if last is None else base.where(key > sa.bindparam("last"))
            stmt = stmt.group_by(key).order_by(key).limit(limit)
            frame = self._frame(stmt, {} if last is None else {"last": last})
            if frame.empty:
                return
            yield frame
            if len(frame) < limit:
                return
            last = frame[RAW_KEY].iloc[-1]

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The key as returned to Python (a backend may cast it, e.g. to text)."""
        return key

    def count_rows(self, modified_since: datetime | None = None) -> int:
        """How many rows `batches` will yield (for progress bars; the source may change meanwhile)."""
        stmt = sa.select(sa.func.count()).select_from(self.table())
        if modified_since is not None:
            stmt = stmt.where(self.table().c[self.spec.modified_column] > modified_since)
        return int(self._frame(stmt).iloc[0, 0])

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    """The driver's message without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__

"""The embedded default source: a SQLite file with WKB or WKT geometry (no SpatiaLite needed).

Statements are built and checked by SqlSource (SQLAlchemy Core, catalog check) and run through ADBC's
SQLite driver, which hands back Arrow columns instead of a Python tuple per row: reading is about twice
as fast and strings stay in Arrow for the transform. SQLite columns may hold any type in any row (an
assessor's YearBuilt with 'unknown' in it), and Arrow needs one type per column, so attribute columns
are read as text and typed by the transform, which reports the rows that do not convert.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL

from countydatasync.errors import PermanentSourceError, TransientSourceError
from countydatasync.extract.base import RAW_GEOM, SourceSpec
from countydatasync.extract.sql import SqlSource

ARROW_TYPES = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


class SqliteSource(SqlSource):
    """MasterParcels in a SQLite file, opened read-only so a sync can never change the master."""

    def __init__(self, url: URL, spec: SourceSpec) -> None:
        path = Path(url.database or "")
        if not url.database or not path.is_file():
            # Never fall back to sample data: a wrong path must fail the run loudly.
            raise PermanentSourceError(f"source SQLite file {path} does not exist")
        self.uri = f"file:{path.resolve()}?mode=ro"
        read_only = URL.create("sqlite", database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"})
        super().__init__(read_only, spec)
        self.description = f"sqlite:///{path} table {spec.table}"
        self._adbc: Any = None

    def geometry_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        super().geometry_expression(column)  # refuses 'native'
        if self.spec.geometry_encoding == "wkt":
            return sa.cast(column, sa.Text)
        # Text in a WKB column becomes its bytes, which the transform reports as unparseable.
        return sa.case((sa.func.typeof(column).in_(["blob", "null"]), column), else_=sa.cast(column, sa.LargeBinary))

    def page_statement(self, modified_since: datetime | None, after: bool, limit: int) -> sa.Select[Any]:
        """With a watermark, few rows qualify: a unary + on the key keeps SQLite from walking the whole key
        index in order and lets it use the modified column's index, then sort (0.5 s -> 20 ms a page at 1M)."""
        if modified_since is None:
            return super().page_statement(modified_since, after, limit)
        column = self.table().c[self.spec.key_column]
        key = sa.literal_column("+" + str(column.compile(dialect=self.engine.dialect)))
        stmt = self.select_rows().where(key.is_not(None), self.modified_column() > sa.bindparam("since"))
        if after:
            stmt = stmt.where(key > self.key_parameter(sa.bindparam("last")))
        return stmt.order_by(key).limit(limit)

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(key, sa.Text)

    def select_rows(self) -> sa.Select[Any]:
        stmt = super().select_rows()
        columns = [c if c.name == RAW_GEOM else sa.cast(c, sa.Text).label(c.name) for c in stmt.selected_columns]
        return stmt.with_only_columns(*columns)

    def connect(self) -> Any:
        try:
            return adbc.connect(self.uri)
        except adbc.Error as exc:
            raise PermanentSourceError(f"cannot open {self.description}: {str(exc).splitlines()[0]}") from None

    def run(self, session: Any, stmt: sa.Executable, params: dict[str, Any]) -> pd.DataFrame:
        compiled = stmt.compile(dialect=self.engine.dialect)  # type: ignore[attr-defined]
        expanded = compiled.construct_expanded_state(params)  # type: ignore[attr-defined]
        values = list(expanded.positional_parameters)
        try:
            cursor = session.cursor()
            try:
                cursor.execute(expanded.statement, values or None)
                table = cursor.fetch_arrow_table()
            finally:
                cursor.close()
        except adbc.OperationalError as exc:
            message = str(exc).splitlines()[0]
            if "locked" in message or "busy" in message:
                raise TransientSourceError(f"{self.description} is busy: {message}") from None
            raise PermanentSourceError(f"cannot read {self.description}: {message}") from None
        return table.to_pandas(types_mapper=ARROW_TYPES.get)

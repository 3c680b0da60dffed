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
from urllib.parse import quote

import adbc_driver_sqlite.dbapi as adbc
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL

from countydatasync.errors import PermanentSourceError, SchemaError, TransientSourceError
from countydatasync.extract.base import RAW_GEOM, RAW_KEY, SourceSpec
from countydatasync.extract.sql import SqlSource

ARROW_TYPES = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


class SqliteSource(SqlSource):
    """MasterParcels in a SQLite file, opened read-only so a sync can never change the master."""

    def __init__(self, url: URL, spec: SourceSpec) -> None:
        path = Path(url.database or "")
        if not url.database or not path.is_file():
            # Never fall back to sample data: a wrong path must fail the run loudly.
            raise PermanentSourceError(f"source SQLite file {path} does not exist")
        # Percent-encoded: in a URI, '#' or '?' in the path would end it and '%' would start an escape.
        file_uri = f"file:{quote(path.resolve().as_posix())}"
        self.uri = f"{file_uri}?mode=ro"
        read_only = URL.create("sqlite", database=file_uri, query={"mode": "ro", "uri": "true"})
        super().__init__(read_only, spec)
        self.description = f"sqlite:///{path} table {spec.table}"
        self._adbc: Any = None

    def _reflect(self) -> sa.Table:
        """The catalog check, and one more: no key stored as a BLOB. SQLite sorts BLOBs after all text,
        so a BLOB key read back as text and bound as the next page's start sends paging back to it (or,
        not being UTF-8, cannot be read as text at all). Found through the key's index: BLOBs sort last."""
        table = super()._reflect()
        key = table.c[self.spec.key_column]
        last = sa.select(sa.func.typeof(key), sa.func.hex(key)).where(key.is_not(None)).order_by(key.desc()).limit(1)
        try:
            with self.engine.connect() as con:
                row = con.execute(last).first()
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc) from None
        if row is not None and row[0] == "blob":
            raise SchemaError(
                f"key column {self.spec.key_column!r} of {self.spec.table!r} holds binary (BLOB) values, e.g. "
                f"x'{row[1][:64]}': keys must be text or integers. Convert them at the source, e.g. UPDATE "
                f'"{self.spec.table}" SET "{self.spec.key_column}" = CAST("{self.spec.key_column}" AS TEXT) '
                f"WHERE typeof(\"{self.spec.key_column}\") = 'blob'"
            )
        return table

    def geometry_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        super().geometry_expression(column)  # refuses 'native'
        if self.spec.geometry_encoding == "wkt":
            return sa.cast(column, sa.Text)
        # Text in a WKB column becomes its bytes, which the transform reports as unparseable.
        return sa.case((sa.func.typeof(column).in_(["blob", "null"]), column), else_=sa.cast(column, sa.LargeBinary))

    def page_statement(self, modified_since: datetime | None, after: bool, limit: int) -> sa.Select[Any]:
        """With a watermark, few rows qualify: a unary + on the key keeps SQLite from walking the whole key
        index in order and lets it use the modified column's index, then sort (0.5 s -> 20 ms a page at 1M).
        The comparison with :last keeps the plain key, for its type affinity (+PIN has none, and an INTEGER
        key is never greater than the text '2'); wrapped in `(...) IS 1`, it stays off the key index too."""
        if modified_since is None:
            return super().page_statement(modified_since, after, limit)
        key = self.key_expression(self.table().c[self.spec.key_column])
        unindexed: sa.ColumnElement[Any] = sa.literal_column("+" + str(key.compile(dialect=self.engine.dialect)))
        since = self.modified_parameter(sa.bindparam("since"))
        stmt = self.select_rows().where(unindexed.is_not(None), self.modified_column() > since)
        if after:
            stmt = stmt.where((key > self.key_parameter(sa.bindparam("last"))).is_(sa.true()))
        return stmt.order_by(unindexed).limit(limit)

    def key_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Keys compare as Python sees them (as text, see `key_output`): by bytes, whatever collation the
        column declares (NOCASE would make 'a' equal 'A'). A column declared without a type may hold the
        integer 2 where the key read back is the text '2', which it never equals: such keys compare as
        text, which its index cannot serve (declare the column INTEGER or TEXT to page through the index)."""
        if isinstance(self.catalog_types.get(self.spec.key_column), sa.types.NullType | sa.LargeBinary):
            column = sa.cast(column, sa.Text)
        return column.collate("BINARY")

    def key_output(self, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(key, sa.Text)

    def select_rows(self) -> sa.Select[Any]:
        stmt = super().select_rows()
        as_read = (RAW_GEOM, RAW_KEY)  # the key is text already (key_output)
        columns = [c if c.name in as_read else sa.cast(c, sa.Text).label(c.name) for c in stmt.selected_columns]
        return stmt.with_only_columns(*columns)

    def connect(self) -> Any:
        try:
            return adbc.connect(self.uri)
        except adbc.Error as exc:
            raise PermanentSourceError(f"cannot open {self.description}: {str(exc).splitlines()[0]}") from None

    def run(self, session: Any, stmt: sa.Executable, params: dict[str, Any]) -> pd.DataFrame:
        expanded = self.compiled(stmt, self.engine.dialect).construct_expanded_state(params)
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

"""The embedded default source: a SQLite file with WKB or WKT geometry (no SpatiaLite needed)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from countydatasync.errors import PermanentSourceError
from countydatasync.extract.base import SourceSpec
from countydatasync.extract.sql import SqlSource


class SqliteSource(SqlSource):
    """MasterParcels in a SQLite file, opened read-only so a sync can never change the master."""

    def __init__(self, url: URL, spec: SourceSpec) -> None:
        path = Path(url.database or "")
        if not url.database or not path.is_file():
            # Never fall back to sample data: a wrong path must fail the run loudly.
            raise PermanentSourceError(f"source SQLite file {path} does not exist")
        read_only = URL.create("sqlite", database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"})
        super().__init__(read_only, spec)
        self.description = f"sqlite:///{path} table {spec.table}"

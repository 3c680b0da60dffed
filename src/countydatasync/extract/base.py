"""What every source backend provides, and the key-ordered paging they share.

A source yields raw batches: pandas frames with the key in `RAW_KEY`, the geometry as WKB bytes or WKT text
in `RAW_GEOM`, an optional per-row SRID in `RAW_SRID`, the modified timestamp in `RAW_MODIFIED` (when one is
configured) and every carried attribute under its source column name. Values are as the driver returned them;
typing and validation are the transform's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from countydatasync.errors import SchemaError
from countydatasync.settings import Settings

RAW_KEY = "__key"
RAW_GEOM = "__geom"
RAW_SRID = "__srid"
RAW_MODIFIED = "__modified"
KEY_COPIES = "__copies"


@dataclass(frozen=True)
class SourceSpec:
    """The parts of the settings a backend needs to build its queries."""

    table: str
    db_schema: str | None
    key_column: str
    geometry_column: str
    geometry_encoding: str
    modified_column: str | None
    attribute_columns: tuple[str, ...]
    batch_size: int
    max_retries: int = 5
    retry_backoff_seconds: float = 1.0
    connect_timeout_seconds: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceSpec:
        src = settings.source
        return cls(
            table=src.table,
            db_schema=src.db_schema,
            key_column=src.key_column,
            geometry_column=src.geometry_column,
            geometry_encoding=src.geometry_encoding,
            modified_column=src.modified_column or None,
            attribute_columns=tuple(dict.fromkeys(c.source for c in settings.columns)),
            batch_size=src.batch_size,
            max_retries=src.max_retries,
            retry_backoff_seconds=src.retry_backoff_seconds,
            connect_timeout_seconds=src.connect_timeout_seconds,
        )


class Source(Protocol):
    """A readable MasterParcels table."""

    description: str
    """Where the data comes from, safe to log and show (never contains a password)."""

    def batches(self, modified_since: datetime | None = None) -> Iterator[pd.DataFrame]:
        """All rows (or those modified after `modified_since`) in key order, rows with a null key last.
        Rows sharing a key always arrive in the same batch."""
        ...

    def rows_for_keys(self, keys: Sequence[Any]) -> Iterator[pd.DataFrame]:
        """The rows whose key is one of `keys`, in batches."""
        ...

    def all_keys(self) -> Iterator[pd.DataFrame]:
        """Every non-null key once, with how many rows carry it (`RAW_KEY`, `KEY_COPIES`), in batches: the
        key set that deletes and duplicates are reconciled against."""
        ...

    def count_rows(self, modified_since: datetime | None = None) -> int:
        """How many rows `batches(modified_since)` will yield, for progress reporting."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def paginate(
    fetch_after: Callable[[Any | None, int], pd.DataFrame],
    fetch_equal: Callable[[Any], pd.DataFrame],
    batch_size: int,
) -> Iterator[pd.DataFrame]:
    """Keyset paging (`WHERE key > last ORDER BY key LIMIT n`) that never splits a run of equal keys.

    `fetch_after(last, n)` returns up to n rows with key > last (all keys when last is None), sorted by key.
    A page's trailing rows that share its last key are held back and re-read at the start of the next
    page, so duplicates of one key always meet in one batch; a page made of one key only is completed with
    `fetch_equal(key)`. Each page costs one indexed range query however deep it is, unlike OFFSET.

    Keys are told apart with Python's `==`, so a backend must return keys that are equal in Python exactly
    when the database calls them equal (1.5 and 1.50, or 'a' and 'A' under a case-insensitive collation,
    would otherwise be split at a page edge and the row after the split skipped); and a key bound back as
    `last` must select the rows after it. A page whose last key does not move on raises a SchemaError.
    """
    last: Any | None = None
    while True:
        page = fetch_after(last, batch_size)
        if len(page) < batch_size:
            if len(page):
                yield page
            return
        keys = page[RAW_KEY]
        tail_key = keys.iloc[-1]
        keep = (keys != tail_key).to_numpy()
        cut = int(keep.sum())
        # In key order the rows sharing the last key end the page: slice them off without a copy.
        head = page.iloc[:cut] if keep[:cut].all() else page[keep]
        if head.empty:
            yield fetch_equal(tail_key)
            last = check_progress(last, tail_key)
        else:
            yield head.reset_index(drop=True)
            last = check_progress(last, head[RAW_KEY].iloc[-1])


def check_progress(previous: Any | None, last: Any) -> Any:
    """`last`, the key the next page starts after; a SchemaError if it is the key the page started after,
    which would read the same page forever (a key type the driver returns in a form that, bound back,
    no longer compares as the stored key)."""
    if previous is not None and bool(last == previous):
        raise SchemaError(
            f"paging by the key column stopped at key {last!r}: the driver returns keys of this column's "
            "type in a form that does not compare with the stored keys; use a text or integer key column"
        )
    return last

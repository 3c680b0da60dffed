import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc
import pandas as pd
import pytest
import sqlalchemy as sa

from countydatasync.errors import PermanentSourceError, SchemaError
from countydatasync.extract import RAW_KEY, open_source
from countydatasync.extract.base import KEY_COPIES
from countydatasync.settings import Settings


def _table(path: Path, keys: list[object]) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE MasterParcels (PIN, Shape BLOB, LastModified TEXT, OwnerName TEXT)")
    con.executemany("INSERT INTO MasterParcels VALUES (?, NULL, '2024-01-01T00:00:00', 'x')", [(k,) for k in keys])
    con.commit()
    con.close()
    return path


def _settings(path: Path, batch: int) -> Settings:
    return Settings(
        source={"url": f"sqlite:///{path}", "batch_size": batch},
        columns=[{"source": "OwnerName", "name": "owner_name"}],
        stats={"dimensions": [], "measures": []},
    )


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 100])
def test_paging_keeps_duplicates_together_and_loses_nothing(tmp_path: Path, batch: int) -> None:
    keys = ["A", "B", "B", "B", "C", "D", "D", "E", None, "F", None]
    source = open_source(_settings(_table(tmp_path / "s.sqlite", keys), batch))
    batches = [[None if pd.isna(k) else k for k in b[RAW_KEY]] for b in source.batches()]
    flat = [k for b in batches for k in b]
    assert sorted(flat, key=str) == sorted(keys, key=str)
    for key in ("B", "D"):  # every copy of a key in one batch
        assert sum(key in b for b in batches) == 1
    assert batches[-1] == [None, None]  # null keys come last, in their own batch
    assert source.count_rows() == len(keys)


def test_the_source_is_opened_read_only(tmp_path: Path) -> None:
    path = _table(tmp_path / "s.sqlite", ["A"])
    source = open_source(_settings(path, 10))
    with pytest.raises(PermanentSourceError, match="readonly|read-only|attempt to write"):
        source._frame(__import__("sqlalchemy").text("CREATE TABLE x (a)"))


def test_missing_file_table_and_column_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PermanentSourceError, match="does not exist"):
        open_source(_settings(tmp_path / "nope.sqlite", 10))
    path = _table(tmp_path / "s.sqlite", ["A"])
    bad_table = _settings(path, 10).model_copy(
        update={"source": _settings(path, 10).source.model_copy(update={"table": "Parcels; DROP TABLE MasterParcels"})}
    )
    with pytest.raises(SchemaError, match="not found"):
        list(open_source(bad_table).batches())
    bad_column = Settings(
        source={"url": f"sqlite:///{path}", "key_column": 'PIN" OR 1=1 --'},
        columns=[{"source": "OwnerName", "name": "owner_name"}],
        stats={"dimensions": [], "measures": []},
    )
    with pytest.raises(SchemaError, match=r"has no column 'PIN\" OR 1=1 --' \(source.key_column\)"):
        list(open_source(bad_column).batches())
    assert sqlite3.connect(path).execute("SELECT count(*) FROM MasterParcels").fetchone()[0] == 1


def _typed_table(path: Path, key_declaration: str, keys: list[object]) -> Path:
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE MasterParcels (PIN {key_declaration}, Shape BLOB, LastModified TEXT, OwnerName TEXT)")
    con.execute("CREATE INDEX ix_pin ON MasterParcels (PIN)")
    con.execute("CREATE INDEX ix_modified ON MasterParcels (LastModified)")
    con.executemany(
        "INSERT INTO MasterParcels VALUES (?, NULL, '2024-06-01T00:00:00', ?)",
        [(k, f"owner {i}") for i, k in enumerate(keys)],
    )
    con.commit()
    con.close()
    return path


def _rows(frames: object) -> list[tuple[str, str]]:
    return [(k, o) for frame in frames for k, o in zip(frame[RAW_KEY], frame["OwnerName"], strict=True)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("key_declaration", ["INTEGER", "", "NUMERIC", "TEXT"])
def test_integer_keys_page_fully_with_and_without_a_watermark(tmp_path: Path, key_declaration: str) -> None:
    """Keys read back as text ('2') must still select the stored integers after them, in every query."""
    source = open_source(_settings(_typed_table(tmp_path / "s.sqlite", key_declaration, list(range(1, 8))), 3))
    expected = [(str(k), f"owner {k - 1}") for k in range(1, 8)]
    assert _rows(source.batches()) == expected
    since = datetime(2024, 1, 1)
    assert _rows(source.batches(since)) == expected
    assert _rows(source.batches("2024-01-01T00:00:00")) == expected  # type: ignore[arg-type]  # text watermark
    assert source.count_rows(since) == 7
    assert _rows(source.rows_for_keys(["2", "5", "7", "9"])) == [("2", "owner 1"), ("5", "owner 4"), ("7", "owner 6")]
    keys = pd.concat(source.all_keys())
    assert list(zip(keys[RAW_KEY], keys[KEY_COPIES], strict=True)) == [(str(k), 1) for k in range(1, 8)]
    source.close()


def test_keys_equal_only_under_the_column_collation_are_not_lost(tmp_path: Path) -> None:
    """NOCASE calls 'a' and 'A' equal, Python does not: they are paged as two keys, each read once."""
    source = open_source(_settings(_typed_table(tmp_path / "s.sqlite", "TEXT COLLATE NOCASE", ["a", "A", "b"]), 2))
    assert sorted(_rows(source.batches())) == [("A", "owner 1"), ("a", "owner 0"), ("b", "owner 2")]
    assert _rows(source.rows_for_keys(["a"])) == [("a", "owner 0")]
    source.close()


def _plan(source: object, stmt: sa.Select[Any], path: Path, **params: object) -> str:
    expanded = stmt.compile(dialect=source.engine.dialect).construct_expanded_state(params)  # type: ignore[attr-defined]
    with closing(adbc.connect(str(path))) as con, closing(con.cursor()) as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + expanded.statement, list(expanded.positional_parameters))
        return " / ".join(row[-1] for row in cursor.fetchall())


@pytest.mark.parametrize("key_declaration", ["INTEGER", "TEXT"])
def test_pages_use_the_key_index_and_watermark_pages_the_modified_index(tmp_path: Path, key_declaration: str) -> None:
    path = _typed_table(tmp_path / "s.sqlite", key_declaration, list(range(1, 2000)))
    source = open_source(_settings(path, 100))
    full = _plan(source, source.page_statement(None, True, 100), path, last="5")
    assert "USING COVERING INDEX ix_pin (PIN>?)" in full or "USING INDEX ix_pin (PIN>?)" in full
    changed = _plan(source, source.page_statement(datetime(2024, 1, 1), True, 100), path, last="5", since="2024")
    assert changed.startswith("SEARCH MasterParcels USING INDEX ix_modified (LastModified>?)")
    source.close()

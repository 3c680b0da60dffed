import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from countydatasync.errors import PermanentSourceError, SchemaError
from countydatasync.extract import RAW_KEY, open_source
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
    with pytest.raises(SchemaError, match="has no column"):
        list(open_source(bad_column).batches())
    assert sqlite3.connect(path).execute("SELECT count(*) FROM MasterParcels").fetchone()[0] == 1

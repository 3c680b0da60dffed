"""A source path with characters that mean something in a URI ('#', '?', '%') opens that very file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from countydatasync.extract import RAW_KEY, open_source
from countydatasync.settings import Settings


@pytest.mark.parametrize("name", ["src#hash.sqlite", "src?query.sqlite", "src%41.sqlite", "src ü.sqlite"])
def test_a_source_path_with_uri_characters_opens_that_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE MasterParcels (PIN TEXT, Shape BLOB, LastModified TEXT, OwnerName TEXT)")
    con.executemany("INSERT INTO MasterParcels VALUES (?, NULL, '2024-01-01', 'x')", [("A",), ("B",)])
    con.commit()
    con.close()
    url = sa.URL.create("sqlite", database=str(path)).render_as_string()
    settings = Settings(
        source={"url": url},
        columns=[{"source": "OwnerName", "name": "owner"}],
        stats={"dimensions": [], "measures": []},
    )

    source = open_source(settings)
    assert [key for batch in source.batches() for key in batch[RAW_KEY]] == ["A", "B"]
    assert source.count_rows() == 2
    source.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no empty file made under a cut-off name

"""Defects the messy-table fuzzer (test_messy_rows.py) found, each reduced to a plain example.

Some were outside transform/ (a key with a NUL character, BLOB keys, a late duplicate of a rejected copy,
a watermark run reading a duplicated key twice) and were fixed there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import shapely

from countydatasync.errors import SchemaError
from countydatasync.extract.base import RAW_GEOM, RAW_KEY
from countydatasync.sample.county import COLUMNS, SAMPLE_TABLE
from countydatasync.settings import ColumnSpec, Settings
from countydatasync.sync import run_sync
from countydatasync.transform import TransformPlan, transform_batch

BOX = shapely.box(1_020_000, 600_000, 1_020_090, 600_140)


def arrow_text(values: list[bytes | None]) -> pd.Series:
    """Text as the SQLite driver hands it back: an Arrow string column holding whatever bytes were stored."""
    raw = pa.array(values, pa.large_binary()).view(pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([raw])))


def write_source(path: Path, rows: list[dict[str, object]], shape_type: str = "BLOB") -> None:
    names = [c for c, _ in COLUMNS]
    types = {c: shape_type if c == "Shape" else t for c, t in COLUMNS}
    con = sqlite3.connect(path)
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {SAMPLE_TABLE} ({', '.join(f'{c} {types[c]}' for c in names)})")
        con.execute(f"DELETE FROM {SAMPLE_TABLE}")
        con.executemany(
            f"INSERT INTO {SAMPLE_TABLE} VALUES ({', '.join('?' * len(names))})",
            [[row.get(c) for c in names] for row in rows],
        )
        con.commit()
    finally:
        con.close()


def settings_for(tmp_path: Path, **source: object) -> Settings:
    return Settings(
        source={"url": f"sqlite:///{tmp_path / 'source.sqlite'}", "batch_size": 10, **source},
        output={"directory": tmp_path / "staging"},
    )


def rows_of(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


# --- fixed in transform/ -----------------------------------------------------------------------------------
def test_text_that_is_not_utf8_is_loaded_with_replacement_characters() -> None:
    """Bytes that are not UTF-8 in a TEXT column (a BLOB, or text written by a legacy client) reach the
    transform as an invalid Arrow string; every Arrow function raised on it and the whole run failed."""
    raw = pd.DataFrame(
        {
            RAW_KEY: ["A", "B"],
            RAW_GEOM: pd.Series([shapely.to_wkb(BOX)] * 2, dtype=object),
            "OwnerName": arrow_text([b"Olsen", b"M\xfcller \xff"]),
        }
    )
    plan = TransformPlan("pin", (ColumnSpec(source="OwnerName", name="owner_name"),), "wkb", 2927, 2927, "UTC")
    batch = transform_batch(raw, plan)
    assert batch.parcels["owner_name"].tolist() == ["Olsen", "M\ufffdller \ufffd"]
    assert batch.issues.empty


def test_wkb_in_a_wkt_column_is_rejected_as_unparseable() -> None:
    """WKB bytes in a WKT column arrive cast to text, which is not UTF-8: the row is unparseable_geometry,
    not a crash of the batch."""
    wkt = shapely.to_wkt(BOX).encode()
    raw = pd.DataFrame({RAW_KEY: ["A", "B"], RAW_GEOM: arrow_text([wkt, shapely.to_wkb(BOX)])})
    batch = transform_batch(raw, TransformPlan("pin", (), "wkt", 2927, 2927, "UTC"))
    assert batch.parcels["pin"].tolist() == ["A"]
    assert batch.issues[["key", "reason", "severity"]].values.tolist() == [["B", "unparseable_geometry", "error"]]


def test_a_sync_over_text_columns_holding_blobs(tmp_path: Path) -> None:
    """End to end: a BLOB in a TEXT attribute column and WKB in a WKT geometry column fail no run."""
    write_source(
        tmp_path / "source.sqlite",
        [
            {"PIN": "P1", "Shape": shapely.to_wkt(BOX), "OwnerName": b"\xff\xfeLEGACY"},
            {"PIN": "P2", "Shape": shapely.to_wkb(BOX), "OwnerName": "Olsen"},
        ],
        shape_type="TEXT",
    )
    settings = settings_for(tmp_path, geometry_encoding="wkt", modified_column="")
    result = run_sync(settings)
    assert (result.extracted, result.inserted, result.rejected) == (2, 1, 1)
    loaded = rows_of(settings.output.working_path, "SELECT pin, owner_name FROM parcels WHERE sync_status = 'synced'")
    assert loaded == [("P1", "\ufffd\ufffdLEGACY")]
    assert rows_of(settings.output.working_path, "SELECT pin, reason FROM errors") == [("P2", "unparseable_geometry")]


# --- outside transform/: reported, not fixed here ----------------------------------------------------------
def test_a_key_with_a_nul_character_is_rejected_and_the_next_run_works(tmp_path: Path) -> None:
    """'A\\x00B' used to pass for 'A' in the key lists (json_each ends the text at the NUL): the second run
    inserted the parcel again and failed on the primary key, every run. Such a key is now rejected."""
    source = tmp_path / "source.sqlite"
    write_source(source, [{"PIN": "A\x00B", "Shape": shapely.to_wkb(BOX), "OwnerName": "Olsen"}])
    settings = settings_for(tmp_path, modified_column="")
    run_sync(settings)
    write_source(source, [{"PIN": "A\x00B", "Shape": shapely.to_wkb(BOX), "OwnerName": "Olsen, Mary"}])
    result = run_sync(settings)
    assert (result.extracted, result.rejected) == (1, 1)
    errors = rows_of(settings.output.working_path, "SELECT pin, reason, excerpt FROM errors WHERE run_id = 2")
    assert errors == [(None, "invalid_key", "A\\x00B")]


@pytest.mark.parametrize("blob", [b"B\xff1", b"P1"], ids=["not UTF-8", "UTF-8"])
def test_binary_keys_fail_the_run_up_front_saying_how_to_fix_them(tmp_path: Path, blob: bytes) -> None:
    """A BLOB key failed mid-run: paging went back to it for ever (SQLite sorts BLOBs after all text), or
    its bytes could not be read as text. Keys must be text or integers: the run says so before reading."""
    write_source(
        tmp_path / "source.sqlite",
        [{"PIN": blob, "Shape": shapely.to_wkb(BOX)}, {"PIN": "P1", "Shape": shapely.to_wkb(BOX)}],
    )
    settings = settings_for(tmp_path, modified_column="", batch_size=1)
    with pytest.raises(SchemaError, match=rf"holds binary \(BLOB\) values, e.g. x'{blob.hex().upper()}'.*CAST"):
        run_sync(settings)
    assert not settings.output.geo_path.exists() or settings.output.geo_path.stat().st_size == 0


def test_a_late_duplicate_of_a_rejected_copy_leaves_one_error_row_per_row(tmp_path: Path) -> None:
    """' P1' (a point) and 'P1' (a box) are one key in two batches. The first copy is rejected as
    non_polygonal; when the second turns up, the first is 'demoted' again with a second errors row, so the
    errors table lists three rejections for the run's two."""
    write_source(
        tmp_path / "source.sqlite",
        [
            {"PIN": " P1", "Shape": shapely.to_wkb(shapely.Point(1_020_000, 600_000))},
            {"PIN": "P1", "Shape": shapely.to_wkb(BOX)},
        ],
    )
    settings = settings_for(tmp_path, modified_column="", batch_size=1)
    result = run_sync(settings)
    assert result.rejected == 2
    errors = rows_of(settings.output.working_path, "SELECT reason FROM errors WHERE severity = 'error'")
    assert len(errors) == result.rejected, errors


def test_a_watermark_run_reads_each_row_once(tmp_path: Path) -> None:
    """A watermark run reads the changed copy of a duplicated key, then every copy again (keys carried by
    several rows are re-read): three rows in the table, five extracted, four rejected for two bad rows."""
    source = tmp_path / "source.sqlite"
    rows = [
        {"PIN": "P1", "Shape": shapely.to_wkb(BOX), "LastModified": "2024-02-01T10:00:00"},
        {"PIN": "P2", "Shape": shapely.to_wkb(BOX), "LastModified": "2024-02-01T10:00:00"},
        {"PIN": "P2", "Shape": shapely.to_wkb(BOX), "LastModified": "2024-02-01T10:00:00"},
    ]
    write_source(source, rows)
    settings = settings_for(tmp_path)
    run_sync(settings)
    rows[2]["LastModified"] = "2027-01-01T00:00:00"
    write_source(source, rows)
    result = run_sync(settings)
    assert result.extracted <= 3 and result.rejected == 2, result


def test_coordinates_past_the_rtree_range_are_rejected() -> None:
    """A parcel at 1e150 feet loaded with an infinite R-tree box (float32) and, at 1e300, an infinite area."""
    from countydatasync.transform.geometry import clean_geometries

    values = pd.Series([shapely.to_wkb(shapely.box(s, s, 2 * s, 2 * s)) for s in (1e20, 1e150, 1e300)], dtype=object)
    outcome = clean_geometries(values, "wkb", 2927, 2927)
    assert [str(r) if r else None for r in outcome.reasons] == [
        None,
        "invalid_geometry_rejected",
        "invalid_geometry_rejected",
    ]
    assert outcome.messages[1].startswith("coordinates out of range (up to 2e+150;")

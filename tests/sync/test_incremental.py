"""Incremental runs equal a full rebuild, whatever the sequence of edits (issue: incremental sync)."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from .edits import BROKEN, OPS, apply_edit, stamp
from .helpers import query

ATTRS = "pin, owner_name, land_value, land_use, acres, last_sale_date, gis_acres, sync_note"


def published(settings: Settings) -> dict[str, object]:
    """What readers see, minus run ids and timestamps (which differ between equal states)."""
    out = settings.output
    working = query(
        out.working_path, "SELECT pin, sync_status, sync_reason, attr_hash, geom_hash FROM parcels ORDER BY pin"
    )
    synced = working[working["sync_status"] == "synced"]
    errors = working[working["sync_status"] == "error"]
    geo = query(out.geo_path, f"SELECT {ATTRS}, hex(geom) AS g FROM parcels WHERE sync_status = 'synced' ORDER BY pin")
    aggregates = query(out.stats_path, "SELECT * FROM aggregates ORDER BY dimension, value")
    boxes = query(
        out.geo_path,
        "SELECT p.pin, r.minx, r.maxx, r.miny, r.maxy FROM parcels p LEFT JOIN rtree_parcels_geom r ON r.id = p.fid "
        "WHERE p.sync_status = 'synced' ORDER BY p.pin",
    )
    counts = query(out.geo_path, "SELECT (SELECT count(*) FROM rtree_parcels_geom) AS r, count(*) AS n FROM parcels")
    assert counts["r"][0] == counts["n"][0]
    return {
        "boxes": boxes,
        "synced": _records(synced.drop(columns="sync_status")),
        "errors": _records(errors[["pin", "sync_reason"]]),
        "geo": _records(geo),
        "aggregates": aggregates,
    }


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows with None for every missing value: a null REAL reads back as a NaN, which equals no other NaN."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    for part in ("synced", "errors", "geo"):
        assert a[part] == b[part], part
    # R-tree boxes are float32 rounded outward, by SQLite or by the bulk packer: equal within a rounding step
    # (an edit moves a parcel by a whole unit or more).
    boxes_a, boxes_b = a["boxes"], b["boxes"]
    assert isinstance(boxes_a, pd.DataFrame) and isinstance(boxes_b, pd.DataFrame)
    assert boxes_a["pin"].tolist() == boxes_b["pin"].tolist()
    assert ((boxes_a.iloc[:, 1:] - boxes_b.iloc[:, 1:]).abs() <= 0.25).all().all()
    left, right = a["aggregates"], b["aggregates"]
    assert isinstance(left, pd.DataFrame) and isinstance(right, pd.DataFrame)
    assert left[["dimension", "value", "parcel_count"]].equals(right[["dimension", "value", "parcel_count"]])
    for column in left.columns[3:]:
        for x, y in zip(left[column], right[column], strict=True):
            assert (pd.isna(x) and pd.isna(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), column


BASE: dict[str, Path] = {}


def base_county(tmp_root: Path) -> Path:
    if "db" not in BASE:
        BASE["db"] = write_sample_county(tmp_root / "incremental_base.sqlite", SampleCounty(parcels=400, seed=3))
    return BASE["db"]


def fresh_source(tmp_path_factory, name: str) -> Path:
    """A private copy of the base county, in a new folder beside which a test writes its staging DBs."""
    source = tmp_path_factory.mktemp(name) / "source.sqlite"
    shutil.copyfile(base_county(tmp_path_factory.getbasetemp()), source)
    return source


def two_single_row_pins(con: sqlite3.Connection, condition: str = "1", order: str = "PIN") -> list[str]:
    """Two keys that one row each carries, with a parseable geometry, meeting `condition`."""
    sql = (
        f"SELECT PIN FROM MasterParcels WHERE length(Shape) > 40 AND {condition} AND PIN IN "
        f"(SELECT PIN FROM MasterParcels GROUP BY PIN HAVING count(*) = 1) ORDER BY {order} LIMIT 2"
    )
    return [r[0] for r in con.execute(sql)]


script = st.lists(
    st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10_000)), min_size=1, max_size=8), min_size=1, max_size=3
)


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=script, watermark=st.booleans())
def test_incremental_runs_equal_a_full_rebuild(tmp_path_factory, rounds, watermark: bool) -> None:
    source = fresh_source(tmp_path_factory, "inc")
    work = source.parent
    common = {"url": f"sqlite:///{source}", "batch_size": 64, "modified_column": "LastModified" if watermark else ""}
    incremental = Settings(source=common, output={"directory": work / "incremental"})
    run_sync(incremental)
    for edits in rounds:
        for op, pick in edits:
            apply_edit(source, op, pick)
        result = run_sync(incremental)
        assert result.reconciles
    rebuilt = Settings(source=common, output={"directory": work / "rebuilt"})
    run_sync(rebuilt)
    assert_same(published(incremental), published(rebuilt))


@pytest.mark.parametrize("restored", [1, 2])
def test_a_watermark_run_finds_restored_parcels_beside_as_many_deletes(tmp_path_factory, restored: int) -> None:
    """Parcels back under new keys with their old timestamps, and as many or fewer deleted: the counts of
    staged and source keys then agree or nearly so, and only the key-set check finds the restored ones."""
    source = fresh_source(tmp_path_factory, f"restore{restored}")
    common = {"url": f"sqlite:///{source}", "modified_column": "LastModified"}
    incremental = Settings(source=common, output={"directory": source.parent / "incremental"})
    run_sync(incremental)
    for pick in range(restored):
        apply_edit(source, "restore", 101 + pick)
    apply_edit(source, "delete", 7)
    result = run_sync(incremental)
    assert (result.inserted, result.deleted, result.updated) == (restored, 1, 0)
    rebuilt = Settings(source=common, output={"directory": source.parent / "rebuilt"})
    run_sync(rebuilt)
    assert_same(published(incremental), published(rebuilt))


def test_change_log_names_exactly_the_fields_that_changed(tmp_path_factory) -> None:
    source = fresh_source(tmp_path_factory, "changelog")
    settings = Settings(source={"url": f"sqlite:///{source}"}, output={"directory": source.parent / "out"})
    run_sync(settings)
    con = sqlite3.connect(source)
    with con:
        # parcels whose sale price is missing: a missing number must not read as a change
        pins = two_single_row_pins(con, "LastSalePrice IS NULL")
        # text, date, real and integer fields; a value rewritten as it was is no change
        con.execute(
            "UPDATE MasterParcels SET OwnerName = 'NEW OWNER', LastSaleDate = '2026-05-01', LastModified = ? "
            "WHERE PIN = ?",
            (stamp(), pins[0]),
        )
        con.execute(
            "UPDATE MasterParcels SET TaxYear = TaxYear + 1, LandValue = LandValue + 0.5, SitusCity = SitusCity, "
            "LastModified = ? WHERE PIN = ?",
            (stamp(), pins[1]),
        )
    con.close()
    result = run_sync(settings)
    assert result.updated == 2
    log = query(settings.output.working_path, "SELECT pin, changed_fields FROM change_log WHERE action = 'update'")
    assert dict(zip(log["pin"], log["changed_fields"].map(json.loads), strict=True)) == {
        pins[0]: ["owner_name", "last_sale_date", "last_modified"],
        pins[1]: ["land_value", "tax_year", "last_modified"],
    }


def test_a_null_land_value_publishes_as_a_full_rebuild_does(tmp_path_factory) -> None:
    source = fresh_source(tmp_path_factory, "nullvalue")
    common = {"url": f"sqlite:///{source}", "modified_column": ""}
    incremental = Settings(source=common, output={"directory": source.parent / "incremental"})
    run_sync(incremental)
    con = sqlite3.connect(source)
    with con:
        pin = two_single_row_pins(con)[0]
        con.execute("UPDATE MasterParcels SET LandValue = NULL WHERE PIN = ?", (pin,))
    con.close()
    assert run_sync(incremental).updated == 1
    rebuilt = Settings(source=common, output={"directory": source.parent / "rebuilt"})
    run_sync(rebuilt)
    state = published(incremental)
    assert [r["land_value"] for r in state["geo"] if r["pin"] == pin] == [None]  # type: ignore[attr-defined]
    assert_same(state, published(rebuilt))


def test_a_first_load_takes_a_demoted_copy_off_inserted_and_repaired(tmp_path_factory) -> None:
    """' P' sorts far from 'P', so the copy loaded from an earlier batch is demoted at the end of the run. A
    first load logs no inserts, yet that copy was inserted (not updated); a repaired one is no longer repaired."""
    source = fresh_source(tmp_path_factory, "firstdup")
    common = {"url": f"sqlite:///{source}", "batch_size": 64}
    probe = Settings(source=common, output={"directory": source.parent / "probe"})
    assert run_sync(probe).repaired == 1
    repaired = query(
        probe.output.working_path, "SELECT pin FROM parcels WHERE sync_reason = 'invalid_geometry_repaired'"
    )
    con = sqlite3.connect(source)
    with con:
        pins = [two_single_row_pins(con, order="PIN DESC")[0], repaired["pin"][0]]
        for pin in pins:
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE PIN = ?", (pin,))
            con.execute("UPDATE MasterParcels SET PIN = ' ' || PIN WHERE rowid = last_insert_rowid()")
    con.close()
    settings = Settings(source=common, output={"directory": source.parent / "first"})
    result = run_sync(settings)
    counts = ["extracted", "inserted", "updated", "unchanged", "rejected", "repaired"]
    assert [getattr(result, c) for c in counts] == [402, 389, 0, 0, 13, 0]
    assert query(settings.output.stats_path, f"SELECT {', '.join(counts)} FROM runs").values.tolist() == [
        [402, 389, 0, 0, 13, 0]
    ]
    status = query(settings.output.working_path, "SELECT sync_status, count(*) AS n FROM parcels GROUP BY 1")
    assert dict(zip(status["sync_status"], status["n"], strict=True)) == {"synced": 389, "error": 9}
    demoted = query(
        settings.output.working_path, f"SELECT sync_reason FROM parcels WHERE pin IN ('{pins[0]}', '{pins[1]}')"
    )
    assert demoted["sync_reason"].tolist() == ["duplicate_key", "duplicate_key"]


def test_keys_that_differ_only_in_spacing_are_rejected_together(tmp_path_factory) -> None:
    """' P' sorts far from 'P', so the two copies of one key arrive in different batches: the copy loaded
    first is demoted at the end of the run, on a first load as on a watermark run that meets the second
    copy only through its key-set check (it keeps its old LastModified)."""
    source = fresh_source(tmp_path_factory, "spacing")
    work = source.parent
    common = {"url": f"sqlite:///{source}", "batch_size": 64, "modified_column": "LastModified"}
    incremental = Settings(source=common, output={"directory": work / "incremental"})
    run_sync(incremental)
    con = sqlite3.connect(source)
    with con:
        pins = two_single_row_pins(con, order="PIN DESC")
        for pin in pins:
            con.execute("INSERT INTO MasterParcels SELECT * FROM MasterParcels WHERE PIN = ?", (pin,))
            con.execute("UPDATE MasterParcels SET PIN = ' ' || PIN WHERE rowid = last_insert_rowid()")
        # One copy of each is also broken: being carried twice is still the reason that counts, whichever
        # copy a run meets first (the spaced copy keeps its old timestamp, the other gets a new one).
        con.execute("UPDATE MasterParcels SET Shape = ? WHERE PIN = ?", (BROKEN, " " + pins[0]))
        con.execute("UPDATE MasterParcels SET Shape = ?, LastModified = ? WHERE PIN = ?", (BROKEN, stamp(), pins[1]))
    con.close()
    result = run_sync(incremental)
    assert result.reconciles and result.rejected >= 4 and result.mode == "incremental"
    rebuilt = Settings(source=common, output={"directory": work / "rebuilt"})
    full = run_sync(rebuilt)
    assert full.reconciles
    for settings in (incremental, rebuilt):
        status = query(
            settings.output.working_path,
            f"SELECT pin, sync_status, sync_reason FROM parcels WHERE pin IN ('{pins[0]}', '{pins[1]}')",
        )
        assert set(status["sync_status"]) == {"error"} and set(status["sync_reason"]) == {"duplicate_key"}
    assert_same(published(incremental), published(rebuilt))

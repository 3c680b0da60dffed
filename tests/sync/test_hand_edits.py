"""Staging copies edited by hand (a working-DB row changed or removed, a feature deleted in QGIS): the
source is the master, so syncs put its values back, and nothing fails or drifts from a full rebuild."""

from __future__ import annotations

import json
import sqlite3

import pytest

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from .helpers import query
from .test_incremental import assert_same, fresh_source, published


def _settings(source, name: str, watermark: bool) -> Settings:
    return Settings(
        source={"url": f"sqlite:///{source}", "batch_size": 64, "modified_column": "LastModified" if watermark else ""},
        output={"directory": source.parent / name},
    )


def _synced_pins(settings: Settings, n: int) -> list[str]:
    rows = query(settings.output.working_path, "SELECT pin FROM parcels WHERE sync_status = 'synced' ORDER BY pin")
    return rows["pin"].tolist()[10 : 10 + n]


def _edit(path, sql: str, params: tuple = ()) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(sql, params)
    con.close()


@pytest.mark.parametrize("watermark", [True, False])
def test_a_hand_edit_in_the_working_db_is_flagged_then_restored_from_the_source(tmp_path_factory, watermark):
    source = fresh_source(tmp_path_factory, "hand")
    settings = _settings(source, "staging", watermark)
    run_sync(settings)
    pin = _synced_pins(settings, 1)[0]
    original = query(settings.output.working_path, "SELECT owner_name, land_value FROM parcels WHERE pin = ?", (pin,))

    _edit(
        settings.output.working_path,
        "UPDATE parcels SET owner_name = 'HAND EDIT', land_value = 1 WHERE pin = ?",
        (pin,),
    )

    flagged = query(settings.output.working_path, "SELECT sync_status, sync_reason FROM parcels WHERE pin = ?", (pin,))
    assert flagged.iloc[0].tolist() == ["pending", "edited_locally"]
    result = run_sync(settings)
    assert result.updated == 1 and result.reconciles
    restored = query(
        settings.output.working_path, "SELECT owner_name, land_value, sync_status FROM parcels WHERE pin = ?", (pin,)
    )
    assert restored[["owner_name", "land_value"]].equals(original) and restored["sync_status"][0] == "synced"
    log = query(settings.output.working_path, "SELECT action, changed_fields FROM change_log WHERE pin = ?", (pin,))
    assert log["action"].tolist() == ["update"]
    assert json.loads(log["changed_fields"][0]) == ["owner_name", "land_value"]
    rebuilt = _settings(source, "rebuilt", watermark)
    run_sync(rebuilt)
    assert_same(published(settings), published(rebuilt))  # the aggregates no longer count the edited value
    assert run_sync(settings).updated == 0  # settled: the next run has nothing to restore


@pytest.mark.parametrize("watermark", [True, False])
def test_a_working_row_removed_by_hand_comes_back_without_failing_the_run(tmp_path_factory, watermark):
    source = fresh_source(tmp_path_factory, "removed")
    settings = _settings(source, "staging", watermark)
    run_sync(settings)
    pins = _synced_pins(settings, 2)
    _edit(settings.output.working_path, "DELETE FROM parcels WHERE pin IN (?, ?)", tuple(pins))

    result = run_sync(settings)  # used to fail every night: the layer still had the features (UNIQUE pin)

    assert result.inserted == 2 and result.reconciles
    back = query(settings.output.working_path, "SELECT pin FROM parcels WHERE pin IN (?, ?) ORDER BY pin", tuple(pins))
    assert back["pin"].tolist() == sorted(pins)
    rebuilt = _settings(source, "rebuilt", watermark)
    run_sync(rebuilt)
    assert_same(published(settings), published(rebuilt))


def test_a_full_sync_puts_back_a_feature_deleted_in_the_geo_db(tmp_path_factory, validate_gpkg):
    source = fresh_source(tmp_path_factory, "feature")
    settings = _settings(source, "staging", True)
    run_sync(settings)
    pin = _synced_pins(settings, 1)[0]
    _edit(settings.output.geo_path, "DELETE FROM parcels WHERE pin = ?", (pin,))  # GeoPackage triggers keep the R-tree

    run_sync(settings, full=True)  # rewrote features in place only, so the deleted one stayed missing

    assert query(settings.output.geo_path, "SELECT count(*) AS n FROM parcels WHERE pin = ?", (pin,))["n"][0] == 1
    rebuilt = _settings(source, "rebuilt", True)
    run_sync(rebuilt)
    assert_same(published(settings), published(rebuilt))
    validate_gpkg(settings.output.geo_path)

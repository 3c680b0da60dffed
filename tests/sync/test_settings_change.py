"""Settings edited between runs, and a source whose schema drifts: the next run publishes what a full rebuild
with the new settings would (issue: incremental sync), or fails naming the column."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from countydatasync.errors import SchemaError
from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from .edits import OPS, apply_edit
from .helpers import file_digests, query
from .test_incremental import ATTRS, _records, assert_same, fresh_source

NEW_OWNERS = "UPDATE {table} SET OwnerName = 'OTHER ' || OwnerName WHERE rowid % 3 = 0"


def published_as(settings: Settings) -> dict[str, object]:
    """test_incremental.published for any key name and layer: the key reads as `pin`."""
    out, key, layer = settings.output, settings.source.key_name, settings.output.layer
    attrs = ATTRS.replace("pin,", f'"{key}" AS pin,', 1)
    working = query(
        out.working_path,
        f'SELECT "{key}" AS pin, sync_status, sync_reason, attr_hash, geom_hash FROM parcels ORDER BY pin',
    )
    synced = working[working["sync_status"] == "synced"]
    errors = working[working["sync_status"] == "error"]
    geo = query(
        out.geo_path, f"SELECT {attrs}, hex(geom) AS g FROM \"{layer}\" WHERE sync_status = 'synced' ORDER BY 1"
    )
    boxes = query(
        out.geo_path,
        f'SELECT p."{key}" AS pin, r.minx, r.maxx, r.miny, r.maxy FROM "{layer}" p LEFT JOIN "rtree_{layer}_geom" r '
        "ON r.id = p.fid WHERE p.sync_status = 'synced' ORDER BY 1",
    )
    return {
        "boxes": boxes,
        "synced": _records(synced.drop(columns="sync_status")),
        "errors": _records(errors[["pin", "sync_reason"]]),
        "geo": _records(geo),
        "aggregates": query(out.stats_path, "SELECT * FROM aggregates ORDER BY dimension, value"),
    }


def tables(path: Path) -> dict[str, list[str]]:
    """Every table of a database with its column names."""
    names = query(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")["name"]
    return {n: query(path, f"SELECT name FROM pragma_table_info('{n}')")["name"].tolist() for n in names}


def settings_for(source: Path, directory: str, *overrides: dict[str, Any]) -> Settings:
    """Watermark settings (LastModified) for `source`, staging in `directory` beside it."""
    values: dict[str, Any] = {
        "source": {"url": f"sqlite:///{source}", "batch_size": 64, "modified_column": "LastModified"},
        "output": {"directory": source.parent / directory},
    }
    for more in overrides:
        for section, fields in more.items():
            values[section] = {**values.get(section, {}), **fields} if isinstance(fields, dict) else fields
    return Settings(**values)


def county_with_alternatives(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The 400-parcel base county with what a changed setting can point at: a second geometry column
    (every parcel moved), a second timestamp column (in 2020, before every LastModified), a second table and a
    second database file (a third of the owners differ in each)."""
    source = fresh_source(tmp_path_factory, name)
    con = sqlite3.connect(source)
    with con:
        con.execute("ALTER TABLE MasterParcels ADD COLUMN Shape2 BLOB")
        con.execute("ALTER TABLE MasterParcels ADD COLUMN EditDate TEXT")
        con.execute("UPDATE MasterParcels SET EditDate = '2020' || substr(LastModified, 5)")
        for rowid, shape in con.execute("SELECT rowid, Shape FROM MasterParcels").fetchall():
            geom = shapely.from_wkb(shape, on_invalid="ignore") if isinstance(shape, bytes) else None
            moved = shapely.to_wkb(shapely.transform(geom, lambda xy: xy + 10)) if geom is not None else shape
            con.execute("UPDATE MasterParcels SET Shape2 = ? WHERE rowid = ?", (moved, rowid))
        con.execute("CREATE TABLE Parcels2 AS SELECT * FROM MasterParcels")
        con.execute(NEW_OWNERS.format(table="Parcels2"))
    con.close()
    restored = source.parent / "restored.sqlite"
    shutil.copyfile(source, restored)
    con = sqlite3.connect(restored)
    with con:
        con.execute(NEW_OWNERS.format(table="MasterParcels"))
    con.close()
    return source


def owner_from(source: str) -> dict[str, Any]:
    columns = [c.model_dump() for c in Settings().columns]
    return {"columns": [{**c, "source": source} if c["name"] == "owner_name" else c for c in columns]}


# Settings that change what a parcel's row becomes without changing the staging schema. A watermark run reads
# only rows modified since the last run, so each of them must make the next run read every row again.
READ_CHANGES = {
    "a carried column's source column": ({}, owner_from("OwnerMailAddress")),
    "source.srid (output CRS fixed)": ({"output": {"target_srid": 2927}}, {"source": {"srid": 2286}}),
    "source.timezone": ({}, {"source": {"timezone": "America/Los_Angeles"}}),
    "source.geometry_column": ({}, {"source": {"geometry_column": "Shape2"}}),
    "source.table": ({}, {"source": {"table": "Parcels2"}}),
    "source.url (a restored copy)": ({}, {}),  # the copy's path is known once the test has made it
    "source.modified_column": ({}, {"source": {"modified_column": "EditDate"}}),
}


@pytest.mark.parametrize("change", list(READ_CHANGES))
def test_a_setting_that_changes_how_rows_are_read_makes_the_next_run_equal_a_rebuild(
    tmp_path_factory: pytest.TempPathFactory, change: str
) -> None:
    source = county_with_alternatives(tmp_path_factory, "read")
    common, new = READ_CHANGES[change]
    if change.startswith("source.url"):
        new = {"source": {"url": f"sqlite:///{source.parent / 'restored.sqlite'}"}}
    run_sync(settings_for(source, "incremental", common))
    apply_edit(source, "attribute", 5)  # a new LastModified, and no new EditDate
    apply_edit(source, "delete", 9)

    after = run_sync(settings_for(source, "incremental", common, new))
    rebuilt = settings_for(source, "rebuilt", common, new)
    run_sync(rebuilt)
    assert after.mode == "incremental" and after.inserted == 0  # read again and compared, not rebuilt
    assert_same(published_as(settings_for(source, "incremental", common, new)), published_as(rebuilt))
    # and the run after it is a watermark run again
    assert run_sync(settings_for(source, "incremental", common, new)).extracted < 20


def test_a_source_column_whose_type_changed_is_read_again(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A DBA rebuilds the table with LandUseCode INTEGER: '011' becomes 11 in every row, and no LastModified
    moves (ALTER COLUMN ... TYPE in PostgreSQL fires no row triggers either)."""
    source = fresh_source(tmp_path_factory, "retype")
    con = sqlite3.connect(source)
    with con:
        con.execute("UPDATE MasterParcels SET LandUseCode = '0' || LandUseCode")
    incremental = settings_for(source, "incremental")
    run_sync(incremental)
    with con:
        columns = con.execute("PRAGMA table_info(MasterParcels)").fetchall()
        declared = [f'"{c[1]}" {"INTEGER" if c[1] == "LandUseCode" else c[2]}' for c in columns]
        con.execute(f"CREATE TABLE retyped ({', '.join(declared)})")
        con.execute("INSERT INTO retyped SELECT * FROM MasterParcels")
        con.execute("DROP TABLE MasterParcels")
        con.execute("ALTER TABLE retyped RENAME TO MasterParcels")
    con.close()
    assert run_sync(incremental).updated > 300
    rebuilt = settings_for(source, "rebuilt")
    run_sync(rebuilt)
    assert "011" not in query(rebuilt.output.working_path, "SELECT land_use FROM parcels")["land_use"].tolist()
    assert_same(published_as(incremental), published_as(rebuilt))


def test_a_new_key_name_renames_the_key_in_the_history_tables(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The rebuild keeps the errors and the change log; their key column used to keep the old name, and the
    first insert into them failed."""
    source = fresh_source(tmp_path_factory, "keyname")
    run_sync(settings_for(source, "incremental"))
    apply_edit(source, "attribute", 5)
    run_sync(settings_for(source, "incremental"))  # a change-log entry under the old name
    renamed = {"source": {"key_name": "parcel_id"}}
    incremental = settings_for(source, "incremental", renamed)
    assert run_sync(incremental).mode == "full"
    rebuilt = settings_for(source, "rebuilt", renamed)
    run_sync(rebuilt)
    assert tables(incremental.output.working_path) == tables(rebuilt.output.working_path)
    assert query(incremental.output.working_path, "SELECT count(*) AS n FROM change_log")["n"][0] > 0
    assert_same(published_as(incremental), published_as(rebuilt))


def test_a_renamed_layer_leaves_no_stale_layer_behind(tmp_path_factory: pytest.TempPathFactory, validate_gpkg) -> None:
    source = fresh_source(tmp_path_factory, "layer")
    run_sync(settings_for(source, "incremental"))
    renamed = {"output": {"layer": "lots"}}
    incremental = settings_for(source, "incremental", renamed)
    run_sync(incremental)
    rebuilt = settings_for(source, "rebuilt", renamed)
    run_sync(rebuilt)
    assert tables(incremental.output.geo_path) == tables(rebuilt.output.geo_path)
    for registry in ("gpkg_contents", "gpkg_geometry_columns", "gpkg_extensions", "gpkg_ogr_contents"):
        sql = f"SELECT table_name FROM {registry} WHERE table_name != 'gpkg_spatial_ref_sys'"
        names = query(incremental.output.geo_path, sql)
        assert names["table_name"].tolist() == ["lots"], registry
    validate_gpkg(incremental.output.geo_path)
    assert_same(published_as(incremental), published_as(rebuilt))


@pytest.mark.parametrize("file", ["geo_db", "stats_db", "working_db"])
def test_a_staging_file_renamed_in_the_settings_is_made_anew(
    tmp_path_factory: pytest.TempPathFactory, file: str
) -> None:
    """The other two databases stay: a new geo DB used to fail the run (no GeoPackage tables to drop from)."""
    source = fresh_source(tmp_path_factory, "files")
    run_sync(settings_for(source, "incremental"))
    apply_edit(source, "attribute", 5)
    renamed = {"output": {file: "renamed.sqlite"}}
    incremental = settings_for(source, "incremental", renamed)
    assert run_sync(incremental).status == "succeeded"
    rebuilt = settings_for(source, "rebuilt", renamed)
    run_sync(rebuilt)
    assert_same(published_as(incremental), published_as(rebuilt))


@pytest.mark.parametrize(
    "stats", [{"dimensions": ["land_use", "school_district"]}, {"measures": ["acres", "year_built"]}]
)
def test_new_aggregates_are_recomputed_without_a_rebuild(
    tmp_path_factory: pytest.TempPathFactory, stats: dict[str, list[str]]
) -> None:
    source = fresh_source(tmp_path_factory, "stats")
    run_sync(settings_for(source, "incremental"))
    apply_edit(source, "attribute", 5)
    incremental = settings_for(source, "incremental", {"stats": stats})
    result = run_sync(incremental)
    assert result.mode == "incremental" and result.inserted == 0 and result.extracted < 20
    rebuilt = settings_for(source, "rebuilt", {"stats": stats})
    run_sync(rebuilt)
    assert tables(incremental.output.stats_path) == tables(rebuilt.output.stats_path)
    assert_same(published_as(incremental), published_as(rebuilt))


def test_settings_of_speed_and_operations_leave_the_next_run_a_watermark_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    source = fresh_source(tmp_path_factory, "operations")
    run_sync(settings_for(source, "incremental"))
    apply_edit(source, "attribute", 5)
    changed = {
        "source": {"batch_size": 500, "modified_overlap_seconds": 60, "max_retries": 1},
        "output": {"busy_timeout_seconds": 5.0},
        "logging": {"level": "DEBUG"},
        "alerts": {"max_rejected_share": 0.5},
        "web": {"port": 8751},
    }
    result = run_sync(settings_for(source, "incremental", changed))
    assert (result.mode, result.updated, result.inserted) == ("incremental", 1, 0)
    assert result.extracted < 20


def test_a_settings_fingerprint_written_before_it_covered_the_source_costs_one_re_read(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Staging databases from an earlier version are read through once, not rebuilt."""
    source = fresh_source(tmp_path_factory, "upgrade")
    settings = settings_for(source, "incremental")
    run_sync(settings)
    old = {
        "key": "pin",
        "layer": "parcels",
        "srid": 2927,
        "columns": [[c.name, c.type] for c in settings.columns],
        "dimensions": settings.stats.dimensions,
        "measures": settings.stats.measures,
    }
    con = sqlite3.connect(settings.output.working_path)
    with con:
        con.execute("UPDATE sync_state SET value = ? WHERE name = 'fingerprint'", (json.dumps(old),))
    con.close()
    first = run_sync(settings)
    assert (first.mode, first.inserted, first.updated, first.extracted) == ("incremental", 0, 0, 400)
    assert run_sync(settings).extracted < 20


@pytest.mark.parametrize("drift", ["DROP COLUMN LegalDesc", "RENAME COLUMN LegalDesc TO LegalDescription"])
def test_a_carried_column_gone_from_the_source_fails_the_run_naming_it(
    tmp_path_factory: pytest.TempPathFactory, drift: str
) -> None:
    source = fresh_source(tmp_path_factory, "drift")
    settings = settings_for(source, "incremental")
    run_sync(settings)
    before = file_digests(settings)
    con = sqlite3.connect(source)
    with con:
        con.execute(f"ALTER TABLE MasterParcels {drift}")
    con.close()
    with pytest.raises(
        SchemaError, match=r"no column 'LegalDesc' \(the source of a \[\[columns\]\] entry\);"
    ) as failure:
        run_sync(settings)
    assert "set that setting to its new name" in str(failure.value)
    assert file_digests(settings) == before


def test_a_column_added_to_the_source_changes_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    source = fresh_source(tmp_path_factory, "added")
    settings = settings_for(source, "incremental")
    run_sync(settings)
    con = sqlite3.connect(source)
    with con:
        con.execute("ALTER TABLE MasterParcels ADD COLUMN Notes TEXT DEFAULT 'new'")
    con.close()
    result = run_sync(settings)
    assert (result.mode, result.updated, result.inserted, result.deleted) == ("incremental", 0, 0, 0)
    assert result.extracted < 20


VARIANTS = [
    {},
    owner_from("OwnerMailAddress"),
    {"source": {"timezone": "America/Los_Angeles"}},
    {"stats": {"dimensions": ["zoning", "school_district"]}},
    {"source": {"key_name": "parcel_id"}},
    {"output": {"layer": "lots"}},
    {"output": {"target_srid": 2286}},
    {"source": {"modified_column": ""}},
]


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rounds=st.lists(
        st.tuples(
            st.sampled_from(range(len(VARIANTS))), st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 999)))
        ),
        min_size=1,
        max_size=3,
    )
)
def test_any_sequence_of_settings_and_edits_equals_a_rebuild_with_the_last_settings(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[tuple[int, list[tuple[str, int]]]]
) -> None:
    source = fresh_source(tmp_path_factory, "sequence")
    run_sync(settings_for(source, "incremental"))
    for variant, edits in rounds:
        for op, pick in edits:
            apply_edit(source, op, pick)
        assert run_sync(settings_for(source, "incremental", VARIANTS[variant])).reconciles
    last = VARIANTS[rounds[-1][0]]
    rebuilt = settings_for(source, "rebuilt", last)
    run_sync(rebuilt)
    assert_same(published_as(settings_for(source, "incremental", last)), published_as(rebuilt))

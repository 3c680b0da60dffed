"""Output names that SQLite would take for one (it ignores case), or that our tables use themselves, are
refused when the settings are read, instead of failing the run with "duplicate column name"."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from countydatasync.errors import ConfigError
from countydatasync.load import geopackage, stats, working
from countydatasync.settings import (
    AGGREGATE_COLUMNS,
    COLUMN_TABLES,
    KEY_TABLES,
    ColumnSpec,
    Settings,
    load_settings,
)
from countydatasync.sync import run_sync
from countydatasync.sync.apply import ROW_STATUS

from .sync.helpers import query

ZONING = {"source": "Zoning", "name": "zoning"}
ACRES = {"source": "Acres", "name": "acres", "type": "real"}
STATS = {"dimensions": ["zoning"], "measures": ["acres"]}


def _problem(**settings: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**settings)
    [error] = caught.value.errors()
    return error["msg"].removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("columns", "key", "message"),
    [
        (
            [ZONING, ACRES, {"source": "LandUseCode", "name": "Zoning"}],
            "pin",
            "columns: output names used twice (SQLite ignores case; source.key_name counts): zoning = Zoning",
        ),
        (
            [ZONING, ACRES, {"source": "LandUseCode", "name": "PIN"}],
            "pin",
            "columns: output names used twice (SQLite ignores case; source.key_name counts): pin = PIN",
        ),
        (
            [ZONING, ACRES, {"source": "LandUseCode", "name": "GEOM"}, {"source": "TaxYear", "name": "Fid"}],
            "pin",
            "columns: output names reserved: GEOM (geo DB layer), Fid (geo DB layer) (SQLite ignores case)",
        ),
        (
            [ZONING, ACRES],
            "fid",
            "source.key_name 'fid' is reserved: a column of that name (in any case) is in the geo DB layer; "
            "choose another",
        ),
        (
            [ZONING, ACRES],
            "Gis_Acres",
            "source.key_name 'Gis_Acres' is reserved: a column of that name (in any case) is in the geo DB layer "
            "and the working DB parcels and the run's staged rows; choose another",
        ),
        (
            [ZONING, ACRES],
            "id",
            "source.key_name 'id' is reserved: a column of that name (in any case) is in the working DB errors "
            "and the working DB change_log; choose another",
        ),
    ],
)
def test_names_that_meet_in_one_table_are_refused(columns: list[dict], key: str, message: str) -> None:
    assert _problem(source={"key_name": key}, columns=columns, stats=STATS) == message


@pytest.mark.parametrize("key", ["sync_status", "reason", "action", "minx", "copies", "fields"])
def test_a_key_named_like_a_column_of_its_tables_is_refused(key: str) -> None:
    assert _problem(source={"key_name": key}, columns=[ZONING, ACRES], stats=STATS).startswith(
        f"source.key_name {key!r} is reserved"
    )


def test_stats_names_that_meet_in_the_aggregates_table_are_refused() -> None:
    parcel = {"source": "LandValue", "name": "Parcel", "type": "real"}
    assert _problem(columns=[ZONING, ACRES, parcel], stats={"dimensions": ["zoning"], "measures": ["Parcel"]}) == (
        "stats.measures: the stats DB's aggregates table has a column Parcel_count of its own; "
        "rename the measure's column"
    )
    assert _problem(columns=[ZONING, ACRES], stats={"dimensions": ["zoning"], "measures": ["acres", "acres"]}) == (
        "stats.measures: listed more than once: acres"
    )
    assert _problem(columns=[ZONING, ACRES], stats={"dimensions": ["zoning", "zoning"], "measures": ["acres"]}) == (
        "stats.dimensions: listed more than once: zoning"
    )


def test_a_clash_in_the_settings_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "clash.toml"
    path.write_text(
        '[source]\nkey_name = "pin"\n[stats]\ndimensions = []\nmeasures = []\n'
        '[[columns]]\nsource = "Zoning"\nname = "zoning"\n[[columns]]\nsource = "Zone"\nname = "ZONING"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env_file=None)
    assert str(caught.value).splitlines()[1].strip() == (
        "settings: Value error, columns: output names used twice (SQLite ignores case; source.key_name counts): "
        "zoning = ZONING"
    )


@pytest.mark.parametrize(
    "layer",
    ["sqlite_parcels", "SQLite_parcels", "gpkg_contents", "GPKG_parcels", "rtree_parcels_geom", "rtree_lots_geom_node"],
)
def test_layer_names_of_sqlite_the_geopackage_or_an_rtree_are_refused(layer: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(output={"layer": layer})
    [error] = caught.value.errors()
    assert error["loc"] == ("output", "layer")
    assert error["msg"] == (
        f"Value error, layer {layer!r} is reserved: names starting with sqlite_ or gpkg_, and rtree_..._geom names, "
        "belong to SQLite, the GeoPackage or its R-tree indexes; choose another"
    )


def test_names_that_only_look_reserved_sync_and_validate(
    sample_db: Path, make_settings: Callable[..., Settings], validate_gpkg: Callable[[Path], None]
) -> None:
    """The key's own tables (errors, change_log) take no carried column, so a column may be called id or action;
    layers named rtree_something or parcels_gpkg are not R-tree or GeoPackage tables."""
    columns = [ZONING, ACRES, {"source": "LandUseCode", "name": "id"}, {"source": "TaxYear", "name": "Action"}]
    settings = make_settings(
        sample_db, source={"key_name": "parcel_id"}, columns=columns, stats=STATS, output={"layer": "rtree_parks"}
    )
    result = run_sync(settings)
    assert result.status == "succeeded" and result.inserted > 0
    validate_gpkg(settings.output.geo_path)
    layer = query(settings.output.geo_path, 'SELECT count(*) AS n, count("id") AS ids FROM rtree_parks')
    assert layer.iloc[0].tolist() == [result.inserted, result.inserted]


def _fixed_columns(con: sqlite3.Connection, schema: str, table: str, carried: set[str]) -> set[str]:
    names = {row[1].lower() for row in con.execute(f"PRAGMA {schema}.table_info({table})")}
    return names - carried


def test_the_reserved_names_are_the_columns_our_tables_have() -> None:
    """COLUMN_TABLES, KEY_TABLES and AGGREGATE_COLUMNS in the settings follow the tables as created."""
    con = sqlite3.connect(":memory:")
    for schema in ("geo", "working", "stats"):
        con.execute(f"ATTACH DATABASE ':memory:' AS {schema}")
    column = ColumnSpec(source="Zoning", name="zoning")
    carried = {"pin", "zoning"}
    geopackage.create_layer(con, "geo", "parcels", "pin", [column], 2927)
    working.create_tables(con, "working", "pin", [column])
    stats.create_tables(con, "stats", ["acres"])
    assert _fixed_columns(con, "geo", "parcels", carried) == COLUMN_TABLES["geo DB layer"]
    assert _fixed_columns(con, "working", "parcels", carried) == COLUMN_TABLES["working DB parcels"]
    assert {*ROW_STATUS, "gis_acres", "staging_state", "staging_fid", "staging_geom"} == COLUMN_TABLES[
        "run's staged rows"
    ]
    assert _fixed_columns(con, "working", "errors", carried) == KEY_TABLES["working DB errors"]
    assert _fixed_columns(con, "working", "change_log", carried) == KEY_TABLES["working DB change_log"]
    measure_columns = {"acres_sum", "acres_count", "acres_mean"}
    assert _fixed_columns(con, "stats", "aggregates", measure_columns) == AGGREGATE_COLUMNS

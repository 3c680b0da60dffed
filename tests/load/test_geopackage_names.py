"""A layer renamed only in case is the same SQLite table: the rebuild must leave it registered once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyogrio

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from ..sync.helpers import query

REGISTRIES = ("gpkg_contents", "gpkg_geometry_columns", "gpkg_extensions", "gpkg_ogr_contents")


def test_a_layer_renamed_in_case_only_is_registered_once(
    sample_db: Path, make_settings: Callable[..., Settings], validate_gpkg: Callable[[Path], None]
) -> None:
    run_sync(make_settings(sample_db, output={"layer": "parcels"}))
    settings = make_settings(sample_db, output={"layer": "Parcels"})
    result = run_sync(settings)

    geo = settings.output.geo_path
    validate_gpkg(geo)
    for table in REGISTRIES:
        names = query(geo, f"SELECT table_name FROM {table} WHERE table_name != 'gpkg_spatial_ref_sys'")
        assert names["table_name"].tolist() == ["Parcels"], table
    assert query(geo, "SELECT feature_count FROM gpkg_ogr_contents")["feature_count"].tolist() == [result.inserted]
    assert pyogrio.list_layers(geo).tolist() == [["Parcels", "MultiPolygon"]]

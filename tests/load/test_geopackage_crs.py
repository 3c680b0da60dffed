"""Some EPSG CRSs have no WKT1 form: the GeoPackage then carries their WKT2 (the gpkg_crs_wkt extension),
the way GDAL writes them, and stays valid when the output CRS changes again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from pyproj import CRS

from countydatasync.load.geopackage import WGS84_WKT, create_layer
from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from ..sync.helpers import query

SRS = "SELECT srs_id, definition, definition_12_063 FROM gpkg_spatial_ref_sys ORDER BY srs_id"


def _wkt(code: int, version: str) -> str:
    return CRS.from_epsg(code).to_wkt(version)


def test_a_crs_without_wkt1_is_written_as_wkt2(
    sample_db: Path, make_settings: Callable[..., Settings], validate_gpkg: Callable[[Path], None]
) -> None:
    geo = make_settings(sample_db).output.geo_path
    run_sync(make_settings(sample_db))  # WKT1 only: no extension yet
    assert "definition_12_063" not in query(geo, "PRAGMA table_info(gpkg_spatial_ref_sys)")["name"].tolist()

    run_sync(make_settings(sample_db, output={"target_srid": 6201}))  # NAD27 / Michigan Central: WKT2 only
    validate_gpkg(geo)
    assert query(geo, SRS).values.tolist() == [
        [-1, "undefined", "undefined"],
        [0, "undefined", "undefined"],
        [2927, _wkt(2927, "WKT1_GDAL"), _wkt(2927, "WKT2_2015")],  # rows already there get their WKT2 too
        [4326, WGS84_WKT, _wkt(4326, "WKT2_2015")],
        [6201, "undefined", _wkt(6201, "WKT2_2015")],
    ]
    assert query(geo, "SELECT * FROM gpkg_extensions WHERE extension_name = 'gpkg_crs_wkt'").values.tolist() == [
        [
            "gpkg_spatial_ref_sys",
            "definition_12_063",
            "gpkg_crs_wkt",
            "http://www.geopackage.org/spec120/#extension_crs_wkt",
            "read-write",
        ]
    ]
    assert pyogrio.read_info(geo)["crs"] == "EPSG:6201"

    run_sync(make_settings(sample_db, output={"target_srid": 2285}))  # a WKT1 CRS, once the column exists
    validate_gpkg(geo)
    assert query(geo, SRS).values.tolist()[2] == [2285, _wkt(2285, "WKT1_GDAL"), _wkt(2285, "WKT2_2015")]
    assert pyogrio.read_info(geo)["crs"] == "EPSG:2285"


def _gdal_definition(tmp_path: Path, code: int) -> str:
    """The WKT that GDAL's own GeoPackage writer stores for EPSG:`code`."""
    path = tmp_path / f"gdal_{code}.gpkg"
    polygon = shapely.to_wkb(np.array([shapely.box(0, 0, 1, 1)]))
    pyogrio.raw.write(path, polygon, [], [], layer="x", driver="GPKG", geometry_type="Polygon", crs=f"EPSG:{code}")
    return query(path, "SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (code,))["definition"][0]


@pytest.mark.parametrize("code", [4269, 4152, 3035])  # NAD83 and NAD83(HARN) lat/long; ETRS89-LAEA, northing first
def test_a_crs_is_defined_with_its_axes_as_gdal_writes_it(
    tmp_path: Path, code: int, validate_gpkg: Callable[[Path], None]
) -> None:
    """pyproj's WKT1 left out the AXIS of geographic CRSs (and of projected ones with northing first), which
    GDAL writes: without them WKT1 means longitude/latitude and easting/northing, not the EPSG axes."""
    path = tmp_path / "layer.gpkg"
    con = sqlite3.connect(path)
    with con:
        create_layer(con, "main", "parcels", "pin", [], code)
    con.close()
    validate_gpkg(path)
    ours = query(path, "SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (code,))["definition"][0]
    assert ours == _gdal_definition(tmp_path, code)
    assert "AXIS[" in ours

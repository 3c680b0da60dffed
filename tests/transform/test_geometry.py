import numpy as np
import pandas as pd
import pytest
import shapely

from countydatasync.transform.geometry import clean_geometries
from countydatasync.transform.reasons import Reason

SQUARE = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"
BOWTIE = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"
FLAT = "POLYGON ((0 0, 5 0, 10 0, 0 0))"


def wkb(text: str) -> bytes:
    return shapely.to_wkb(shapely.from_wkt(text))


def test_each_geometry_problem_gets_its_reason() -> None:
    values = pd.Series(
        [wkb(SQUARE), None, wkb("POLYGON EMPTY"), b"\x01\x03garbage", wkb("POINT (1 2)"), wkb(BOWTIE), wkb(FLAT)],
        dtype=object,
    )
    out = clean_geometries(values, "wkb", 2927, 2927)
    assert list(out.reasons) == [
        None,
        Reason.NULL_GEOMETRY,
        Reason.EMPTY_GEOMETRY,
        Reason.UNPARSEABLE_GEOMETRY,
        Reason.NON_POLYGONAL,
        Reason.INVALID_GEOMETRY_REPAIRED,
        Reason.INVALID_GEOMETRY_REJECTED,
    ]
    assert list(out.rejected) == [False, True, True, True, True, False, True]
    assert "Self-intersection" in out.messages[5]
    kept = out.geoms[[0, 5]]
    assert all(g.geom_type == "MultiPolygon" and g.is_valid for g in kept)
    assert shapely.area(out.geoms[5]) == pytest.approx(50.0)  # two triangles of the bowtie
    assert all(g is None for g in out.geoms[[1, 2, 3, 4, 6]])


def test_wkt_input_z_values_and_collections() -> None:
    values = pd.Series(
        [
            "POLYGON Z ((0 0 5, 4 0 5, 4 4 5, 0 4 5, 0 0 5))",
            "GEOMETRYCOLLECTION (POLYGON ((0 0, 1 0, 1 1, 0 0)), LINESTRING (0 0, 5 5))",
            "not wkt at all",
        ]
    )
    out = clean_geometries(values, "wkt", 2927, 2927)
    assert not shapely.has_z(out.geoms[0])
    assert out.geoms[1].geom_type == "MultiPolygon" and out.reasons[1] == Reason.INVALID_GEOMETRY_REPAIRED
    assert out.reasons[2] == Reason.UNPARSEABLE_GEOMETRY


def test_reprojection_is_always_xy_and_per_row_srid_wins() -> None:
    lonlat = wkb("POLYGON ((-122.9 47.0, -122.89 47.0, -122.89 47.01, -122.9 47.01, -122.9 47.0))")
    out = clean_geometries(pd.Series([lonlat, lonlat]), "wkb", 4326, 2927, srids=pd.Series([4326, 0]))
    x, y = shapely.get_coordinates(out.geoms[0])[0]
    # Olympia, WA in State Plane South (US feet): x about 1.04 million, y about 0.63 million
    assert 1_000_000 < x < 1_100_000 and 600_000 < y < 700_000
    assert np.allclose(shapely.get_coordinates(out.geoms[0]), shapely.get_coordinates(out.geoms[1]))


def test_unknown_srid_is_rejected() -> None:
    out = clean_geometries(pd.Series([wkb(SQUARE)]), "wkb", 2927, 2927, srids=pd.Series([999999]))
    assert out.reasons[0] == Reason.UNKNOWN_SRID and out.geoms[0] is None

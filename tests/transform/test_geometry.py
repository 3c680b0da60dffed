import struct

import numpy as np
import pandas as pd
import pytest
import shapely

from countydatasync.transform.geometry import GeometryOutcome, clean_geometries, multipolygon_wkb
from countydatasync.transform.reasons import Reason

SQUARE = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"
BOWTIE = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"
FLAT = "POLYGON ((0 0, 5 0, 10 0, 0 0))"


def wkb(text: str) -> bytes:
    return shapely.to_wkb(shapely.from_wkt(text))


def written(out: GeometryOutcome) -> np.ndarray:
    """The geometries as the staging databases get them: read back from their WKB."""
    return shapely.from_wkb(multipolygon_wkb(out.geoms, out.as_read))


def test_source_wkb_is_reused_only_where_it_is_what_shapely_writes() -> None:
    holed = wkb("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 4 2, 4 4, 2 4, 2 2))")
    big_endian = shapely.to_wkb(shapely.from_wkt(SQUARE), byte_order=0)
    ewkb = shapely.to_wkb(shapely.set_srid(shapely.from_wkt(SQUARE), 2927), include_srid=True)
    values = [
        wkb(SQUARE),  # reused
        holed,  # reused
        wkb(SQUARE) + b"\x00\x00\x00\x00",  # GEOS reads past the extra bytes: written again, without them
        big_endian,
        ewkb,
        wkb("POLYGON Z ((0 0 1, 10 0 1, 10 10 1, 0 10 1, 0 0 1))"),
        wkb("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))"),
        wkb(BOWTIE),  # repaired
        shapely.to_wkb(shapely.from_wkt(SQUARE), hex=True),  # hex text
    ]
    out = clean_geometries(pd.Series(values, dtype=object), "wkb", 2927, 2927)
    assert out.as_read is not None
    assert [v is not None for v in out.as_read] == [True, True] + [False] * 7
    assert out.as_read[0] is values[0]
    good = np.not_equal(out.geoms, None)
    assert good.all()
    # Byte for byte what writing the geometries gives.
    assert list(multipolygon_wkb(out.geoms, out.as_read)) == list(multipolygon_wkb(out.geoms))
    # Reprojected rows are written from their new coordinates.
    moved = clean_geometries(pd.Series([wkb(LONLAT)]), "wkb", 4326, 2927)
    assert moved.as_read is not None and moved.as_read[0] is None


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
    kept = written(out)[[0, 5]]
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
    assert written(out)[1].geom_type == "MultiPolygon" and out.reasons[1] == Reason.INVALID_GEOMETRY_REPAIRED
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


def _curve_polygon_wkb() -> bytes:
    """CURVEPOLYGON (CIRCULARSTRING (0 0, 4 0, 4 4, 0 4, 0 0)) as ISO WKB, which shapely cannot write."""
    ring = [(0, 0), (4, 0), (4, 4), (0, 4), (0, 0)]
    circular = struct.pack("<BII", 1, 8, len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    return struct.pack("<BII", 1, 10, 1) + circular


def test_curves_reject_their_row_not_the_batch() -> None:
    curves = (
        "geometry has curves (CIRCULARSTRING, CURVEPOLYGON, MULTISURFACE...), which are not supported: "
        "have the source linearize them, e.g. with ST_CurveToLine"
    )
    out = clean_geometries(pd.Series([wkb(SQUARE), _curve_polygon_wkb(), b"\x01\x03garbage"]), "wkb", 2927, 2927)
    assert list(out.reasons) == [None, Reason.UNPARSEABLE_GEOMETRY, Reason.UNPARSEABLE_GEOMETRY]
    assert list(out.messages) == [None, curves, "geometry is not valid WKB"]
    assert written(out)[0].wkt == "MULTIPOLYGON (((0 0, 10 0, 10 10, 0 10, 0 0)))"

    texts = [
        SQUARE,
        "CURVEPOLYGON (CIRCULARSTRING (0 0, 4 0, 4 4, 0 4, 0 0))",
        "MULTISURFACE (((0 0, 1 0, 1 1, 0 0)))",
        "CIRCULARSTRING (0 0, 1 1, 2 0)",
    ]
    out = clean_geometries(pd.Series(texts), "wkt", 2927, 2927)
    assert list(out.reasons) == [None] + [Reason.UNPARSEABLE_GEOMETRY] * 3
    assert list(out.messages) == [None, curves, curves, curves]


def test_coordinates_that_cannot_be_reprojected_are_rejected() -> None:
    swapped = wkb("POLYGON ((47.0 -122.9, 47.01 -122.9, 47.01 -122.89, 47.0 -122.89, 47.0 -122.9))")
    lonlat = wkb("POLYGON ((-122.9 47.0, -122.89 47.0, -122.89 47.01, -122.9 47.01, -122.9 47.0))")
    out = clean_geometries(pd.Series([swapped, lonlat]), "wkb", 4326, 2927)
    assert list(out.reasons) == [Reason.INVALID_GEOMETRY_REJECTED, None]
    assert out.messages[0] == (
        "coordinates could not be reprojected from EPSG:4326 to EPSG:2927: check that they are in EPSG:4326"
    )
    assert list(out.rejected) == [True, False]
    assert out.geoms[0] is None and np.isfinite(shapely.bounds(out.geoms[1])).all()


def test_m_values_are_dropped_like_z() -> None:
    values = pd.Series(
        [
            wkb("POLYGON M ((0 0 1, 10 0 1, 10 10 1, 0 10 1, 0 0 1))"),
            wkb("POLYGON ZM ((0 0 5 1, 10 0 5 1, 10 10 5 1, 0 10 5 1, 0 0 5 1))"),
        ]
    )
    out = clean_geometries(values, "wkb", 2927, 2927)
    assert [g.wkt for g in written(out)] == ["MULTIPOLYGON (((0 0, 10 0, 10 10, 0 10, 0 0)))"] * 2
    assert not shapely.has_m(out.geoms).any() and not shapely.has_z(out.geoms).any()


LONLAT = "POLYGON ((-122.9 47.0, -122.89 47.0, -122.89 47.01, -122.9 47.01, -122.9 47.0))"


def test_srid_embedded_in_ewkb_or_ewkt_wins_over_the_default() -> None:
    ewkb = shapely.to_wkb(shapely.set_srid(shapely.from_wkt(LONLAT), 4326), include_srid=True)
    expected = clean_geometries(pd.Series([wkb(LONLAT)]), "wkb", 4326, 2927).geoms[0]

    from_ewkb = clean_geometries(pd.Series([ewkb]), "wkb", 2927, 2927)
    from_ewkt = clean_geometries(pd.Series(["SRID=4326;" + LONLAT, "srid=4326; " + LONLAT]), "wkt", 2927, 2927)
    for geom in [from_ewkb.geoms[0], *from_ewkt.geoms]:
        assert np.allclose(shapely.get_coordinates(geom), shapely.get_coordinates(expected))
    assert list(from_ewkt.reasons) == [None, None]

    # A per-row SRID column still comes first: the row says its coordinates are already in 2927.
    kept = clean_geometries(pd.Series([ewkb]), "wkb", 2927, 2927, srids=pd.Series([2927]))
    assert np.array_equal(shapely.get_coordinates(kept.geoms[0]), shapely.get_coordinates(shapely.from_wkt(LONLAT)))


def test_collections_say_what_they_are() -> None:
    values = pd.Series(
        [
            "GEOMETRYCOLLECTION (LINESTRING (0 0, 5 5))",
            "GEOMETRYCOLLECTION (POLYGON ((0 0, 1 0, 1 1, 0 0)), POINT (0 0))",
            "GEOMETRYCOLLECTION (POLYGON ((0 0, 1 0, 1 1, 0 0)))",
        ]
    )
    out = clean_geometries(values, "wkt", 2927, 2927)
    # Loaded with the repair warning, but the message does not call the valid collection invalid.
    assert list(out.reasons) == [Reason.NON_POLYGONAL, Reason.INVALID_GEOMETRY_REPAIRED, None]
    assert list(out.messages) == [
        "geometry is a GeometryCollection without polygons",
        "geometry is a GeometryCollection: its non-polygonal parts were dropped",
        None,
    ]
    assert list(out.rejected) == [True, False, False]
    assert out.geoms[0] is None
    assert [g.wkt for g in out.geoms[1:]] == ["MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))"] * 2


def test_tins_and_polyhedral_surfaces_are_named_in_the_message() -> None:
    """Well-formed WKB of a TIN or POLYHEDRALSURFACE (PostGIS has both) was called "not valid WKB", which
    sent people looking for corrupt data; the message now names the type."""
    ring = struct.pack("<I", 4) + struct.pack("<8d", 0, 0, 1, 0, 0, 1, 0, 0)
    triangle = struct.pack("<BII", 1, 17, 1) + ring
    tin = struct.pack("<BII", 1, 16, 1) + triangle
    surface_z = struct.pack("<BII", 1, 1015, 0)  # an empty POLYHEDRALSURFACE Z
    outcome = clean_geometries(pd.Series([tin, triangle, surface_z, b"\x01garbage"], dtype=object), "wkb", 2927, 2927)
    assert all(r == "unparseable_geometry" for r in outcome.reasons)
    assert [m.split(",")[0] for m in outcome.messages[:3]] == [
        "geometry is a TIN",
        "geometry is a TRIANGLE",
        "geometry is a POLYHEDRALSURFACE",
    ]
    assert outcome.messages[3] == "geometry is not valid WKB"


def test_written_wkb_is_the_multipolygon_shapely_writes() -> None:
    """Polygons are written as MultiPolygons of one without being built as such: the bytes (and so the
    geometry hashes kept from earlier runs) are those of the MultiPolygon, whatever the input's byte order."""
    big_endian = shapely.to_wkb(shapely.from_wkt(SQUARE), byte_order=0)
    holed = wkb("POLYGON ((0 0, 9 0, 9 9, 0 9, 0 0), (2 2, 3 2, 3 3, 2 2))")
    multi = wkb("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))")
    out = clean_geometries(pd.Series([big_endian, holed, multi, None]), "wkb", 2927, 2927)
    expected = [shapely.to_wkb(shapely.multipolygons([g]) if g.geom_type == "Polygon" else g) for g in out.geoms[:3]]
    assert list(multipolygon_wkb(out.geoms)) == [*expected, None]
    assert np.allclose(out.bounds[:3], shapely.bounds(out.geoms[:3])) and np.isnan(out.bounds[3]).all()

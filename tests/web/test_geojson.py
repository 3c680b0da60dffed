"""GET /api/parcels: the viewport query from the R-tree, checked against the databases by brute force."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from countydatasync.web import create_app
from countydatasync.web.geo import GeometryBlobError, tolerance_for_zoom, wkb_from_blob
from countydatasync.web.schemas import FeatureCollection
from tests.web.conftest import Staging


def _layer_rows(staging: Staging) -> list[tuple[str, bytes]]:
    with sqlite3.connect(staging.settings.output.geo_path) as con:
        return con.execute("SELECT pin, geom FROM parcels").fetchall()


def _extent(client: TestClient) -> tuple[float, float, float, float]:
    return tuple(client.get("/api/map-config").json()["extent"])


def _statuses(staging: Staging) -> dict[str, str]:
    with staging.working() as con:
        return dict(con.execute("SELECT pin, sync_status FROM parcels").fetchall())


def test_whole_extent_returns_every_drawable_parcel_with_its_working_status(
    client: TestClient, staging: Staging
) -> None:
    west, south, east, north = _extent(client)
    response = client.get("/api/parcels", params={"bbox": f"{west},{south},{east},{north}"})
    assert response.headers["content-type"] == "application/json"
    body = FeatureCollection.model_validate_json(response.text)  # the hand-built JSON keeps the schema
    statuses = _statuses(staging)
    assert body.returned == len(body.features) == len(_layer_rows(staging))
    assert not body.truncated
    got = {f.properties.key: f.properties.status for f in body.features}
    assert got == {k: statuses[k] for k in got}
    assert {k for k, s in got.items() if s == "pending"} == set(staging.pending_keys)
    # Parcels whose new source version failed keep their last good shape on the map, in red.
    assert {k for k, s in got.items() if s == "error"} == set(staging.broken_keys)


def test_bbox_selects_the_parcels_whose_envelope_meets_it(client: TestClient, staging: Staging) -> None:
    west, south, east, north = _extent(client)
    box = (
        west + (east - west) * 0.3,
        south + (north - south) * 0.4,
        west + (east - west) * 0.45,
        south + (north - south) * 0.55,
    )
    body = client.get("/api/parcels", params={"bbox": ",".join(map(str, box))}).json()
    # Brute force: every layer geometry, envelopes in WGS84 against the box.
    rows = _layer_rows(staging)
    geoms = shapely.from_wkb([wkb_from_blob(g) for _, g in rows])
    to_wgs = Transformer.from_crs(2927, 4326, always_xy=True)
    bounds = np.array([to_wgs.transform_bounds(*b) for b in shapely.bounds(geoms)])
    inside = (bounds[:, 0] <= box[2]) & (bounds[:, 2] >= box[0]) & (bounds[:, 1] <= box[3]) & (bounds[:, 3] >= box[1])
    expected = {rows[i][0] for i in np.flatnonzero(inside)}
    got = {f["properties"]["key"] for f in body["features"]}
    assert 50 < len(expected) < len(rows)
    # The server widens the box slightly by transforming it to the layer CRS; it never misses a parcel.
    assert expected <= got and len(got - expected) <= 0.1 * len(expected)
    lon, lat = shapely.get_coordinates([shapely.geometry.shape(f["geometry"]) for f in body["features"]]).T
    margin = 0.01  # a parcel meeting the box may reach a little beyond it
    assert (lon > box[0] - margin).all() and (lon < box[2] + margin).all()
    assert (lat > box[1] - margin).all() and (lat < box[3] + margin).all()


def test_status_filter(client: TestClient, staging: Staging) -> None:
    bbox = ",".join(map(str, _extent(client)))
    pending = client.get("/api/parcels", params=[("bbox", bbox), ("status", "pending")]).json()
    assert {f["properties"]["key"] for f in pending["features"]} == set(staging.pending_keys)
    params = [("bbox", bbox), ("status", "pending"), ("status", "error")]
    both = client.get("/api/parcels", params=params).json()
    assert {f["properties"]["status"] for f in both["features"]} <= {"pending", "error"}
    assert client.get("/api/parcels", params={"bbox": bbox, "status": "deleted"}).status_code == 422


def test_feature_cap_truncates(client: TestClient, staging: Staging) -> None:
    bbox = ",".join(map(str, _extent(client)))
    body = client.get("/api/parcels", params={"bbox": bbox, "limit": 100}).json()
    assert body["returned"] == len(body["features"]) == 100 and body["truncated"] is True
    assert body["cap"] == 100
    # The server's cap wins over a larger limit.
    assert (
        client.get("/api/parcels", params={"bbox": bbox, "limit": 10**9}).json()["cap"]
        == staging.settings.web.feature_cap
    )


def test_lower_zoom_sends_fewer_vertices(client: TestClient) -> None:
    bbox = ",".join(map(str, _extent(client)))

    def vertices(zoom: int) -> int:
        body = client.get("/api/parcels", params={"bbox": bbox, "zoom": zoom}).json()
        shapes = [shapely.geometry.shape(f["geometry"]) for f in body["features"]]
        return len(shapely.get_coordinates(shapes))

    close, far = vertices(19), vertices(12)
    assert far < close
    assert vertices(19) == close  # deterministic


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "10,10,5,20", "-200,0,0,10", "0,0,nan,1", "0,0,inf,1"])
def test_malformed_bbox_is_422(client: TestClient, bbox: str) -> None:
    assert client.get("/api/parcels", params={"bbox": bbox}).status_code == 422


def test_empty_viewport(client: TestClient) -> None:
    body = client.get("/api/parcels", params={"bbox": "10,10,11,11"}).json()
    assert body["features"] == [] and body["returned"] == 0 and body["truncated"] is False


def test_blob_header_sizes() -> None:
    wkb = shapely.to_wkb(shapely.box(0, 0, 1, 1))
    for code, size in ((0, 0), (1, 32), (2, 48), (3, 48), (4, 64)):
        blob = b"GP\x00" + bytes([code << 1 | 1]) + b"\x00" * 4 + b"\x00" * size + wkb
        assert wkb_from_blob(blob) == wkb
    with pytest.raises(GeometryBlobError):
        wkb_from_blob(wkb)
    with pytest.raises(GeometryBlobError):
        wkb_from_blob(b"GP\x00" + bytes([7 << 1]) + b"\x00" * 4 + wkb)


def test_tolerance_halves_per_zoom_level() -> None:
    from pyproj import CRS

    feet = CRS.from_epsg(2927)
    assert tolerance_for_zoom(None, 47.0, feet) == 0.0
    assert tolerance_for_zoom(15, 47.0, feet) == pytest.approx(2 * tolerance_for_zoom(16, 47.0, feet))
    # Half a pixel at zoom 16 near 47 N is about 0.8 m, i.e. about 2.7 US survey feet.
    assert tolerance_for_zoom(16, 47.0, feet) == pytest.approx(2.67, rel=0.05)


def test_a_geometry_that_is_not_a_geopackage_blob_leaves_the_rest_of_the_map(fresh_staging: Staging) -> None:
    """Another tool wrote two parcels' geometry: one as bare WKB, one damaged. Every viewport over them
    answered 500."""
    with sqlite3.connect(fresh_staging.settings.output.geo_path) as con:
        parcels = con.execute(
            "SELECT r.id, p.pin, r.minx, r.maxx, r.miny, r.maxy FROM rtree_parcels_geom AS r "
            "JOIN parcels AS p ON p.fid = r.id ORDER BY r.id LIMIT 2"
        ).fetchall()
        # The R-tree triggers call functions that GDAL registers; these keep the parcel's envelope.
        envelope: list[float] = []
        con.create_function("ST_IsEmpty", 1, lambda geom: 0)
        for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
            con.create_function(name, 1, lambda geom, i=i: envelope[i])
        minx, maxx, miny, maxy = parcels[0][2:]
        bare_wkb = shapely.to_wkb(shapely.box(minx, miny, maxx, maxy))
        damaged = b"GP\x00\x01" + bytes(4) + b"\x01\x06\x00\x00"  # the header, then WKB cut short
        for (fid, _, *box), blob in zip(parcels, (bare_wkb, damaged), strict=True):
            envelope[:] = box
            con.execute("UPDATE parcels SET geom = ? WHERE fid = ?", (blob, fid))
    with TestClient(create_app(fresh_staging.settings)) as client:
        bbox = ",".join(map(str, _extent(client)))
        response = client.get("/api/parcels", params={"bbox": bbox})
        assert response.status_code == 200
        keys = {f.properties.key for f in FeatureCollection.model_validate_json(response.text).features}
    assert len(keys) == len(_layer_rows(fresh_staging)) - 2
    assert not keys & {key for _, key, *_ in parcels}

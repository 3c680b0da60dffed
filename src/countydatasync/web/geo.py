"""Parcels in a map viewport, straight from the GeoPackage's R-tree, as WGS84 GeoJSON.

The viewport (WGS84 lon/lat) is transformed to the layer's CRS, the R-tree gives the candidate fids, the
layer gives their geometry blobs (GeoPackage header, then WKB) and the working DB their current status by
key. Geometries are simplified to about half a screen pixel at the requested zoom before they are
reprojected, so a zoomed-out view sends a fraction of the vertices. The result is serialised here as one
JSON string: building 2,000 nested pydantic models would cost more than the query itself.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from countydatasync.web.staging import q

WGS84 = "EPSG:4326"
STATUSES = ("synced", "pending", "error")
# Bytes of the GeoPackage header envelope by the envelope code in flag bits 1-3.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_EARTH_M_PER_PIXEL_Z0 = 156_543.033_92  # web-mercator metres per pixel at zoom 0 on the equator
COORD_DECIMALS = 6  # about 0.1 m: finer than any screen shows


class GeometryBlobError(ValueError):
    """A geometry blob is not a GeoPackage geometry."""


@dataclass(frozen=True)
class LayerInfo:
    """The layer's CRS, as the GeoPackage registers it."""

    srs_id: int
    crs: CRS


@lru_cache(maxsize=16)
def _crs_from(organization: str, code: int, definition: str) -> CRS:
    if organization.upper() == "EPSG" and code > 0:
        return CRS.from_epsg(code)
    return CRS.from_wkt(definition)


@lru_cache(maxsize=16)
def to_layer(crs: CRS) -> Transformer:
    return Transformer.from_crs(WGS84, crs, always_xy=True)


@lru_cache(maxsize=16)
def to_wgs84(crs: CRS) -> Transformer:
    return Transformer.from_crs(crs, WGS84, always_xy=True)


def layer_info(con: sqlite3.Connection, schema: str, layer: str) -> LayerInfo:
    row = con.execute(
        f"SELECT s.srs_id, s.organization, s.organization_coordsys_id, s.definition "
        f"FROM {schema}.gpkg_geometry_columns g JOIN {schema}.gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id "
        "WHERE g.table_name = ?",
        (layer,),
    ).fetchone()
    if row is None:
        raise sqlite3.OperationalError(f"layer {layer!r} is not registered in gpkg_geometry_columns")
    return LayerInfo(int(row[0]), _crs_from(row[1], int(row[2]), row[3]))


def layer_extent_wgs84(con: sqlite3.Connection, schema: str, layer: str) -> tuple[float, ...] | None:
    """The layer's extent from gpkg_contents as (west, south, east, north), or None for an empty layer."""
    row = con.execute(f"SELECT min_x, min_y, max_x, max_y FROM {schema}.gpkg_contents WHERE table_name = ?",
                      (layer,)).fetchone()
    if row is None or any(v is None for v in row):
        return None
    info = layer_info(con, schema, layer)
    minx, miny, maxx, maxy = (float(v) for v in row)
    return tuple(to_wgs84(info.crs).transform_bounds(minx, miny, maxx, maxy, densify_pts=11))


def wkb_from_blob(blob: bytes) -> bytes:
    """The WKB inside a GeoPackage geometry blob (magic 'GP', version, flags, srs_id, envelope, WKB)."""
    if len(blob) < 8 or blob[:2] != b"GP":
        raise GeometryBlobError("not a GeoPackage geometry blob (magic 'GP' missing)")
    code = (blob[3] >> 1) & 0b111
    if code not in _ENVELOPE_BYTES:
        raise GeometryBlobError(f"invalid envelope code {code} in GeoPackage geometry header")
    return blob[8 + _ENVELOPE_BYTES[code]:]


def tolerance_for_zoom(zoom: int | None, latitude: float, crs: CRS) -> float:
    """Simplification tolerance in layer units: half a screen pixel at `zoom` (0 when zoom is None)."""
    if zoom is None:
        return 0.0
    metres = 0.5 * _EARTH_M_PER_PIXEL_Z0 * math.cos(math.radians(latitude)) / 2**zoom
    if crs.is_geographic:
        return metres / 111_320.0
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return metres / (factor or 1.0)


@dataclass
class ViewportQuery:
    """One map request: bbox in WGS84 (west, south, east, north), statuses to show, zoom and the cap."""

    bbox: tuple[float, float, float, float]
    statuses: Sequence[str]
    zoom: int | None
    cap: int


@dataclass
class ViewportResult:
    """The features as a JSON array string, how many, and whether the cap cut the list short."""

    features_json: str
    returned: int
    truncated: bool


def _feature_sql(layer: str, key_name: str, filtered: int, cap: int) -> str:
    g, r, k = q(layer), q(f"rtree_{layer}_geom"), q(key_name)
    where = f" AND status IN ({', '.join('?' * filtered)})"
    # The R-tree drives the plan; fid is the layer's rowid and the key the working DB's primary key.
    return (
        f"SELECT fid, geom, key, status FROM (SELECT g.fid AS fid, g.geom AS geom, g.{k} AS key, "
        f"coalesce(w.sync_status, g.sync_status) AS status FROM geo.{r} AS r "
        f"CROSS JOIN geo.{g} AS g ON g.fid = r.id LEFT JOIN main.parcels AS w ON w.{k} = g.{k} "
        "WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?) "
        f"WHERE geom IS NOT NULL{where} LIMIT {int(cap) + 1}"
    )


def query_viewport(con: sqlite3.Connection, layer: str, key_name: str,
                   query: ViewportQuery) -> ViewportResult:
    """Features of the viewport as GeoJSON Feature objects (properties: key and status).

    `con` has the working DB as main and the geo DB attached as `geo`. At most `query.cap` features are
    returned; `truncated` tells the map there were more.
    """
    info = layer_info(con, "geo", layer)
    west, south, east, north = query.bbox
    minx, miny, maxx, maxy = to_layer(info.crs).transform_bounds(west, south, east, north, densify_pts=5)
    # Always filtered: a status another tool wrote into the working DB is not one the map can colour.
    statuses = [s for s in STATUSES if s in set(query.statuses or STATUSES)]
    rows = con.execute(_feature_sql(layer, key_name, len(statuses), query.cap),
                       (maxx, minx, maxy, miny, *statuses)).fetchall()
    truncated = len(rows) > query.cap
    rows = rows[: query.cap]
    if not rows:
        return ViewportResult("[]", 0, False)

    geoms = shapely.from_wkb([wkb_from_blob(row[1]) for row in rows])
    tolerance = tolerance_for_zoom(query.zoom, (south + north) / 2, info.crs)
    if tolerance > 0:
        geoms = shapely.simplify(geoms, tolerance, preserve_topology=True)
    transformer = to_wgs84(info.crs)

    def reproject(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.round(np.column_stack([x, y]), COORD_DECIMALS)

    geojson = shapely.to_geojson(shapely.transform(geoms, reproject))
    parts = [
        f'{{"type":"Feature","id":{int(fid)},"geometry":{geometry},"properties":'
        f'{{"key":{json.dumps(key)},"status":{json.dumps(status)}}}}}'
        for (fid, _, key, status), geometry in zip(rows, geojson, strict=True)
    ]
    return ViewportResult("[" + ",".join(parts) + "]", len(rows), truncated)

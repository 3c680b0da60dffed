"""Parcels in a map viewport, straight from the GeoPackage's R-tree, as WGS84 GeoJSON.

The viewport (WGS84 lon/lat) is clipped to where the layer CRS is valid and transformed to it as an area,
the R-tree gives the candidate fids within the area's envelope, the layer gives their geometry blobs
(GeoPackage header, then WKB), those meeting the area are kept, and the working DB gives their current
status by key. Geometries are simplified to about half a screen pixel at the requested zoom before they are
reprojected, so a zoomed-out view sends a fraction of the vertices. The result is serialised here as one
JSON string: building 2,000 nested pydantic models would cost more than the query itself.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from countydatasync.web.staging import q

log = logging.getLogger(__name__)
WGS84 = "EPSG:4326"
STATUSES = ("synced", "pending", "error")
# Bytes of the GeoPackage header envelope by the envelope code in flag bits 1-3.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_EARTH_M_PER_PIXEL_Z0 = 156_543.033_92  # web-mercator metres per pixel at zoom 0 on the equator
COORD_DECIMALS = 6  # about 0.1 m: finer than any screen shows
# The box is transformed with extra vertices on its sides, which are curves in most CRSs: 4,096 of them
# follow a box of 6 by 84 degrees within 0.3 m in UTM; sides of a map viewport get one per 0.001 degree.
AREA_POINTS = 4096
SEGMENT_DEGREES = 0.001
FETCH_ROWS = 500  # candidates decoded per step; those outside the area are dropped before the cap counts


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
    row = con.execute(
        f"SELECT min_x, min_y, max_x, max_y FROM {schema}.gpkg_contents WHERE table_name = ?", (layer,)
    ).fetchone()
    if row is None or any(v is None for v in row):
        return None
    info = layer_info(con, schema, layer)
    minx, miny, maxx, maxy = (float(v) for v in row)
    return tuple(to_wgs84(info.crs).transform_bounds(minx, miny, maxx, maxy, densify_pts=11))


def _lonlat_box(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    """A WGS84 box; in two parts when west > east (it crosses the antimeridian, as pyproj reports it)."""
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.union(shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north))


def search_area(
    crs: CRS, bbox: tuple[float, float, float, float], layer_extent: tuple[float, ...] | None
) -> shapely.Geometry | None:
    """The WGS84 `bbox` as an area in `crs`, or None when no feature of the layer can be in it.

    Points far from a CRS's area of use project to nonsense (a box over Asia lands on a Washington county in
    EPSG:2927), so the box is first clipped to that area, widened by the layer's own WGS84 extent
    (`layer_extent`) for features a little outside it. Also None when the CRS cannot place the box at all.
    """
    aou = crs.area_of_use
    usable = shapely.box(-180.0, -90.0, 180.0, 90.0) if aou is None else _lonlat_box(*aou.bounds)
    if layer_extent is not None:
        usable = shapely.union(usable, _lonlat_box(*layer_extent))
    clipped = shapely.intersection(shapely.box(*bbox), usable)
    if shapely.area(clipped) == 0:  # apart, or touching along a side
        return None
    dense = shapely.segmentize(clipped, max(shapely.length(clipped) / AREA_POINTS, SEGMENT_DEGREES))
    transformer = to_layer(crs)
    area = shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    return area if np.isfinite(shapely.bounds(area)).all() else None


def wkb_from_blob(blob: bytes) -> bytes:
    """The WKB inside a GeoPackage geometry blob (magic 'GP', version, flags, srs_id, envelope, WKB)."""
    if len(blob) < 8 or blob[:2] != b"GP":
        raise GeometryBlobError("not a GeoPackage geometry blob (magic 'GP' missing)")
    code = (blob[3] >> 1) & 0b111
    if code not in _ENVELOPE_BYTES:
        raise GeometryBlobError(f"invalid envelope code {code} in GeoPackage geometry header")
    return blob[8 + _ENVELOPE_BYTES[code] :]


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


def _feature_sql(layer: str, key_name: str, filtered: int) -> str:
    g, r, k = q(layer), q(f"rtree_{layer}_geom"), q(key_name)
    where = f" AND status IN ({', '.join('?' * filtered)})"
    # The R-tree drives the plan; fid is the layer's rowid and the key the working DB's primary key.
    return (
        f"SELECT fid, geom, key, status FROM (SELECT g.fid AS fid, g.geom AS geom, g.{k} AS key, "
        f"coalesce(w.sync_status, g.sync_status) AS status FROM geo.{r} AS r "
        f"CROSS JOIN geo.{g} AS g ON g.fid = r.id LEFT JOIN main.parcels AS w ON w.{k} = g.{k} "
        "WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?) "
        f"WHERE geom IS NOT NULL{where}"
    )


def _wkb_or_none(blob: bytes) -> bytes | None:
    try:
        return wkb_from_blob(blob)
    except GeometryBlobError:
        return None


def decode_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """The geometries of GeoPackage blobs, None for a blob that holds none (another tool wrote it, or the file
    is damaged): one such parcel must not fail every map request over its neighbourhood."""
    shapes = shapely.from_wkb([_wkb_or_none(blob) for blob in blobs], on_invalid="ignore")
    if (unreadable := int(shapely.is_missing(shapes).sum())) > 0:
        log.warning("%d parcel geometries in the geo DB are not GeoPackage geometries; not drawn", unreadable)
    return shapes


def _rows_meeting(cursor: sqlite3.Cursor, area: shapely.Geometry, limit: int) -> tuple[list[Any], np.ndarray]:
    """The first `limit` candidate rows whose geometry meets `area` (the R-tree only knows envelopes), with
    their geometries."""
    shapely.prepare(area)
    rows: list[Any] = []
    geoms = [np.empty(0, dtype=object)]
    while len(rows) < limit and (chunk := cursor.fetchmany(FETCH_ROWS)):
        shapes = decode_blobs([row[1] for row in chunk])
        meets = shapely.intersects(area, shapes)  # False for a missing geometry
        rows += [row for row, keep in zip(chunk, meets, strict=True) if keep]
        geoms.append(shapes[meets])
    return rows[:limit], np.concatenate(geoms)[:limit]


def query_viewport(con: sqlite3.Connection, layer: str, key_name: str, query: ViewportQuery) -> ViewportResult:
    """Features of the viewport as GeoJSON Feature objects (properties: key and status).

    `con` has the working DB as main and the geo DB attached as `geo`. At most `query.cap` features are
    returned; `truncated` tells the map there were more.
    """
    info = layer_info(con, "geo", layer)
    area = search_area(info.crs, query.bbox, layer_extent_wgs84(con, "geo", layer))
    if area is None:
        return ViewportResult("[]", 0, False)
    minx, miny, maxx, maxy = shapely.bounds(area)
    # Always filtered: a status another tool wrote into the working DB is not one the map can colour.
    statuses = [s for s in STATUSES if s in set(query.statuses or STATUSES)]
    cursor = con.execute(_feature_sql(layer, key_name, len(statuses)), (maxx, minx, maxy, miny, *statuses))
    rows, geoms = _rows_meeting(cursor, area, query.cap + 1)
    cursor.close()  # read only up to the cap: closing ends its read of the GeoPackage, which a sync may wait on
    truncated = len(rows) > query.cap
    rows, geoms = rows[: query.cap], geoms[: query.cap]
    if not rows:
        return ViewportResult("[]", 0, False)

    _, south, _, north = query.bbox
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

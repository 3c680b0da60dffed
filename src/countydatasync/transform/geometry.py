"""Geometry cleaning on whole arrays: parse WKB/WKT, validate, repair, make every parcel a 2D (Multi)Polygon in
the output CRS, written out as MultiPolygon WKB. No Python loop runs per geometry in GEOS calls (but to find
the curves GEOS refuses, in a batch that has some); shapely's vectorized functions do the work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.errors import ShapelyError

from countydatasync.transform.reasons import Reason

POLYGON, MULTIPOLYGON, COLLECTION = 3, 6, 7
# Little-endian WKB header of a MultiPolygon of one part; the part's own WKB follows it.
MULTI_OF_ONE = b"\x01\x06\x00\x00\x00\x01\x00\x00\x00"
POLYGON_HEADER = b"\x01\x03\x00\x00\x00"  # little-endian, 2D, no SRID
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest coordinate a GeoPackage R-tree box can hold
# EWKT (PostGIS): the SRID written ahead of the WKT, which GEOS does not read.
EWKT = r"^\s*SRID=(\d{1,9})\s*;(.*)$"
CURVES = (
    "geometry has curves (CIRCULARSTRING, CURVEPOLYGON, MULTISURFACE...), which are not supported: "
    "have the source linearize them, e.g. with ST_CurveToLine"
)


@dataclass
class GeometryOutcome:
    """Per input row: the cleaned Polygon or MultiPolygon (None when rejected; `multipolygon_wkb` writes both
    as MultiPolygons), its bounds (NaN when rejected), and a reason and message when the row was rejected or
    is loaded with a warning (repaired, or non-polygonal parts dropped)."""

    geoms: np.ndarray
    bounds: np.ndarray
    reasons: np.ndarray
    messages: np.ndarray
    # The source's WKB where it is byte for byte what shapely writes for the row's Polygon (None elsewhere).
    as_read: np.ndarray | None = None

    @property
    def rejected(self) -> np.ndarray:
        out = np.zeros(len(self.reasons), dtype=bool)
        flagged = np.flatnonzero(np.not_equal(self.reasons, None))
        out[flagged] = [self.reasons[i].severity == "error" for i in flagged]
        return out


def _as_input_array(values: pd.Series) -> np.ndarray:
    """Driver values as an object array of bytes / str / None (memoryview and bytearray become bytes)."""
    arr = values.to_numpy(dtype=object, na_value=None)
    if {memoryview, bytearray} & set(map(type, arr)):  # rare: spares the usual batch a Python test per row
        odd = np.fromiter((isinstance(v, memoryview | bytearray) for v in arr), bool, len(arr))
        arr[odd] = [bytes(v) for v in arr[odd]]
    return arr


def multipolygon_wkb(geoms: np.ndarray, as_read: np.ndarray | None = None) -> np.ndarray:
    """Little-endian WKB of cleaned geometries, every one a MultiPolygon. A Polygon gets the header of a
    MultiPolygon of one put in front: the very bytes shapely writes for that MultiPolygon, without building
    it first (which cost 0.8 s per million parcels). Where `as_read` holds the Polygon's own WKB (see
    GeometryOutcome), it is used instead of writing the same bytes again."""
    reuse = np.zeros(len(geoms), dtype=bool) if as_read is None else np.not_equal(as_read, None)
    wkb = np.empty(len(geoms), dtype=object)
    wkb[~reuse] = shapely.to_wkb(geoms[~reuse], byte_order=1)
    if reuse.any():
        wkb[reuse] = as_read[reuse]  # type: ignore[index]
    single = np.flatnonzero(shapely.get_type_id(geoms) == POLYGON)
    wkb[single] = [MULTI_OF_ONE + w for w in wkb[single]]
    return wkb


def _as_written(raw: np.ndarray, geoms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The source's WKB of `rows` (Polygons kept as read) where it is exactly what shapely would write for
    them: little-endian, the plain 2D type code, and nothing after the last coordinate (GEOS reads a value
    with bytes left over). Writing those bytes again cost the extract process 0.9 s per million parcels;
    these checks take a quarter of that. None elsewhere."""
    out = np.full(len(raw), None, dtype=object)
    idx = np.flatnonzero(rows)
    if not len(idx):
        return out
    try:
        values = pa.array(raw[idx], pa.binary())
    except (pa.ArrowException, TypeError):  # not all bytes (hex WKB text): written again, as before
        return out
    polygons = geoms[idx]
    rings = shapely.get_num_interior_rings(polygons) + 1
    length = 9 + 4 * rings + 16 * shapely.get_num_coordinates(polygons)  # header, ring and point counts, x y
    same = pc.starts_with(values, pattern=POLYGON_HEADER).to_numpy(zero_copy_only=False)
    same &= pc.binary_length(values).to_numpy(zero_copy_only=False) == length
    out[idx[same]] = raw[idx[same]]
    return out


def _split_ewkt(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The WKT without an EWKT 'SRID=n;' prefix, and n (0 where there is none)."""
    texts = pd.Series(raw, dtype=object)
    if pd.api.types.infer_dtype(texts, skipna=True) == "bytes":
        texts = texts.str.decode("utf-8", errors="replace")
    found = texts.str.extract(EWKT, flags=re.IGNORECASE | re.DOTALL)
    prefixed = found[0].notna().to_numpy()
    wkt = raw.copy()
    wkt[prefixed] = found[1][prefixed].to_numpy(dtype=object)
    return wkt, pd.to_numeric(found[0]).fillna(0).to_numpy(dtype=np.int64)


def _parse(raw: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometries (None where unparseable), the SRID each embeds (EWKB, EWKT; 0 where none), and why GEOS
    refused a row outright (None where it did not)."""
    srids = np.zeros(len(raw), dtype=np.int64)
    if encoding == "wkt":
        raw, srids = _split_ewkt(raw)
    parse = shapely.from_wkt if encoding == "wkt" else shapely.from_wkb
    refused = np.full(len(raw), None, dtype=object)
    try:
        geoms = parse(raw, on_invalid="ignore")
    except (NotImplementedError, ShapelyError):  # curves raise whatever on_invalid says: find them row by row
        geoms = np.full(len(raw), None, dtype=object)
        for i, value in enumerate(raw):
            try:
                geoms[i] = parse(value, on_invalid="ignore")
            except NotImplementedError:
                refused[i] = CURVES
            except ShapelyError as exc:
                refused[i] = f"geometry cannot be read: {exc}"
    embedded = shapely.get_srid(geoms)  # -1 where there is no geometry
    return geoms, np.where(srids > 0, srids, np.maximum(embedded, 0)), refused


# ISO WKB type codes of surfaces made of triangles or faces, which GEOS (and so shapely) does not read.
SURFACES = {15: "POLYHEDRALSURFACE", 16: "TIN", 17: "TRIANGLE"}


def _surface_kind(value: object) -> str | None:
    """Why well-formed WKB of a TIN, TRIANGLE or POLYHEDRALSURFACE was refused (None for other bytes): the
    plain "not valid WKB" sent people looking for corruption."""
    if not isinstance(value, bytes) or len(value) < 5 or value[0] not in (0, 1):
        return None
    code = int.from_bytes(value[1:5], "little" if value[0] == 1 else "big") & 0x0FFFFFFF  # EWKB flags off
    kind = SURFACES.get(code % 1000)  # ISO Z / M / ZM add 1000, 2000, 3000
    if kind is None:
        return None
    return f"geometry is a {kind}, which is not supported: have the source turn it into polygons (ST_Dump)"


def _polygonal_part(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The polygons inside each geometry (collections unpacked) as MultiPolygons, None where there are none;
    and whether anything else (a line, a point) was left out."""
    out = np.full(len(geoms), None, dtype=object)
    parts, index = shapely.get_parts(geoms, return_index=True)
    # Collections may hold multipolygons: unpack once more.
    parts, sub = shapely.get_parts(parts, return_index=True)
    index = index[sub]
    polygon = shapely.get_type_id(parts) == POLYGON
    dropped = np.zeros(len(geoms), dtype=bool)
    dropped[index[~polygon & ~shapely.is_empty(parts)]] = True
    keep = polygon & ~shapely.is_empty(parts) & (shapely.area(parts) > 0)
    parts, index = parts[keep], index[keep]
    if len(parts):
        rows = np.unique(index)
        out[rows] = shapely.multipolygons(parts, indices=np.searchsorted(rows, index))
    return out, dropped


@lru_cache(maxsize=32)
def _transformer(from_epsg: int, to_epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(from_epsg), CRS.from_epsg(to_epsg), always_xy=True)


@lru_cache(maxsize=32)
def known_epsg(code: int) -> bool:
    try:
        CRS.from_epsg(code)
    except CRSError:
        return False
    return True


def clean_geometries(
    values: pd.Series,
    encoding: str,
    default_srid: int,
    output_srid: int,
    srids: pd.Series | None = None,
) -> GeometryOutcome:
    """Parse, validate, repair and normalize a batch's geometries.

    `encoding` is "wkt" for text (EWKT too), anything else for WKB or EWKB (native columns arrive as WKB).
    Each row is in `srids` (when the source carries one per row; 0 or null means unknown), else in the SRID
    its EWKB / EWKT embeds, else in `default_srid`, and ends in `output_srid`. Rejections: null, empty,
    unparseable (curves included), non-polygonal, unknown SRID, invalid geometry whose repair leaves nothing
    polygonal, and coordinates that cannot be reprojected. Repaired rows, and valid collections whose
    non-polygonal parts are dropped, are kept with the invalid_geometry_repaired warning.
    """
    n = len(values)
    raw = _as_input_array(values)
    reasons = np.full(n, None, dtype=object)
    messages = np.full(n, None, dtype=object)
    geoms = np.full(n, None, dtype=object)

    present = np.not_equal(raw, None)
    reasons[~present] = Reason.NULL_GEOMETRY
    messages[~present] = "geometry is null"
    embedded_srid = np.zeros(n, dtype=np.int64)
    refused = np.full(n, None, dtype=object)
    geoms[present], embedded_srid[present], refused[present] = _parse(raw[present], encoding)

    unparsed = present & np.equal(geoms, None)
    reasons[unparsed] = Reason.UNPARSEABLE_GEOMETRY
    messages[unparsed] = f"geometry is not valid {encoding.upper() if encoding == 'wkt' else 'WKB'}"
    if encoding == "wkb":
        for i in np.flatnonzero(unparsed & np.equal(refused, None)):
            refused[i] = _surface_kind(raw[i])
    told_why = np.not_equal(refused, None)
    messages[told_why] = refused[told_why]

    ok = present & ~unparsed
    empty = np.zeros(n, dtype=bool)
    empty[ok] = shapely.is_empty(geoms[ok])
    reasons[empty] = Reason.EMPTY_GEOMETRY
    messages[empty] = "geometry is empty"
    ok &= ~empty

    type_id = np.full(n, -1)
    type_id[ok] = shapely.get_type_id(geoms[ok])
    wrong = ok & ~np.isin(type_id, (POLYGON, MULTIPOLYGON, COLLECTION))
    if wrong.any():
        reasons[wrong] = Reason.NON_POLYGONAL
        messages[wrong] = [f"geometry is a {g.geom_type}, not a polygon" for g in geoms[wrong]]
    ok &= ~wrong

    extra_dims = np.zeros(n, dtype=bool)
    extra_dims[ok] = shapely.has_z(geoms[ok]) | shapely.has_m(geoms[ok])
    if extra_dims.any():
        geoms[extra_dims] = shapely.force_2d(geoms[extra_dims])

    valid = np.zeros(n, dtype=bool)
    valid[ok] = shapely.is_valid(geoms[ok])
    kept_as_read = ok & valid & (type_id == POLYGON) & ~extra_dims  # before repairs and reprojection
    # A valid collection keeps its polygons; invalid ones are left to make_valid below. Dropping its lines
    # or points changes the parcel, so it is loaded with the repair warning, the message saying what happened.
    parts_dropped = np.zeros(n, dtype=bool)
    collection = ok & valid & (type_id == COLLECTION)
    if collection.any():
        idx = np.flatnonzero(collection)
        polygons, dropped = _polygonal_part(geoms[idx])
        none = np.equal(polygons, None)
        reasons[idx[none]] = Reason.NON_POLYGONAL
        messages[idx[none]] = "geometry is a GeometryCollection without polygons"
        parts_dropped[idx[dropped & ~none]] = True
        reasons[parts_dropped] = Reason.INVALID_GEOMETRY_REPAIRED
        messages[parts_dropped] = "geometry is a GeometryCollection: its non-polygonal parts were dropped"
        geoms[idx] = polygons
        ok[idx[none]] = False
        valid[idx] = shapely.is_valid(polygons)  # valid apart, the polygons may still overlap

    invalid = ok & ~valid
    if invalid.any():
        idx = np.flatnonzero(invalid)
        why = shapely.is_valid_reason(geoms[idx])
        repaired, dropped = _polygonal_part(shapely.make_valid(geoms[idx], method="structure", keep_collapsed=False))
        dropped |= parts_dropped[idx]
        lost = np.equal(repaired, None)
        reasons[idx[lost]] = Reason.INVALID_GEOMETRY_REJECTED
        messages[idx[lost]] = [f"invalid geometry ({w}); nothing polygonal survives repair" for w in why[lost]]
        reasons[idx[~lost]] = Reason.INVALID_GEOMETRY_REPAIRED
        messages[idx[~lost]] = [
            f"invalid geometry ({w}) repaired with make_valid" + ("; non-polygonal parts dropped" if d else "")
            for w, d in zip(why[~lost], dropped[~lost], strict=True)
        ]
        geoms[idx] = repaired
        ok[idx[lost]] = False

    row_srid = np.where(embedded_srid > 0, embedded_srid, default_srid)
    if srids is not None:
        given = pd.to_numeric(srids, errors="coerce").fillna(0).to_numpy(dtype=np.int64)
        row_srid = np.where(given > 0, given, row_srid)
    for srid in np.unique(row_srid[ok]):
        rows = ok & (row_srid == srid)
        if srid == output_srid:
            continue
        if not known_epsg(int(srid)):
            reasons[rows] = Reason.UNKNOWN_SRID
            messages[rows] = f"SRID {srid} is not a known EPSG code"
            ok &= ~rows
            continue
        transformer = _transformer(int(srid), output_srid)
        geoms[rows] = shapely.transform(
            geoms[rows], lambda xy, t=transformer: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
        )
        # PROJ gives inf for points it cannot transform (outside the CRS's area, or x and y swapped).
        lost = rows.copy()
        lost[rows] = ~np.isfinite(shapely.bounds(geoms[rows])).all(axis=1)
        reasons[lost] = Reason.INVALID_GEOMETRY_REJECTED
        messages[lost] = (
            f"coordinates could not be reprojected from EPSG:{srid} to EPSG:{output_srid}: "
            f"check that they are in EPSG:{srid}"
        )
        ok &= ~lost

    # The GeoPackage's R-tree stores boxes as 32-bit floats: past their range (3.4e38) a box is infinite, and
    # the area of such a parcel overflows too. No survey has coordinates like these; they are garbage.
    bounds = np.full((n, 4), np.nan)
    if ok.any():
        bounds[ok] = shapely.bounds(geoms[ok])
        extent = np.abs(bounds[ok]).max(axis=1)
        huge = ok.copy()
        huge[ok] = ~(extent <= FLOAT32_MAX)
        if huge.any():
            reasons[huge] = Reason.INVALID_GEOMETRY_REJECTED
            messages[huge] = [
                f"coordinates out of range (up to {e:.3g}; at most {FLOAT32_MAX:.3g} can be indexed): check them"
                for e in extent[huge[ok]]
            ]
            ok &= ~huge

    geoms[~ok] = None
    bounds[~ok] = np.nan
    as_read = None
    if encoding != "wkt":
        as_read = _as_written(raw, geoms, kept_as_read & ok & (row_srid == output_srid))
    return GeometryOutcome(geoms=geoms, bounds=bounds, reasons=reasons, messages=messages, as_read=as_read)

"""Geometry cleaning on whole arrays: parse WKB/WKT, validate, repair, make every parcel a 2D MultiPolygon in
the output CRS. No Python loop runs per geometry; shapely's vectorized functions do the work in GEOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from countydatasync.transform.reasons import Reason

POLYGON, MULTIPOLYGON, COLLECTION = 3, 6, 7


@dataclass
class GeometryOutcome:
    """Per input row: the cleaned MultiPolygon (None when rejected), and a reason and message when the row
    was rejected or repaired."""

    geoms: np.ndarray
    reasons: np.ndarray
    messages: np.ndarray

    @property
    def rejected(self) -> np.ndarray:
        out = np.zeros(len(self.reasons), dtype=bool)
        flagged = np.flatnonzero(np.not_equal(self.reasons, None))
        out[flagged] = [self.reasons[i].severity == "error" for i in flagged]
        return out


def _as_input_array(values: pd.Series) -> np.ndarray:
    """Driver values as an object array of bytes / str / None (memoryview and bytearray become bytes)."""
    arr = values.to_numpy(dtype=object, na_value=None)
    odd = np.fromiter((isinstance(v, memoryview | bytearray) for v in arr), bool, len(arr))
    if odd.any():
        arr[odd] = [bytes(v) for v in arr[odd]]
    return arr


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """The polygons inside each geometry (collections unpacked) as MultiPolygons; None where there are none."""
    out = np.full(len(geoms), None, dtype=object)
    parts, index = shapely.get_parts(geoms, return_index=True)
    # Collections may hold multipolygons: unpack once more.
    parts, sub = shapely.get_parts(parts, return_index=True)
    index = index[sub]
    keep = (shapely.get_type_id(parts) == POLYGON) & ~shapely.is_empty(parts) & (shapely.area(parts) > 0)
    parts, index = parts[keep], index[keep]
    if len(parts):
        rows = np.unique(index)
        out[rows] = shapely.multipolygons(parts, indices=np.searchsorted(rows, index))
    return out


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

    `encoding` is "wkt" for text, anything else for WKB (native columns arrive as WKB). Each row is in
    `srids` (when the source carries one per row; 0 or null means unknown) or else `default_srid`, and ends
    in `output_srid`. Rejections: null, empty, unparseable, non-polygonal, unknown SRID, and invalid
    geometry whose repair leaves nothing polygonal. Repaired rows are kept with a warning.
    """
    n = len(values)
    raw = _as_input_array(values)
    reasons = np.full(n, None, dtype=object)
    messages = np.full(n, None, dtype=object)
    geoms = np.full(n, None, dtype=object)

    present = np.array([v is not None for v in raw], dtype=bool)
    reasons[~present] = Reason.NULL_GEOMETRY
    messages[~present] = "geometry is null"
    parse = shapely.from_wkt if encoding == "wkt" else shapely.from_wkb
    geoms[present] = parse(raw[present], on_invalid="ignore")

    unparsed = present & np.equal(geoms, None)
    reasons[unparsed] = Reason.UNPARSEABLE_GEOMETRY
    messages[unparsed] = f"geometry is not valid {encoding.upper() if encoding == 'wkt' else 'WKB'}"

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

    has_z = np.zeros(n, dtype=bool)
    has_z[ok] = shapely.has_z(geoms[ok])
    if has_z.any():
        geoms[has_z] = shapely.force_2d(geoms[has_z])

    # Collections with polygons inside are reduced to their polygonal part and flagged as repaired.
    invalid = np.zeros(n, dtype=bool)
    invalid[ok] = ~shapely.is_valid(geoms[ok]) | (type_id[ok] == COLLECTION)
    if invalid.any():
        why = shapely.is_valid_reason(geoms[invalid])
        repaired = _polygonal_part(shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False))
        lost = np.equal(repaired, None)
        idx = np.flatnonzero(invalid)
        reasons[idx[lost]] = Reason.INVALID_GEOMETRY_REJECTED
        messages[idx[lost]] = [f"invalid geometry ({w}); nothing polygonal survives repair" for w in why[lost]]
        reasons[idx[~lost]] = Reason.INVALID_GEOMETRY_REPAIRED
        messages[idx[~lost]] = [f"invalid geometry ({w}) repaired with make_valid" for w in why[~lost]]
        geoms[idx] = repaired
        ok[idx[lost]] = False

    single = ok & (shapely.get_type_id(np.where(ok, geoms, None)) == POLYGON)
    if single.any():
        geoms[single] = shapely.multipolygons(geoms[single], indices=np.arange(int(single.sum())))

    row_srid = np.full(n, default_srid, dtype=np.int64)
    if srids is not None:
        given = pd.to_numeric(srids, errors="coerce").fillna(0).to_numpy(dtype=np.int64)
        row_srid = np.where(given > 0, given, default_srid)
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

    geoms[~ok] = None
    return GeometryOutcome(geoms=geoms, reasons=reasons, messages=messages)

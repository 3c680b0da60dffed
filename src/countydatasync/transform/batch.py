"""One batch through the transform: keys, geometry, attributes, derived fields, content hashes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS, Transformer
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import LambertAzimuthalEqualAreaConversion

from countydatasync.errors import ConfigError
from countydatasync.extract.base import RAW_GEOM, RAW_KEY, RAW_MODIFIED, RAW_SRID
from countydatasync.settings import ColumnSpec, Settings
from countydatasync.transform.attributes import ARROW_TEXT, convert_attributes
from countydatasync.transform.geometry import clean_geometries, known_epsg, multipolygon_wkb
from countydatasync.transform.reasons import Reason, excerpt

SQ_METRES_PER_ACRE = 4046.8564224
ISSUE_COLUMNS = ["key", "source_row", "reason", "message", "excerpt", "severity"]


@dataclass(frozen=True)
class TransformPlan:
    """What the transform needs from the settings, resolved once per run."""

    key_name: str
    columns: tuple[ColumnSpec, ...]
    encoding: str
    source_srid: int
    output_srid: int
    timezone: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformPlan:
        src = settings.source
        if src.srid is None:
            raise ConfigError("source.srid is not set: give the EPSG code of the source coordinates")
        output = settings.output.target_srid or src.srid
        for code in {src.srid, output}:
            if not known_epsg(code):
                raise ConfigError(f"EPSG:{code} (source.srid / output.target_srid) is not a known CRS")
        return cls(
            key_name=src.key_name,
            columns=tuple(settings.columns),
            encoding=src.geometry_encoding,
            source_srid=src.srid,
            output_srid=output,
            timezone=src.timezone,
        )

    @cached_property
    def output_crs(self) -> CRS:
        return CRS.from_epsg(self.output_srid)

    @cached_property
    def acres_per_square_unit(self) -> float | None:
        """Acres in one square unit of the output CRS; None for geographic coordinates."""
        crs = self.output_crs
        if not crs.is_projected:
            return None
        metres = crs.axis_info[0].unit_conversion_factor
        return metres * metres / SQ_METRES_PER_ACRE

    def acres(self, geoms: np.ndarray) -> np.ndarray:
        """Areas in acres (4 decimals) of polygons in the output CRS. A degree has no fixed size, so polygons
        in geographic coordinates are measured in a Lambert azimuthal equal-area projection centred on them
        (true areas anywhere; the centre only keeps the numbers small)."""
        factor = self.acres_per_square_unit
        if factor is None:
            if not self.output_crs.is_geographic:
                return np.full(len(geoms), np.nan)
            minx, miny, maxx, maxy = shapely.total_bounds(geoms)
            centred = LambertAzimuthalEqualAreaConversion((miny + maxy) / 2, (minx + maxx) / 2)
            equal_area = ProjectedCRS(centred, geodetic_crs=self.output_crs)
            to_metres = Transformer.from_crs(self.output_crs, equal_area, always_xy=True)
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(to_metres.transform(xy[:, 0], xy[:, 1])))
            factor = 1 / SQ_METRES_PER_ACRE
        return np.round(shapely.area(geoms) * factor, 4)


@dataclass
class TransformedBatch:
    """The loadable parcels of a batch (frame rows align with the geometry arrays) and its issues."""

    parcels: pd.DataFrame  # key, carried columns, gis_acres, sync_note, source_modified
    carried: list[str]  # the carried columns of `parcels`, typed: what attr_hash covers
    wkb: np.ndarray
    bounds: np.ndarray  # (n, 4): minx, miny, maxx, maxy
    issues: pd.DataFrame  # ISSUE_COLUMNS; severity "error" rows are the rejected ones
    extracted: int
    max_modified: pd.Timestamp | None
    modified_style: str = "datetime"  # how the source writes timestamps: "T" or " " for text, else "datetime"

    @property
    def rejected(self) -> pd.DataFrame:
        return self.issues[self.issues["severity"] == "error"]

    # The content hashes are computed where first asked for. In a big run that is the writer, which has time
    # to spare, and not the extract process, the busier one (1.1 s per million parcels); a batch pickled
    # before they are asked for is sent without them.
    @cached_property
    def attr_hash(self) -> np.ndarray:
        """64-bit hashes of each parcel's typed attributes."""
        return _hash(self.parcels[self.carried]) if len(self.parcels) else np.empty(0, dtype=np.int64)

    @cached_property
    def geom_hash(self) -> np.ndarray:
        """64-bit hashes of each parcel's geometry (its WKB)."""
        return _hash(pd.Series(self.wkb, dtype=object), categorize=False) if len(self.wkb) else np.empty(0, np.int64)


def normalize_keys(values: pd.Series) -> pd.Series:
    """Keys as trimmed text; null and blank keys become NA, and so do keys holding a NUL character (see
    `unusable_keys`). Integral floats lose their '.0'."""
    if pd.api.types.is_float_dtype(values.dtype):
        whole = (np.isfinite(values) & (values == np.trunc(values))).to_numpy()
        text = values.astype("string")
        text[whole] = [str(int(v)) for v in values[whole]]  # Python ints: no overflow past 2**63
        values = text
    text = values.astype("string").str.strip()
    return text.mask(text.eq("") | unusable_keys(text)).reset_index(drop=True)


def unusable_keys(keys: pd.Series) -> np.ndarray:
    """Keys holding a NUL character: SQLite's JSON functions, C strings and GIS tools end the text there, so
    'A\\x00B' would pass for 'A' (another parcel) on its way through the staging databases."""
    return keys.astype("string").str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)


# A timestamp written as text, up to its time of day, then a UTC offset or Z.
WALL_CLOCK_THEN_ZONE = r"^(.*[T ]\d\d:\d\d(?::\d\d(?:\.\d*)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


def modified_stamps(values: pd.Series, style: str) -> pd.Series:
    """The modified column as timestamps for the watermark. Text is read as the wall-clock time it spells,
    with any UTC offset dropped: the source compares the watermark with the text as written, and a column
    that mixes offsets (-08:00 in winter, -07:00 in summer) would otherwise fail to parse."""
    try:
        stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
    except ValueError:  # differing UTC offsets, or some values with one and some without
        if style == "datetime":  # datetimes: compared as instants
            return pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
        text = values.astype("string").str.strip().str.replace(WALL_CLOCK_THEN_ZONE, r"\1", regex=True)
        return pd.to_datetime(text, errors="coerce", format="ISO8601")
    if style != "datetime" and isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_localize(None)  # one offset throughout: its wall-clock times
    return stamps


def valid_text(raw: pd.DataFrame) -> pd.DataFrame:
    """The batch with invalid UTF-8 in its Arrow text columns replaced (U+FFFD), as bytes in text columns are
    decoded. SQLite hands back whatever bytes a TEXT value holds (or a BLOB cast to text), and every Arrow
    function and conversion raised on them, failing the whole run over one bad value."""
    fixed = {}
    for name, column in raw.items():
        if not isinstance(column.array, pd.arrays.ArrowStringArray):
            continue
        arrow = pa.array(column.array)
        try:
            arrow.validate(full=True)
        except pa.ArrowInvalid:
            binary = pa.large_binary() if pa.types.is_large_string(arrow.type) else pa.binary()
            text = [None if v is None else v.decode("utf-8", "replace") for v in arrow.view(binary).to_pylist()]
            fixed[name] = pd.Series(pd.array(text, dtype=column.dtype), index=column.index)
    return raw.assign(**fixed) if fixed else raw


def _hash(frame: pd.DataFrame | pd.Series, categorize: bool = True) -> np.ndarray:
    """64-bit content hashes per row. `categorize` only changes the speed, never the result: it pays for
    columns with repeated values, not for geometries, which are all different."""
    return pd.util.hash_pandas_object(frame, index=False, categorize=categorize).to_numpy().view(np.int64)


def transform_batch(raw: pd.DataFrame, plan: TransformPlan, first_row: int = 0) -> TransformedBatch:
    """Type, validate and normalize one raw batch. Pure: the same input always gives the same output.

    `first_row` numbers the batch's rows within the run (`source_row` in the errors table), so a record
    without a usable key can still be found.
    """
    n = len(raw)
    raw = valid_text(raw.reset_index(drop=True))
    keys = normalize_keys(raw[RAW_KEY])
    rows = np.arange(first_row, first_row + n)
    reason = np.full(n, None, dtype=object)
    message = np.full(n, None, dtype=object)
    bad_value = np.full(n, None, dtype=object)

    def flag(
        mask: np.ndarray, code: Reason | np.ndarray, text: np.ndarray | str, values: np.ndarray | None = None
    ) -> None:
        mask = mask & np.equal(reason, None)
        reason[mask] = code if isinstance(code, Reason) else code[mask]
        message[mask] = text if isinstance(text, str) else text[mask]
        if values is not None:
            bad_value[mask] = values[mask]

    null_key = keys.isna().to_numpy()
    stored_keys = raw[RAW_KEY].to_numpy(dtype=object)
    message_nul = "parcel key holds a NUL character, where tools would cut it short: fix the key at the source"
    flag(null_key & unusable_keys(raw[RAW_KEY]), Reason.INVALID_KEY, message_nul, stored_keys)
    flag(null_key, Reason.NULL_KEY, "parcel key is null or blank", stored_keys)
    dup = keys.duplicated(keep=False).to_numpy() & ~null_key
    flag(dup, Reason.DUPLICATE_KEY, "parcel key occurs more than once in the source")

    geo = clean_geometries(raw[RAW_GEOM], plan.encoding, plan.source_srid, plan.output_srid, raw.get(RAW_SRID))
    geom_values = raw[RAW_GEOM].to_numpy(dtype=object)
    flag(geo.rejected, geo.reasons, geo.messages, geom_values)

    attrs = convert_attributes(raw, list(plan.columns), plan.timezone)
    bad_attr = attrs.bad
    attr_text = np.full(n, None, dtype=object)
    bad_rows = np.flatnonzero(bad_attr)
    attr_text[bad_rows] = [
        f"column {c}: value {excerpt(v)!r} is not a valid value"
        for c, v in zip(attrs.bad_column[bad_rows], attrs.bad_value[bad_rows], strict=True)
    ]
    flag(bad_attr, Reason.BAD_ATTRIBUTE, attr_text, attrs.bad_value)

    rejected = np.not_equal(reason, None)
    good = ~rejected
    repaired = good & np.equal(geo.reasons, Reason.INVALID_GEOMETRY_REPAIRED)

    listed = np.flatnonzero(rejected | repaired)  # a small share of the batch: build the issue rows for those only
    issues = pd.DataFrame(
        {
            "key": keys.to_numpy(dtype=object, na_value=None)[listed],
            "source_row": rows[listed],
            "reason": [str(r) if r is not None else None for r in np.where(rejected, reason, geo.reasons)[listed]],
            "message": np.where(rejected, message, geo.messages)[listed],
            "excerpt": [excerpt(v) for v in np.where(rejected, bad_value, None)[listed]],
            # Listed and not rejected: repaired, a warning (a rejected row's reason is always an error's).
            "severity": np.where(rejected[listed], "error", "warning"),
        }
    )

    geoms = geo.geoms[good]
    parcels = attrs.frame[good].reset_index(drop=True)
    carried = list(parcels.columns)
    as_read = geo.as_read[good] if geo.as_read is not None else None
    wkb = multipolygon_wkb(geoms, as_read) if len(geoms) else np.empty(0, dtype=object)
    parcels.insert(0, plan.key_name, keys[good].array)
    parcels["gis_acres"] = plan.acres(geoms) if len(geoms) else np.nan
    # Arrow text, like the source_modified and carried text columns: no Python string per row in either process.
    note = pc.if_else(pa.array(repaired[good]), Reason.INVALID_GEOMETRY_REPAIRED.value, pa.scalar(None, pa.string()))
    parcels["sync_note"] = pd.arrays.ArrowStringArray(note)

    max_modified, style = None, "datetime"
    if RAW_MODIFIED in raw:
        sample = raw[RAW_MODIFIED].dropna()
        if len(sample) and isinstance(sample.iloc[0], str):
            style = "T" if "T" in sample.iloc[0] else " "
        stamps = modified_stamps(raw[RAW_MODIFIED], style)
        parcels["source_modified"] = raw[RAW_MODIFIED][good].astype(ARROW_TEXT).array
        max_modified = stamps.max() if stamps.notna().any() else None
    else:
        parcels["source_modified"] = None

    return TransformedBatch(
        parcels=parcels,
        carried=carried,
        wkb=wkb,
        bounds=geo.bounds[good],
        issues=issues,
        extracted=n,
        max_modified=max_modified,
        modified_style=style,
    )

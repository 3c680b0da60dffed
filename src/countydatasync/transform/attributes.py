"""Attribute typing: whatever the driver returned (str, Decimal, bytes, datetime, numbers stored as text)
becomes the configured type, column by column, with a mask of values that cannot be converted.

Converted values are in their storage form: text as str, integers as nullable Int64, reals as float,
dates as 'YYYY-MM-DD', timestamps as UTC 'YYYY-MM-DDTHH:MM:SS.sssZ' (the GeoPackage DATETIME form),
booleans as 0/1. Clean columns take Arrow's vectorized casts; only a column with a bad value falls back
to pandas' element-wise parsing, which tells the bad rows apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from countydatasync.settings import ColumnSpec

_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
ARROW_TEXT = "string[pyarrow]"


@dataclass
class AttributeOutcome:
    """Typed columns (output names) and, per row, the first column whose value could not be converted."""

    frame: pd.DataFrame
    bad_column: np.ndarray  # object: output column name or None
    bad_value: np.ndarray  # object: the offending source value

    @property
    def bad(self) -> np.ndarray:
        return np.not_equal(self.bad_column, None)


def _text(values: pd.Series) -> pd.Series:
    """Values as trimmed Arrow strings; blanks become NA. Integral floats lose their '.0'."""
    if isinstance(values.array, pd.arrays.ArrowStringArray):  # what the Arrow drivers give: stay in Arrow
        trimmed = pc.utf8_trim_whitespace(pa.array(values.array))
        blank_as_null = pc.if_else(pc.equal(trimmed, ""), None, trimmed)
        return pd.Series(pd.array(blank_as_null, dtype=ARROW_TEXT), index=values.index)
    if pd.api.types.is_float_dtype(values.dtype) and values.dropna().mod(1).eq(0).all():
        values = values.astype("Int64")
    elif values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        has_bytes = values.map(lambda v: isinstance(v, bytes)).to_numpy(dtype=bool)
        if has_bytes.any():
            values = values.copy()
            values[has_bytes] = [v.decode("utf-8", "replace") for v in values[has_bytes]]
    text = values.astype(ARROW_TEXT).str.strip()
    return text.mask(text.eq(""))


# A plain decimal number once currency signs, thousands separators and spaces are gone.
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _number(values: pd.Series, text: pd.Series) -> pd.Series:
    """Floats; text such as '$1,234.50' is cleaned first. Unconvertible values become NaN."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    arrow = pa.array(text.array)
    try:
        numbers = pc.cast(arrow, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        cleaned = pc.replace_substring_regex(arrow, r"[\s$,]", "")
        numbers = pc.cast(pc.if_else(pc.match_substring_regex(cleaned, NUMBER), cleaned, None), pa.float64())
    return pd.Series(numbers.to_numpy(zero_copy_only=False), index=values.index)


# Tried first, in Arrow, for text columns; anything else goes through pandas' general parsers.
TEXT_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def _timestamps(values: pd.Series, text: pd.Series, timezone: str | None) -> pd.Series:
    """Timestamps in UTC; values without a zone are taken to be in `timezone`. With timezone None (dates),
    the wall-clock time as written, without a zone."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return _zone(values, timezone)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return _zone(_parse(values, text), timezone)
    arrow, parsed = pa.array(text.array), None
    for fmt in TEXT_FORMATS:
        found = pc.strptime(arrow, format=fmt, unit="ms", error_is_null=True)
        parsed = found if parsed is None else pc.coalesce(parsed, found)
    stamps = _zone(pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index), timezone)
    missed = stamps.isna().to_numpy() & text.notna().to_numpy()
    if missed.any():
        stamps = stamps.copy()
        stamps[missed] = _zone(_parse(text[missed], text[missed]), timezone)
    return stamps


def _parse(values: pd.Series, text: pd.Series) -> pd.Series:
    """pandas' ISO 8601 parser, then US-style dates, as assessor systems often export them."""
    try:
        stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
    except (ValueError, TypeError):  # mixed zone-aware and naive values
        stamps = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
    missed = stamps.isna().to_numpy() & text.notna().to_numpy()
    if missed.any():
        again = pd.to_datetime(text[missed].astype(object), errors="coerce", format="%m/%d/%Y")
        if isinstance(stamps.dtype, pd.DatetimeTZDtype):
            again = again.dt.tz_localize("UTC")
        stamps = stamps.copy()
        stamps[missed] = again
    return stamps


def _zone(stamps: pd.Series, timezone: str | None) -> pd.Series:
    aware = isinstance(stamps.dtype, pd.DatetimeTZDtype)
    if timezone is None:
        return stamps.dt.tz_localize(None) if aware else stamps
    if aware:
        return stamps.dt.tz_convert("UTC")
    return stamps.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")


def _iso(stamps: pd.Series, unit: str) -> pd.Series:
    """ISO text of UTC timestamps: dates with unit 'D', GeoPackage DATETIME with unit 'ms'."""
    raw = stamps.dt.tz_localize(None).to_numpy().astype(f"datetime64[{unit}]")
    text = np.datetime_as_string(raw, unit=unit).astype(object)
    if unit != "D":
        text = text + "Z"
    text[np.isnat(raw)] = None
    return pd.Series(text, index=stamps.index, dtype=object)


def convert_column(values: pd.Series, spec: ColumnSpec, timezone: str = "UTC") -> tuple[pd.Series, np.ndarray]:
    """The column in its storage form and a mask of present values that failed conversion."""
    text = _text(values)
    present = text.notna().to_numpy()
    kind = spec.type
    if kind == "text":
        return text, np.zeros(len(values), dtype=bool)
    if kind in ("integer", "real"):
        number = _number(values, text)
        failed = ~np.isfinite(number.to_numpy(dtype=float, na_value=np.nan))
        if kind == "integer":
            failed |= np.nan_to_num(number.to_numpy(dtype=float, na_value=np.nan)) % 1 != 0
            return number.where(~failed & present).astype("Int64"), present & failed
        return number.where(~failed & present), present & failed
    if kind == "boolean":
        lower = text.str.lower()
        out = pd.Series(np.where(lower.isin(_TRUE), 1, np.where(lower.isin(_FALSE), 0, -1)), index=values.index)
        failed = out.eq(-1).to_numpy()
        return out.where(~failed & present).astype("Int64"), present & failed
    # A date is a calendar day as written: moving it to UTC could change the day.
    stamps = _timestamps(values, text, None if kind == "date" else timezone)
    failed = stamps.isna().to_numpy()
    return _iso(stamps, "D" if kind == "date" else "ms").where(~failed & present, None), present & failed


def convert_attributes(raw: pd.DataFrame, columns: list[ColumnSpec], timezone: str = "UTC") -> AttributeOutcome:
    """Every configured column converted; the first failing column of each row is reported."""
    n = len(raw)
    bad_column = np.full(n, None, dtype=object)
    bad_value = np.full(n, None, dtype=object)
    typed: dict[str, pd.Series] = {}
    for spec in columns:
        values = raw[spec.source].reset_index(drop=True)
        converted, failed = convert_column(values, spec, timezone)
        typed[spec.name] = converted
        first = failed & np.equal(bad_column, None)
        if first.any():
            bad_column[first] = spec.name
            bad_value[first] = values.to_numpy(dtype=object)[first]
    return AttributeOutcome(frame=pd.DataFrame(typed), bad_column=bad_column, bad_value=bad_value)

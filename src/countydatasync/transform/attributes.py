"""Attribute typing: whatever the driver returned (str, Decimal, bytes, datetime, numbers stored as text)
becomes the configured type, column by column, with a mask of values that cannot be converted.

Converted values are in their storage form: text as str, integers as nullable Int64, reals as float,
dates as 'YYYY-MM-DD', timestamps as UTC 'YYYY-MM-DDTHH:MM:SS.sssZ' (the GeoPackage DATETIME form),
booleans as 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from countydatasync.settings import ColumnSpec

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class AttributeOutcome:
    """Typed columns (output names) and, per row, the first column whose value could not be converted."""

    frame: pd.DataFrame
    bad_column: np.ndarray  # object: output column name or None
    bad_value: np.ndarray  # object: the offending source value

    @property
    def bad(self) -> np.ndarray:
        return np.not_equal(self.bad_column, None)


def _present(values: pd.Series) -> np.ndarray:
    """Not null and not a blank string."""
    present = values.notna().to_numpy().copy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        blank = values.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        present &= ~blank
    return present


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna().mod(1).eq(0).all()
        values = values.astype("Int64") if whole else values
    elif values.dtype == object:
        values = values.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    text = values.astype("string").str.strip()
    return text.mask(text.eq(""))


def _as_number(values: pd.Series) -> pd.Series:
    """Floats; text such as '$1,234.50' is cleaned first. Unconvertible values become NaN."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    number = pd.to_numeric(values, errors="coerce")
    retry = number.isna().to_numpy() & values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if retry.any():
        cleaned = values[retry].str.replace(r"[\s$,]", "", regex=True)
        number = number.astype("float64")
        number[retry] = pd.to_numeric(cleaned, errors="coerce")
    return number.astype("float64")


def _as_timestamp(values: pd.Series, timezone: str) -> pd.Series:
    """UTC timestamps; values without a zone are taken to be in `timezone`."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values
    else:
        try:
            stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):  # mixed zone-aware and naive values
            stamps = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
        missed = stamps.isna().to_numpy() & values.notna().to_numpy()
        if missed.any():
            for fmt in ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "mixed"):
                again = pd.to_datetime(values[missed].astype("string"), errors="coerce", format=fmt)
                if isinstance(stamps.dtype, pd.DatetimeTZDtype) and again.dt.tz is None:
                    again = again.dt.tz_localize("UTC")
                stamps = stamps.astype(object)
                stamps[missed] = again
                stamps = pd.to_datetime(stamps, errors="coerce", utc=isinstance(again.dtype, pd.DatetimeTZDtype))
                missed = stamps.isna().to_numpy() & values.notna().to_numpy()
                if not missed.any():
                    break
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_convert("UTC")
    return stamps.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")


def convert_column(values: pd.Series, spec: ColumnSpec, timezone: str = "UTC") -> tuple[pd.Series, np.ndarray]:
    """The column in its storage form and a mask of present values that failed conversion."""
    present = _present(values)
    kind = spec.type
    if kind == "text":
        return _as_text(values), np.zeros(len(values), dtype=bool)
    if kind in ("integer", "real"):
        number = _as_number(values)
        failed = number.isna().to_numpy() | ~np.isfinite(number.fillna(0).to_numpy())
        if kind == "integer":
            failed |= number.fillna(0).mod(1).ne(0).to_numpy()
            number = number.where(~failed & present).astype("Int64")
        else:
            number = number.where(~failed & present)
        return number, present & failed
    if kind == "boolean":
        text = values.astype("string").str.strip().str.lower()
        out = pd.Series(np.where(text.isin(_TRUE), 1, np.where(text.isin(_FALSE), 0, -1)), index=values.index)
        failed = out.eq(-1).to_numpy()
        return out.where(~failed & present).astype("Int64"), present & failed
    stamps = _as_timestamp(values, timezone)
    failed = stamps.isna().to_numpy()
    if kind == "date":
        text = stamps.dt.strftime("%Y-%m-%d")
    else:
        text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.where(~failed & present), present & failed


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

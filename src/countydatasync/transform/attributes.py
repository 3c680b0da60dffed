"""Attribute typing: whatever the driver returned (str, Decimal, bytes, datetime, numbers stored as text)
becomes the configured type, column by column, with a mask of values that cannot be converted.

Converted values are in their storage form: text as str, integers as nullable Int64, reals as float,
dates as 'YYYY-MM-DD', timestamps as UTC 'YYYY-MM-DDTHH:MM:SS.sssZ' (the GeoPackage DATETIME form),
booleans as 0/1. Clean columns take Arrow's vectorized casts; only a column with a bad value falls back
to pandas' element-wise parsing, which tells the bad rows apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from countydatasync.settings import ColumnSpec

_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
ARROW_TEXT = "string[pyarrow]"
INT64_LIMIT = 2.0**63  # the first float past int64
INT64_MIN, INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


@dataclass
class AttributeOutcome:
    """Typed columns (output names) and, per row, the first column whose value could not be converted."""

    frame: pd.DataFrame
    bad_column: np.ndarray  # object: output column name or None
    bad_value: np.ndarray  # object: the offending source value

    @property
    def bad(self) -> np.ndarray:
        return np.not_equal(self.bad_column, None)


def _float_text(values: pd.Series) -> pd.Series:
    """Floats as text, value by value: whole numbers within int64 lose their '.0' (12.0 -> '12'), the others
    keep Python's shortest form ('12.5', '1e+20')."""
    number = values.to_numpy(dtype=float, na_value=np.nan)
    whole = np.isfinite(number) & (number == np.trunc(number)) & (np.abs(number) < INT64_LIMIT)
    as_int = pd.Series(np.where(whole, number, 0).astype(np.int64), index=values.index).astype(ARROW_TEXT)
    return values.astype(ARROW_TEXT).mask(whole, as_int)


def _text(values: pd.Series) -> pd.Series:
    """Values as trimmed Arrow strings; blanks become NA. Integral floats lose their '.0'."""
    if isinstance(values.array, pd.arrays.ArrowStringArray):  # what the Arrow drivers give: stay in Arrow
        trimmed = pc.utf8_trim_whitespace(pa.array(values.array))
        blank_as_null = pc.if_else(pc.equal(trimmed, ""), None, trimmed)
        return pd.Series(pd.array(blank_as_null, dtype=ARROW_TEXT), index=values.index)
    if pd.api.types.is_float_dtype(values.dtype):
        values = _float_text(values)
    elif values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        has_bytes = values.map(lambda v: isinstance(v, bytes)).to_numpy(dtype=bool)
        if has_bytes.any():
            values = values.copy()
            values[has_bytes] = [v.decode("utf-8", "replace") for v in values[has_bytes]]
    text = values.astype(ARROW_TEXT).str.strip()
    return text.mask(text.eq(""))


# A plain decimal number once currency signs, thousands separators and spaces are gone.
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# Integer text that always fits int64 and that Arrow's cast reads exactly (it refuses a leading '+').
PLAIN_INTEGER = r"^-?\d{1,18}$"
# Thousands separators stand only between groups of three digits before the decimal point.
GROUPED = r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"


def _number_text(text: pd.Series) -> pa.Array:
    """Text as plain numbers: currency signs and spaces dropped, thousands separators too where they group
    digits ('$1,250,000'); null where what is left is no number ('1,5', '12abc')."""
    cleaned = pc.replace_substring_regex(pa.array(text.array), r"[\s$]", "")
    grouped = pc.match_substring_regex(cleaned, GROUPED)
    cleaned = pc.if_else(grouped, pc.replace_substring(cleaned, ",", ""), cleaned)
    return pc.if_else(pc.match_substring_regex(cleaned, NUMBER), cleaned, None)


def _number(values: pd.Series, text: pd.Series) -> pd.Series:
    """Floats; text such as '$1,234.50' is cleaned first. Unconvertible values become NaN."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    arrow = pa.array(text.array)
    try:
        numbers = pc.cast(arrow, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = _plain_first(
            arrow, NUMBER, pa.float64(), lambda odd: pc.cast(_number_text(_series(odd)), pa.float64())
        )
    return pd.Series(numbers.to_numpy(zero_copy_only=False), index=values.index)


def _series(text: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(text))


def _plain_first(
    arrow: pa.Array | pa.ChunkedArray, plain: str, to: pa.DataType, slow: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """Text cast to `to`: the values that match the regex `plain` directly, only the others through `slow`.
    One '$1,250' or 'N/A' in a batch sent every value of its column through the cleaning (0.8 s per million
    parcels for one column). `slow` must give what the direct cast gives for a plain value."""
    arrow = _one_array(arrow)
    is_plain = pc.fill_null(pc.match_substring_regex(arrow, plain), False)
    direct = pc.cast(pc.if_else(is_plain, arrow, None), to)
    odd = pc.and_(pc.invert(is_plain), arrow.is_valid())
    if not pc.any(odd).as_py():
        return direct
    return pc.replace_with_mask(direct, odd, slow(arrow.filter(odd)))


def _one_array(arrow: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The values as one array: replace_with_mask and concat_arrays take no chunked arrays."""
    return arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow


def _exact_integers(text: pd.Series) -> pa.Array:
    """Integer text read exactly (through decimal, not float64); null where it is no integer or is past int64."""
    digits = _number_text(text)
    digits = pc.if_else(pc.match_substring_regex(digits, r"^[+-]?\d{1,38}$"), digits, None)
    exact = pc.cast(digits, pa.decimal128(38, 0))
    lowest, highest = (pa.scalar(Decimal(int(b)), pa.decimal128(38, 0)) for b in (INT64_MIN, INT64_MAX))
    fits = pc.and_(pc.greater_equal(exact, lowest), pc.less_equal(exact, highest))
    return pc.cast(pc.if_else(fits, exact, None), pa.int64())


def _integers(values: pd.Series, text: pd.Series) -> pd.Series:
    """Nullable Int64. Integers and integer text stay exact (float64 rounds past 2**53); other numbers
    ('12.0', '1e3', 12.0) count when whole and within int64. Anything else is NA."""
    if pd.api.types.is_integer_dtype(values.dtype):
        fits = values.le(INT64_MAX).fillna(True).to_numpy(dtype=bool)  # only unsigned columns can overflow
        return values.mask(~fits, 0).astype("Int64").mask(~fits)
    if not pd.api.types.is_float_dtype(values.dtype):
        arrow = pa.array(text.array)
        try:  # plain integer text, the usual case: exact in one cast
            integers = pc.cast(arrow, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            integers = _plain_first(arrow, PLAIN_INTEGER, pa.int64(), _cleaned_integer_text)
        return pd.Series(integers.to_pandas(types_mapper=_INT64), index=values.index)
    return pd.Series(_cleaned_integers(values, text).to_pandas(types_mapper=_INT64), index=values.index)


def _cleaned_integer_text(text: pa.Array) -> pa.Array:
    """`_cleaned_integers` of text values (the text is its own source value)."""
    series = _series(text)
    return _cleaned_integers(series, series)


def _cleaned_integers(values: pd.Series, text: pd.Series) -> pa.Array:
    """Integers from floats, or from text that is no plain integer ('1,250', '12.0', '1e3'); null for others."""
    number = _number(values, text).to_numpy(dtype=float, na_value=np.nan)
    whole = np.isfinite(number) & (number == np.trunc(number)) & (np.abs(number) < INT64_LIMIT)
    integers = pa.array(np.where(whole, number, 0).astype(np.int64), mask=~whole)
    if not pd.api.types.is_float_dtype(values.dtype):
        integers = pc.coalesce(_exact_integers(text), integers)
    return integers


_INT64 = {pa.int64(): pd.Int64Dtype()}.get  # Arrow int64 to pandas' nullable Int64


# Tried in Arrow on a text column that its ISO 8601 cast cannot read whole; what they miss goes to pandas.
TEXT_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def _timestamps(values: pd.Series, text: pd.Series, timezone: str | None) -> pd.Series:
    """Timestamps in UTC; values without a zone are taken to be in `timezone`. With timezone None (dates),
    the wall-clock time as written, without a zone."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return _zone(values, timezone)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return _parse(text, timezone)
    # ISO 8601 text without an offset (the usual export) is read by Arrow's own parser, which refuses impossible
    # days and times, in a sixth of the instructions of the formats; those read what it refused.
    arrow = _one_array(pa.array(text.array))
    parsed = _cast_readable(arrow, pa.timestamp("ms"))
    if parsed is None:  # a messy column
        parsed = _by_formats(arrow)
    elif parsed.null_count > arrow.null_count:
        refused = pc.and_(parsed.is_null(), arrow.is_valid())
        parsed = pc.replace_with_mask(parsed, refused, _by_formats(arrow.filter(refused)))
    stamps = _zone(pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index), timezone)
    missed = stamps.isna().to_numpy() & text.notna().to_numpy()
    if missed.any():
        stamps = stamps.copy()
        stamps[missed] = _parse(text[missed], timezone)
    return stamps


CAST_RUN = 32  # values left to the formats around each one the cast refuses
CAST_TRIES = 24  # casts refused before a column counts as messy and goes to the formats whole


def _cast_readable(arrow: pa.Array, to: pa.DataType) -> pa.Array | None:
    """`arrow` cast to `to`, null in each run of up to CAST_RUN values where the cast refuses one; None for a
    messy column (more than CAST_TRIES refused casts). The cast stops at the first value it cannot read:
    halves are cast apart until the runs holding those are found (a few in a batch, if any)."""
    refused = 0

    def cast(part: pa.Array) -> pa.Array | None:
        nonlocal refused
        try:
            return pc.cast(part, to)
        except pa.ArrowInvalid:
            refused += 1
            if refused > CAST_TRIES:
                return None
            if len(part) <= CAST_RUN:
                return pa.nulls(len(part), to)
        middle = len(part) // 2
        first = cast(part.slice(0, middle))
        second = cast(part.slice(middle)) if first is not None else None
        return None if second is None else pa.concat_arrays([first, second])

    return cast(arrow)


def _by_formats(arrow: pa.Array) -> pa.Array:
    """Text in TEXT_FORMATS as timestamps; null for other text (left to pandas)."""
    parsed = None
    for fmt in TEXT_FORMATS:
        found = pc.strptime(arrow, format=fmt, unit="ms", error_is_null=True)
        parsed = found if parsed is None else pc.coalesce(parsed, found)
        if parsed.null_count == arrow.null_count:  # every value read: the other formats would find nothing new
            break
    # strptime rolls impossible days over (2021-02-30 -> 2021-03-02): keep the days that read back as written
    # (every format starts with the date; strftime would cost three times the parse); the others go to pandas,
    # which rejects them.
    day = pc.utf8_lpad(pc.cast(pc.day(parsed), pa.string()), 2, "0")
    written = pc.equal(day, pc.utf8_slice_codeunits(arrow, 8, 10))
    return pc.if_else(written, parsed, None)


# A time of day, then a UTC offset or Z: '2020-10-03T12:00:00Z', '2020-10-03 05:00-07:00', '2020-10-03T12Z',
# '20201003T120000+0100'.
WITH_OFFSET = r"(?:[T ]\d\d(?::?\d\d(?::?\d\d(?:\.\d*)?)?)?|\d\d:\d\d(?::\d\d(?:\.\d*)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"
OFFSET = r"\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


def _parse(text: pd.Series, timezone: str | None) -> pd.Series:
    """Text through pandas' ISO 8601 parser, then as a US-style date (as assessor systems often export them),
    zoned as by `_zone`. Text with a UTC offset is parsed apart from text without one: together, pandas
    would read them all in UTC, and a value would change with its neighbours."""
    offset = text.str.contains(WITH_OFFSET).fillna(False).to_numpy(dtype=bool)
    local = text.mask(offset)
    stamps = _read(local, format="ISO8601")
    us_style = stamps.isna().to_numpy() & local.notna().to_numpy()
    stamps[us_style] = _read(local[us_style], format="%m/%d/%Y")
    stamps = _zone(stamps, timezone)
    if offset.any():
        if timezone is None:  # a date is the day as written, whatever the offset
            stamps[offset] = _read(text[offset].str.replace(OFFSET, "", regex=True), format="ISO8601")
        else:
            stamps[offset] = _read(text[offset], format="ISO8601", utc=True)
    return stamps


def _read(text: pd.Series, **options: object) -> pd.Series:
    """pd.to_datetime in milliseconds, the unit of the output: pandas picks the unit from the text, and
    parts read apart could not be put together."""
    try:
        return pd.to_datetime(text.astype(object), errors="coerce", **options).dt.as_unit("ms")
    except ValueError:  # values with and without an offset that WITH_OFFSET did not tell apart
        return pd.Series([_read_one(v, options) for v in text], index=text.index, dtype="datetime64[ms]")


def _read_one(value: object, options: dict[str, object]) -> pd.Timestamp:
    """One value as `_read` reads a column; NaT (a bad value) for a time with an offset among local times."""
    stamp = pd.to_datetime(value, errors="coerce", **options)
    return pd.NaT if pd.isna(stamp) or stamp.tzinfo is not None else stamp.as_unit("ms")


EARLIEST_LOCAL, LATEST_LOCAL = pd.Timestamp("0001-01-02"), pd.Timestamp("9999-12-30")


def _zone(stamps: pd.Series, timezone: str | None) -> pd.Series:
    """Stamps in UTC, naive ones taken to be in `timezone`: in the hour that repeats when clocks fall back,
    the first (daylight) one; in the hour skipped when they spring forward, the time just after the gap.
    With timezone None, the wall-clock time without a zone."""
    aware = isinstance(stamps.dtype, pd.DatetimeTZDtype)
    if timezone is None:
        return stamps.dt.tz_localize(None) if aware else stamps
    if aware:
        return stamps.dt.tz_convert("UTC")
    # Within a day of the years 1 and 9999, a local time can be a UTC time Python cannot hold (9999-12-31 23:00
    # in Los Angeles is in the year 10000): pandas raised for the whole column. Those few are done one by one,
    # and one that leaves the range is no time at all (a bad value).
    edge = (stamps.notna() & ((stamps < EARLIEST_LOCAL) | (stamps > LATEST_LOCAL))).to_numpy()
    local = stamps.mask(edge) if edge.any() else stamps
    utc = local.dt.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")
    for i in np.flatnonzero(edge):
        utc.iloc[i] = _one_to_utc(stamps.iloc[i], timezone)
    return utc


def _one_to_utc(stamp: pd.Timestamp, timezone: str) -> pd.Timestamp:
    try:
        utc = stamp.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")
    except (ValueError, OverflowError, NotImplementedError):
        return pd.NaT
    return utc if 1 <= utc.year <= 9999 else pd.NaT


def _iso(stamps: pd.Series, unit: str) -> pd.Series:
    """ISO text of UTC timestamps: dates with unit 'D', GeoPackage DATETIME with unit 'ms'. Arrow text, like
    the other text columns: hashing and handing it on cost half what a column of Python strings does (and
    the hashes are the same). Arrow's cast to text takes a sixth of numpy's datetime_as_string."""
    raw = pa.array(stamps.dt.tz_localize(None).to_numpy().astype(f"datetime64[{unit}]"))  # NaT -> null
    text = pc.cast(raw, pa.string())  # 'YYYY-MM-DD' (date32), 'YYYY-MM-DD HH:MM:SS.sss' (timestamp[ms])
    if unit != "D":
        text = pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")
    return pd.Series(pd.arrays.ArrowStringArray(text), index=stamps.index)


def _bools_as_numbers(values: pd.Series) -> pd.Series:
    """Booleans (a SQL Server bit, a PostgreSQL boolean) as 1 and 0, as SQLite stores them: a bit column
    carried as an integer had every value rejected."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("Int64")
    if values.dtype == object:
        flags = values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        if flags.any():
            values = values.copy()
            values[flags] = [int(v) for v in values[flags]]
    return values


def convert_column(values: pd.Series, spec: ColumnSpec, timezone: str = "UTC") -> tuple[pd.Series, np.ndarray]:
    """The column in its storage form and a mask of present values that failed conversion."""
    kind = spec.type
    if kind in ("integer", "real"):
        values = _bools_as_numbers(values)
    text = _text(values)
    present = text.notna().to_numpy()
    if kind == "text":
        return text, np.zeros(len(values), dtype=bool)
    if kind == "integer":
        integers = _integers(values, text)
        return integers.where(present), present & integers.isna().to_numpy()
    if kind == "real":
        number = _number(values, text)
        failed = ~np.isfinite(number.to_numpy(dtype=float, na_value=np.nan))
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
    # The index gives the frame its rows even when no column is carried.
    frame = pd.DataFrame(typed, index=range(n))
    return AttributeOutcome(frame=frame, bad_column=bad_column, bad_value=bad_value)

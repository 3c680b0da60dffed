import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd

from countydatasync.settings import ColumnSpec
from countydatasync.transform.attributes import convert_attributes, convert_column


def test_driver_types_become_storage_values() -> None:
    # What pyodbc / psycopg hand back: Decimal, datetime, bytes, None.
    raw = pd.DataFrame(
        {
            "V": pd.Series([Decimal("123456.78"), None, "$1,250.50"], dtype=object),
            "Y": pd.Series([1973, "1999", None], dtype=object),
            "D": pd.Series([dt.datetime(2020, 5, 1, 13, 30), "2021-02-03", "03/04/2019"], dtype=object),
            "N": pd.Series([b"SMITH, JOHN ", "  ", 98501], dtype=object),
        }
    )
    columns = [
        ColumnSpec(source="V", name="v", type="real"),
        ColumnSpec(source="Y", name="y", type="integer"),
        ColumnSpec(source="D", name="d", type="date"),
        ColumnSpec(source="N", name="n", type="text"),
    ]
    out = convert_attributes(raw, columns)
    assert not out.bad.any()
    assert out.frame["v"].tolist()[0] == 123456.78 and np.isnan(out.frame["v"].tolist()[1])
    assert out.frame["v"].tolist()[2] == 1250.5
    assert out.frame["y"].tolist()[:2] == [1973, 1999]
    assert out.frame["d"].tolist() == ["2020-05-01", "2021-02-03", "2019-03-04"]
    assert out.frame["n"].tolist()[0] == "SMITH, JOHN" and pd.isna(out.frame["n"].tolist()[1])
    assert out.frame["n"].tolist()[2] == "98501"


def test_bad_values_are_reported_with_column_and_value() -> None:
    raw = pd.DataFrame({"Y": ["1950", "unknown", "1960.5"], "D": ["2019-13-45", "2020-01-01", None]})
    out = convert_attributes(
        raw, [ColumnSpec(source="Y", name="year", type="integer"), ColumnSpec(source="D", name="sold", type="date")]
    )
    assert out.bad_column.tolist() == ["sold", "year", "year"]
    assert out.bad_value.tolist() == ["2019-13-45", "unknown", "1960.5"]


def test_timestamps_are_utc_in_geopackage_form() -> None:
    naive = pd.Series(["2024-07-01T12:00:00", None])
    text, failed = convert_column(naive, ColumnSpec(source="m", name="m", type="datetime"), "America/Los_Angeles")
    assert text.tolist() == ["2024-07-01T19:00:00.000Z", pd.NA]
    assert not failed.any()
    aware = pd.Series([pd.Timestamp("2024-01-01T00:00:00+01:00")])
    text, _ = convert_column(aware, ColumnSpec(source="m", name="m", type="datetime"))
    assert text.tolist() == ["2023-12-31T23:00:00.000Z"]


def test_a_date_keeps_its_day_whatever_the_source_timezone() -> None:
    # east of Greenwich, midnight local is the previous day in UTC: a date must not move
    values = pd.Series(["2020-05-01", "05/02/2020", None, "2020-05-03T00:00:00"])
    for zone in ("Europe/Berlin", "America/Los_Angeles", "UTC"):
        text, failed = convert_column(values, ColumnSpec(source="d", name="d", type="date"), zone)
        assert text.tolist() == ["2020-05-01", "2020-05-02", pd.NA, "2020-05-03"], zone
        assert not failed.any()


def test_numbers_in_text_with_currency_signs_and_bad_values() -> None:
    values = pd.Series(["$1,250.50", " 12 ", "N/A", "-3e2", ".5", "7.", None, "1 000", "inf", "12abc"])
    number, failed = convert_column(values, ColumnSpec(source="v", name="v", type="real"))
    got = number.tolist()
    assert [got[i] for i in (0, 1, 3, 4, 5, 7)] == [1250.5, 12.0, -300.0, 0.5, 7.0, 1000.0]
    assert all(np.isnan(got[i]) for i in (2, 6, 8, 9))
    assert failed.tolist() == [False, False, True, False, False, False, False, False, True, True]


def _convert(values: list, kind: str, timezone: str = "UTC") -> tuple[list, list]:
    out, failed = convert_column(pd.Series(values), ColumnSpec(source="x", name="x", type=kind), timezone)
    return out.tolist(), failed.tolist()


def test_whole_floats_past_int64_do_not_fail_the_column() -> None:
    assert _convert([1e20, 5.0], "real") == ([1e20, 5.0], [False, False])
    assert _convert([1e20, 250000.0], "text") == (["1e+20", "250000"], [False, False])
    assert _convert([1e20, 3.0], "integer") == ([pd.NA, 3], [True, False])
    assert _convert(["99999999999999999999", "1999"], "integer") == ([pd.NA, 1999], [True, False])


def test_impossible_calendar_days_are_bad_not_rolled_over() -> None:
    values = ["2021-02-30", "2021-04-31", "2019-02-29", "2020-02-29", "2021-02-30T10:00:00"]
    assert _convert(values, "date") == (
        [pd.NA, pd.NA, pd.NA, "2020-02-29", pd.NA],
        [True, True, True, False, True],
    )
    assert _convert(["2021-02-30 10:00:00", "2021-02-28 10:00:00"], "datetime") == (
        [pd.NA, "2021-02-28T10:00:00.000Z"],
        [True, False],
    )


def test_a_value_without_zone_is_read_in_the_source_timezone_whatever_its_neighbours() -> None:
    alone = _convert(["10/03/2020"], "datetime", "America/Los_Angeles")
    with_zoned = _convert(["10/03/2020", "2020-10-03T12:00:00Z"], "datetime", "America/Los_Angeles")
    assert alone == (["2020-10-03T07:00:00.000Z"], [False])
    assert with_zoned == (["2020-10-03T07:00:00.000Z", "2020-10-03T12:00:00.000Z"], [False, False])
    utc = dt.UTC
    objects = [dt.datetime(2020, 5, 1, 12), dt.datetime(2020, 5, 1, 12, tzinfo=utc)]
    assert _convert(objects, "datetime", "America/Los_Angeles") == (
        ["2020-05-01T19:00:00.000Z", "2020-05-01T12:00:00.000Z"],
        [False, False],
    )


def test_local_times_around_dst_changes_are_resolved_not_rejected() -> None:
    # 01:30 happens twice on 2020-11-01 (the first, PDT, is taken); 02:30 never happens on 2020-03-08 (03:00).
    values = ["2020-11-01 01:30:00", "2020-03-08 02:30:00", "2020-11-01T01:30:00Z"]
    assert _convert(values, "datetime", "America/Los_Angeles") == (
        ["2020-11-01T08:30:00.000Z", "2020-03-08T10:00:00.000Z", "2020-11-01T01:30:00.000Z"],
        [False, False, False],
    )


def test_floats_carried_as_text_lose_their_point_zero_value_by_value() -> None:
    assert _convert([12.0, 13.0], "text")[0] == ["12", "13"]
    assert _convert([12.0, 12.5], "text")[0] == ["12", "12.5"]


def test_integers_stay_exact() -> None:
    big = 9007199254740993  # 2**53 + 1: float64 would give ...992
    assert _convert([big], "integer") == ([big], [False])
    assert _convert([big, 2**63 - 1], "integer") == ([big, 2**63 - 1], [False, False])
    text = [str(big), str(-(2**63)), str(2**63), "12.0", "1e3", "1960.5", "+7"]
    assert _convert(text, "integer") == (
        [big, -(2**63), pd.NA, 12, 1000, pd.NA, 7],
        [False, False, True, False, False, True, False],
    )


def test_commas_count_only_as_thousands_separators() -> None:
    values = ["1,250.50", "$1,250,000", "-1,234", "1,5", "12,34,5", "1,2345", ",5"]
    number, failed = _convert(values, "real")
    assert number[:3] == [1250.5, 1250000.0, -1234.0] and all(np.isnan(v) for v in number[3:])
    assert failed == [False, False, False, True, True, True, True]
    assert _convert(["1,000", "1,5"], "integer") == ([1000, pd.NA], [False, True])


def test_local_times_at_the_ends_of_the_calendar_are_bad_values_not_a_failed_run() -> None:
    """9999-12-31 23:00 in Los Angeles is in the year 10000 in UTC, and 0001-01-01 00:30 in Tokyo in the
    year 0: pandas raised for the whole column, failing the run. Now only those values are bad."""
    values = pd.Series(["9999-12-31T23:00:00", "2020-01-01T10:00:00", None, "0001-01-01T00:30:00"], dtype=object)
    spec = ColumnSpec(source="Stamp", name="stamp", type="datetime")
    west, bad_west = convert_column(values, spec, "America/Los_Angeles")
    east, bad_east = convert_column(values, spec, "Asia/Tokyo")
    assert west.tolist()[1:] == ["2020-01-01T18:00:00.000Z", pd.NA, "0001-01-01T08:22:58.000Z"]
    assert bad_west.tolist() == [True, False, False, False]
    assert east.tolist()[:3] == ["9999-12-31T14:00:00.000Z", "2020-01-01T01:00:00.000Z", pd.NA]
    assert bad_east.tolist() == [False, False, False, True]


def test_booleans_carried_as_numbers_are_one_and_zero() -> None:
    """A SQL Server bit or a PostgreSQL boolean configured as an integer (or real) column had every value
    rejected as a bad attribute; SQLite itself stores booleans as 1 and 0."""
    for values in (pd.Series([True, False, None], dtype=object), pd.Series([True, False, None], dtype="boolean")):
        integers, bad = convert_column(values, ColumnSpec(source="Flag", name="flag", type="integer"))
        assert integers.tolist()[:2] == [1, 0] and pd.isna(integers.tolist()[2]) and not bad.any()
        reals, bad = convert_column(values, ColumnSpec(source="Flag", name="flag", type="real"))
        assert reals.tolist()[:2] == [1.0, 0.0] and not bad.any()


def test_a_value_converts_alike_beside_plain_or_messy_neighbours() -> None:
    """Plain numbers are cast directly and only the others cleaned: every value must come out as it does alone,
    and as it does among values that all need cleaning."""
    samples = {
        "integer": ["12", "-7", "0012", "+5", "1,250", "$3", "12.0", "1e3", "N/A", "12abc", " 42 ", None, "", "-0"]
        + ["999999999999999999", "9223372036854775807", "9223372036854775808", "99999999999999999999"],
        "real": ["1.5", "-2", ".5", "1.", "+1.5", "1e5", "$1,234.50", "1,5", "N/A", "1e400", None, " 7 ", "0.1"],
    }
    for kind, values in samples.items():
        spec = ColumnSpec(name="v", source="v", type=kind)
        together, failed = convert_column(pd.Series(values, dtype="string[pyarrow]"), spec)
        alone = [convert_column(pd.Series([v], dtype="string[pyarrow]"), spec) for v in values]
        assert _plain(together) == [_plain(a)[0] for a, _ in alone], kind
        assert failed.tolist() == [f[0] for _, f in alone], kind
        messy = [v for v in values if v is None or not v.strip().lstrip("-").isdigit()]
        among_messy, _ = convert_column(pd.Series(messy, dtype="string[pyarrow]"), spec)
        assert _plain(among_messy) == [_plain(together)[values.index(v)] for v in messy], kind


def _plain(values: pd.Series) -> list[object]:
    """Python values, None for any missing value (NaN, NA), so that lists compare."""
    return [None if pd.isna(v) else type(v).__name__ + ":" + repr(v) for v in values.tolist()]


def test_iso_text_reads_alike_in_a_clean_column_or_beside_a_value_arrow_cannot_read() -> None:
    """A column that Arrow's ISO 8601 cast reads whole takes that path; one value it cannot read sends the
    column through the formats and pandas. Each value must come out the same either way."""
    clean = {
        "date": ["2020-02-29", "0001-01-01", "9999-12-31", None, "1999-12-31"],
        "datetime": ["2020-11-01 01:30:00", "2020-03-08T02:30:00", "2021-01-01T10", "2021-01-01T10:00"]
        + ["2021-01-01T10:00:00.250", "2020-02-29 23:59:59", None],
    }
    for kind, values in clean.items():
        spec = ColumnSpec(name="v", source="v", type=kind)
        fast, fast_failed = convert_column(pd.Series(values, dtype="string[pyarrow]"), spec, "America/Los_Angeles")
        mixed = pd.Series([*values, "03/15/2021", "unknown"], dtype="string[pyarrow]")
        slow, slow_failed = convert_column(mixed, spec, "America/Los_Angeles")
        assert _plain(fast) == _plain(slow)[: len(values)], kind
        assert not fast_failed.any() and slow_failed.tolist() == [False] * (len(values) + 1) + [True], kind
    # Beside a time with an offset, a time without one is still read in the source's zone.
    spec = ColumnSpec(name="v", source="v", type="datetime")
    both, _ = convert_column(pd.Series(["2020-06-01T12:00:00", "2020-06-01T12:00:00Z"]), spec, "America/Los_Angeles")
    assert both.tolist() == ["2020-06-01T19:00:00.000Z", "2020-06-01T12:00:00.000Z"]


def test_dates_convert_alike_alone_among_clean_neighbours_or_in_a_messy_column() -> None:
    """Arrow's cast reads a column with a few values it refuses in parts, and leaves a messy column to the
    formats and pandas: each value must come out as it does alone."""
    odd = ["2019-13-45", "03/15/2021", "2021-02-30", "unknown", "2021-1-5", "2021-01-05T7:04:03", "2021-01-05T10Z"]
    clean = [f"20{i % 30:02d}-{i % 12 + 1:02d}-{i % 28 + 1:02d}T{i % 24:02d}:30:00" for i in range(300)]
    few = clean.copy()
    for position, value in zip([3, 150, 299], odd, strict=False):
        few[position] = value
    messy = [value for pair in zip(clean[:60], odd * 9, strict=False) for value in pair]
    spec = ColumnSpec(name="v", source="v", type="datetime")
    for values in (few, messy):
        together, failed = convert_column(pd.Series(values, dtype="string[pyarrow]"), spec, "America/Los_Angeles")
        alone = [convert_column(pd.Series([v], dtype="string[pyarrow]"), spec, "America/Los_Angeles") for v in values]
        assert _plain(together) == [_plain(a)[0] for a, _ in alone]
        assert failed.tolist() == [f[0] for _, f in alone]
    assert [convert_column(pd.Series([v]), spec)[1][0] for v in odd[:4]] == [True, False, True, True]


def test_offsets_in_any_iso_form_beside_local_times_are_read_not_a_failed_run() -> None:
    values = ["2021-01-05T10Z", "20210105T103000+0100", "2021-01-05 10:00", "2021-01-05T1030-0800"]
    spec = ColumnSpec(name="v", source="v", type="datetime")
    assert _convert(values, "datetime", "America/Los_Angeles") == (
        ["2021-01-05T10:00:00.000Z", "2021-01-05T09:30:00.000Z", "2021-01-05T18:00:00.000Z"]
        + ["2021-01-05T18:30:00.000Z"],
        [False] * 4,
    )
    assert convert_column(pd.Series(values), spec)[1].tolist() == [False] * 4

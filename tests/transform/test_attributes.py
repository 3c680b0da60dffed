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
    assert text.tolist() == ["2024-07-01T19:00:00.000Z", None]
    assert not failed.any()
    aware = pd.Series([pd.Timestamp("2024-01-01T00:00:00+01:00")])
    text, _ = convert_column(aware, ColumnSpec(source="m", name="m", type="datetime"))
    assert text.tolist() == ["2023-12-31T23:00:00.000Z"]


def test_a_date_keeps_its_day_whatever_the_source_timezone() -> None:
    # east of Greenwich, midnight local is the previous day in UTC: a date must not move
    values = pd.Series(["2020-05-01", "05/02/2020", None, "2020-05-03T00:00:00"])
    for zone in ("Europe/Berlin", "America/Los_Angeles", "UTC"):
        text, failed = convert_column(values, ColumnSpec(source="d", name="d", type="date"), zone)
        assert text.tolist() == ["2020-05-01", "2020-05-02", None, "2020-05-03"], zone
        assert not failed.any()


def test_numbers_in_text_with_currency_signs_and_bad_values() -> None:
    values = pd.Series(["$1,250.50", " 12 ", "N/A", "-3e2", ".5", "7.", None, "1 000", "inf", "12abc"])
    number, failed = convert_column(values, ColumnSpec(source="v", name="v", type="real"))
    got = number.tolist()
    assert [got[i] for i in (0, 1, 3, 4, 5, 7)] == [1250.5, 12.0, -300.0, 0.5, 7.0, 1000.0]
    assert all(np.isnan(got[i]) for i in (2, 6, 8, 9))
    assert failed.tolist() == [False, False, True, False, False, False, False, False, True, True]

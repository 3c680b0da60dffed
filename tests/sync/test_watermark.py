"""Watermarks over modified timestamps written as text with UTC offsets (issue: incremental sync)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from countydatasync.sync import run_sync
from countydatasync.transform.batch import modified_stamps

from .helpers import query


def test_text_timestamps_are_read_as_the_wall_clock_they_spell() -> None:
    text = pd.Series(
        ["2020-01-15T10:00:00-08:00", "2020-07-15 10:00:00.5+0530", "2027-01-01T00:00:00Z", "2020-01-15", None, "x"]
    )
    assert modified_stamps(text, "T").tolist()[:4] == [
        pd.Timestamp("2020-01-15 10:00:00"),
        pd.Timestamp("2020-07-15 10:00:00.5"),
        pd.Timestamp("2027-01-01 00:00:00"),
        pd.Timestamp("2020-01-15 00:00:00"),  # a date's day is not taken for an offset
    ]
    assert modified_stamps(text, "T").isna().tolist()[4:] == [True, True]


def test_a_pacific_time_master_with_offsets_syncs_and_finds_its_edits(source_copy: Path, make_settings) -> None:
    """A master that writes local time with its offset (-08:00 in winter, -07:00 in summer), and a few
    rows in UTC, used to fail every run ("Mixed timezones detected")."""
    con = sqlite3.connect(source_copy)
    with con:
        con.execute(
            "UPDATE MasterParcels SET LastModified = LastModified || CASE WHEN rowid % 97 = 0 THEN 'Z' "
            "WHEN substr(LastModified, 6, 2) BETWEEN '04' AND '10' THEN '-07:00' ELSE '-08:00' END"
        )
    settings = make_settings(source_copy, source={"modified_column": "LastModified"})
    first = run_sync(settings)
    assert first.status == "succeeded" and first.inserted > 2_900
    pins = [r[0] for r in con.execute("SELECT PIN FROM MasterParcels WHERE rowid IN (5, 6) ORDER BY rowid")]
    with con:
        con.execute(
            "UPDATE MasterParcels SET OwnerName = 'NEW OWNER', LastModified = CASE rowid WHEN 5 THEN "
            "'2030-06-01T08:00:00-07:00' ELSE '2030-06-01T09:00:00Z' END WHERE rowid IN (5, 6)"
        )
    con.close()
    second = run_sync(settings)
    assert second.mode == "incremental" and second.updated == 2 and second.inserted == 0
    owners = query(settings.output.working_path, "SELECT owner_name FROM parcels WHERE pin IN (?, ?)", tuple(pins))
    assert owners["owner_name"].tolist() == ["NEW OWNER", "NEW OWNER"]
    state = query(settings.output.working_path, "SELECT value FROM sync_state WHERE name = 'watermark'")
    assert state["value"].tolist() == ["2030-06-01T09:00:00"]
    assert run_sync(settings).updated == 0  # the watermark moved past both edits


def test_a_quiet_run_counts_its_re_read_errors_as_already_in_error(source_copy: Path, make_settings) -> None:
    """Parcels in error are re-read by every watermark run; the run tells them apart from new rejections,
    which is what the rejection alert looks at."""
    settings = make_settings(source_copy)
    first = run_sync(settings)
    assert first.rejected > 0 and first.still_rejected == 0
    con = sqlite3.connect(source_copy)
    with con:  # one more bad parcel at the source
        con.execute(
            "UPDATE MasterParcels SET Shape = X'00', LastModified = '2031-01-01T00:00:00' WHERE PIN = "
            "(SELECT PIN FROM MasterParcels WHERE PIN IS NOT NULL AND length(Shape) > 40 "
            "GROUP BY PIN HAVING count(*) = 1 LIMIT 1)"
        )
    con.close()
    second = run_sync(settings)
    assert second.rejected - second.still_rejected == 1
    assert second.still_rejected > 0 and second.extracted - second.rejected <= 1  # nothing else was read

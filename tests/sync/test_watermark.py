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

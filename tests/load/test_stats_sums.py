"""Aggregates kept by differences, where floating point leaves traces that a full rebuild does not."""

from __future__ import annotations

import sqlite3

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from ..sync.helpers import query
from ..sync.test_incremental import fresh_source, two_single_row_pins

GROUP = "SELECT parcel_count, acres_sum, acres_count, acres_mean FROM aggregates WHERE value = 'ODD'"


def test_a_measure_left_without_values_sums_to_zero_as_a_rebuild_gives(tmp_path_factory) -> None:
    """0.1 + 0.2 - 0.1 - 0.2 is 2.8e-17 in floating point: a group whose measure lost its last value showed
    that as its sum, over no values at all, where a rebuild has 0."""
    source = fresh_source(tmp_path_factory, "zero_sum")
    con = sqlite3.connect(source)
    pins = two_single_row_pins(con)
    with con:
        con.execute("UPDATE MasterParcels SET Zoning = 'ODD' WHERE PIN IN (?, ?)", pins)
        con.executemany("UPDATE MasterParcels SET Acres = ? WHERE PIN = ?", [(0.1, pins[0]), (0.2, pins[1])])

    def make(name: str) -> Settings:
        return Settings(
            source={"url": f"sqlite:///{source}", "modified_column": ""},
            stats={"dimensions": ["zoning"], "measures": ["acres"]},
            output={"directory": source.parent / name},
        )

    incremental = make("incremental")
    run_sync(incremental)
    for pin in pins:  # one run each: their values leave the sum in another order than they came in
        with con:
            con.execute("UPDATE MasterParcels SET Acres = NULL WHERE PIN = ?", (pin,))
        assert run_sync(incremental).updated == 1
    con.close()
    rebuilt = make("rebuilt")
    run_sync(rebuilt)
    expected = [{"parcel_count": 2, "acres_sum": 0.0, "acres_count": 0, "acres_mean": None}]
    assert query(rebuilt.output.stats_path, GROUP).to_dict("records") == expected
    assert query(incremental.output.stats_path, GROUP).to_dict("records") == expected

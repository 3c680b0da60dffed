"""Aggregates kept by deltas equal a GROUP BY of the working DB, whatever happened to the stats DB."""

from __future__ import annotations

import sqlite3

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from .edits import apply_edit
from .helpers import query
from .test_incremental import assert_same, fresh_source, published, two_single_row_pins


def test_a_real_dimension_labels_new_and_stored_parcels_alike(tmp_path_factory) -> None:
    """A REAL group as a batch spells it (5e-05) and as SQLite does (5.0e-05) must be one group: else an
    updated parcel leaves a group it never entered and joins another."""
    source = fresh_source(tmp_path_factory, "realdim")
    con = sqlite3.connect(source)
    with con:
        pin = two_single_row_pins(con)[0]
        con.execute("UPDATE MasterParcels SET Acres = 0.00005 WHERE PIN = ?", (pin,))

    def make(name: str) -> Settings:
        return Settings(
            source={"url": f"sqlite:///{source}", "modified_column": ""},
            stats={"dimensions": ["land_use", "acres"], "measures": ["land_value"]},
            output={"directory": source.parent / name},
        )

    tiny = "SELECT value, parcel_count FROM aggregates WHERE dimension = 'acres' AND CAST(value AS REAL) < 0.001"
    incremental, forced = make("incremental"), make("forced")
    run_sync(incremental)
    run_sync(forced)
    with con:
        con.execute("UPDATE MasterParcels SET OwnerName = 'NEW OWNER' WHERE PIN = ?", (pin,))
    con.close()
    assert run_sync(incremental).updated == 1
    run_sync(forced, full=True)  # over existing staging data: aggregates recomputed with GROUP BY
    rebuilt = make("rebuilt")
    run_sync(rebuilt)
    for settings in (incremental, forced, rebuilt):
        assert query(settings.output.stats_path, tiny).to_dict("records") == [{"value": "5e-05", "parcel_count": 1}]
    assert_same(published(incremental), published(rebuilt))
    assert_same(published(forced), published(rebuilt))


def test_a_lost_stats_db_is_recomputed_and_run_ids_go_on(tmp_path_factory) -> None:
    """The stats DB deleted, the geo and working DBs intact: the next run must not add its own differences
    to empty aggregates, nor start the run ids again at 1 under a change log that has them."""
    source = fresh_source(tmp_path_factory, "lost")
    common = {"url": f"sqlite:///{source}", "batch_size": 64, "modified_column": "LastModified"}
    incremental = Settings(source=common, output={"directory": source.parent / "incremental"})
    assert run_sync(incremental).run_id == 1
    incremental.output.stats_path.unlink()
    apply_edit(source, "attribute", 5)
    result = run_sync(incremental)
    assert (result.mode, result.run_id, result.updated, result.unchanged) == ("incremental", 2, 1, 1)
    assert query(incremental.output.stats_path, "SELECT run_id FROM runs")["run_id"].tolist() == [2]
    totals = query(incremental.output.stats_path, "SELECT dimension, sum(parcel_count) AS n FROM aggregates GROUP BY 1")
    assert dict(zip(totals["dimension"], totals["n"], strict=True)) == dict.fromkeys(
        ["land_use", "neighborhood", "tax_district", "zoning"], 391
    )
    rebuilt = Settings(source=common, output={"directory": source.parent / "rebuilt"})
    run_sync(rebuilt)
    assert_same(published(incremental), published(rebuilt))


def test_a_huge_value_that_comes_and_goes_leaves_the_sums_a_rebuild_gives(source_copy, make_settings) -> None:
    """A total value of 2**62 (a typo at the source) swallowed the group's cents in floating point; taking it
    out again by difference did not give them back (1,050,624 against 1,050,000). Such runs recompute."""
    settings = make_settings(source_copy)
    run_sync(settings)
    con = sqlite3.connect(source_copy)
    pin = con.execute(
        "SELECT PIN FROM MasterParcels WHERE PIN IS NOT NULL AND length(Shape) > 40 GROUP BY PIN "
        "HAVING count(*) = 1 LIMIT 1"
    ).fetchone()[0]
    for value, stamp in ((2.0**62, "2031-01-01T00:00:00"), (123456.78, "2031-01-02T00:00:00")):
        with con:
            con.execute("UPDATE MasterParcels SET TotalValue = ?, LastModified = ? WHERE PIN = ?", (value, stamp, pin))
        run_sync(settings)
    con.close()
    rebuilt = make_settings(source_copy, output={"directory": settings.output.directory.parent / "rebuilt"})
    run_sync(rebuilt)
    sql = "SELECT dimension, value, total_value_sum FROM aggregates ORDER BY dimension, value"
    incremental, fresh = query(settings.output.stats_path, sql), query(rebuilt.output.stats_path, sql)
    assert incremental[["dimension", "value"]].equals(fresh[["dimension", "value"]])
    gap = (incremental["total_value_sum"] - fresh["total_value_sum"]).abs()
    assert (gap <= 1e-9 * fresh["total_value_sum"].abs()).all(), gap.max()  # summation order only


def test_a_county_without_statistics_syncs_again_after_a_run_that_rejected_everything(
    source_copy, make_settings
) -> None:
    """With no stats dimensions and measures, a second run over parcels a first run rejected failed on
    "SELECT  FROM parcels" (no columns to read)."""
    settings = make_settings(source_copy, stats={"dimensions": [], "measures": []})
    con = sqlite3.connect(source_copy)
    with con:
        con.execute("UPDATE MasterParcels SET Shape = X'00'")
    con.close()
    first = run_sync(settings)
    assert first.rejected == first.extracted > 0
    second = run_sync(settings)
    assert second.rejected == second.extracted and second.status == "succeeded"

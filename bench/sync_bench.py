"""Benchmark: full sync, incremental sync and GDAL's ogr2ogr on the same sample parcels, in one run.

    .venv/bin/python bench/sync_bench.py 100000 1000000

For each size it makes (or reuses) a sample county, then measures, each in its own process:
  ogr2ogr     SQLite MasterParcels -> GeoPackage with GDAL's command-line tool (the reference)
  full sync   `countydatasync sync` (the shipped command) into all three staging databases from empty
  incremental the same command after 1% of the parcels changed (attributes and geometry), 0.1% deleted, 0.1% inserted
  floor       bench/incremental_floor.py on the same edit: the least any incremental run must do, hand-written
  revaluation an incremental run after half the parcels got a new land value (and timestamp)
and prints seconds, parcels/s, peak memory of the whole process tree (PSS, sampled every 50 ms) and the ratios.
Each is run three times unobserved (the median time is reported) and once more with its memory sampled
(see measure.py).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import shapely
from measure import measure, sync_command  # bench/measure.py, beside this script

from countydatasync.sample.county import SampleCounty, write_sample_county

ROOT = Path(__file__).resolve().parent
REPEAT = 3  # timed runs per command; the median is reported


def edit_source(path: Path, parcels: int) -> None:
    """1% changed (attributes and geometry), 0.1% deleted, 0.1% inserted; all with a new timestamp."""
    con = sqlite3.connect(path)
    con.create_function(
        "shift",
        1,
        lambda wkb: shapely.to_wkb(shapely.transform(shapely.from_wkb(wkb), lambda xy: xy + 1.0)) if wkb else wkb,
        deterministic=True,
    )
    with con:
        con.execute(
            "UPDATE MasterParcels SET OwnerName = OwnerName || ' TRUST', LandValue = LandValue + 1, "
            "Shape = CASE WHEN rowid % 2 = 0 THEN shift(Shape) ELSE Shape END, "
            "LastModified = '2027-01-01T00:00:00' WHERE rowid % 100 = 3 AND Shape IS NOT NULL "
            "AND length(Shape) > 40"
        )
        con.execute("DELETE FROM MasterParcels WHERE rowid % 1000 = 7")
        con.execute(
            "INSERT INTO MasterParcels SELECT 'N' || PIN, OwnerName, OwnerMailAddress, SitusAddress, "
            "SitusCity, SitusZip, LandUseCode, LandUseDesc, Zoning, Neighborhood, TaxDistrict, "
            "SchoolDistrict, Subdivision, Acres, LandValue, ImprValue, TotalValue, YearBuilt, BldgSqFt, "
            "LastSaleDate, LastSalePrice, LegalDesc, ExemptionCode, TaxYear, '2027-01-01T00:00:00', Shape "
            "FROM MasterParcels WHERE rowid % 1000 = 11"
        )
    con.close()


def revalue_source(path: Path) -> None:
    """A revaluation: every second parcel gets a new land value and timestamp."""
    con = sqlite3.connect(path)
    with con:
        con.execute(
            "UPDATE MasterParcels SET LandValue = LandValue + 100, LastModified = '2027-02-01T00:00:00' "
            "WHERE rowid % 2 = 0"
        )
    con.close()


def bench(parcels: int, work: Path) -> dict[str, float]:
    cached = ROOT / "results" / f"county_{parcels}.sqlite"
    if not cached.exists():
        write_sample_county(cached, SampleCounty(parcels=parcels))
    source = work / "source.sqlite"
    shutil.copyfile(cached, source)
    reference = work / "ogr2ogr.gpkg"
    ref_t, ref_rss, _ = measure(
        ["ogr2ogr", "-f", "GPKG", str(reference), str(source), "masterparcels"]
        + ["-nln", "parcels", "-nlt", "PROMOTE_TO_MULTI"],
        reset=reference.unlink,
        repeat=REPEAT,
    )
    staging, before = work / "staging", work / "staging_before_edit"
    sync = sync_command(work, {"url": f"sqlite:///{source}"})
    full_t, full_rss, full_out = measure(sync, reset=lambda: shutil.rmtree(staging), repeat=REPEAT)
    edit_source(source, parcels)
    shutil.copytree(staging, before)

    def back_to_before_edit() -> None:
        shutil.rmtree(staging)
        shutil.copytree(before, staging)

    inc_t, inc_rss, inc_out = measure(sync, reset=back_to_before_edit, repeat=REPEAT)
    # measure() resets between runs, not before the first: each command starts from the state before the edit.
    back_to_before_edit()
    floor_t, floor_rss, _ = measure(
        [sys.executable, str(ROOT / "incremental_floor.py"), str(source), str(staging)],
        reset=back_to_before_edit,
        repeat=REPEAT,
    )
    # In place: the staging databases were built from this file, and another file is another source, which
    # a run reads through in full (see "Settings changed between runs" in docs/architecture.md).
    revalue_source(source)
    back_to_before_edit()
    mass_t, mass_rss, mass_out = measure(sync, reset=back_to_before_edit, repeat=REPEAT)
    return {
        "parcels": parcels,
        "ogr2ogr_s": ref_t,
        "ogr2ogr_pss_mib": ref_rss,
        "full_s": full_t,
        "full_pss_mib": full_rss,
        "incremental_s": inc_t,
        "incremental_pss_mib": inc_rss,
        "full_vs_ogr2ogr": full_t / ref_t,
        "incremental_vs_full": inc_t / full_t,
        "floor_s": floor_t,
        "floor_pss_mib": floor_rss,
        "floor_vs_full": floor_t / full_t,
        "revaluation_s": mass_t,
        "revaluation_pss_mib": mass_rss,
        "revaluation_vs_full": mass_t / full_t,
        "revaluation_run": mass_out.strip(),
        "full_run": full_out.strip(),
        "incremental_run": inc_out.strip(),
    }


def main(sizes: list[int]) -> None:
    (ROOT / "results").mkdir(exist_ok=True)
    rows = []
    for parcels in sizes:
        with tempfile.TemporaryDirectory(dir=ROOT / "results") as tmp:
            rows.append(bench(parcels, Path(tmp)))
    print(f"{'parcels':>9} {'tool':<12} {'seconds':>8} {'parcels/s':>10} {'peak PSS MiB':>13} {'ratio':>8}")
    for r in rows:
        n = r["parcels"]
        for tool, key, ratio in [
            ("ogr2ogr", "ogr2ogr", "1.00"),
            ("full sync", "full", f"{r['full_vs_ogr2ogr']:.2f} vs ogr2ogr"),
            ("incremental", "incremental", f"{r['incremental_vs_full']:.2f} vs full"),
            ("floor", "floor", f"{r['floor_vs_full']:.2f} vs full"),
            ("revaluation", "revaluation", f"{r['revaluation_vs_full']:.2f} vs full"),
        ]:
            seconds, memory = r[f"{key}_s"], r[f"{key}_pss_mib"]
            print(f"{n:>9,} {tool:<12} {seconds:>8.1f} {n / seconds:>10,.0f} {memory:>13.0f} {ratio:>8}")
    (ROOT / "results" / "sync_bench.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])

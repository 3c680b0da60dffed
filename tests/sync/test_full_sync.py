"""End to end on the sample county: SQLite MasterParcels -> GeoPackage + stats DB + working DB."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from countydatasync.sync import run_sync
from countydatasync.sync.run import FAILED_RUNS
from countydatasync.transform import Reason

from .helpers import file_digests, integrity_ok, query


@pytest.fixture
def synced(sample_db: Path, make_settings):
    settings = make_settings(sample_db)
    return settings, run_sync(settings)


def test_counts_reconcile_and_are_kept_in_the_run_history(synced, sample_db: Path) -> None:
    settings, result = synced
    rows = query(sample_db, "SELECT count(*) AS n FROM MasterParcels")["n"][0]
    assert result.extracted == rows == 3_000
    assert result.inserted + result.rejected == rows and result.reconciles
    runs = query(settings.output.stats_path, "SELECT * FROM runs")
    assert runs.loc[0, ["extracted", "inserted", "rejected", "status"]].tolist() == [
        rows,
        result.inserted,
        result.rejected,
        "succeeded",
    ]
    features = pyogrio.read_info(settings.output.geo_path, layer="parcels")["features"]
    working = query(settings.output.working_path, "SELECT sync_status, count(*) AS n FROM parcels GROUP BY 1")
    assert features == result.inserted == working.set_index("sync_status")["n"]["synced"]


def test_geopackage_crs_geometry_and_spatial_index(synced, sample_db: Path, validate_gpkg) -> None:
    settings, _ = synced
    geo = settings.output.geo_path
    info = pyogrio.read_info(geo, layer="parcels")
    assert info["crs"] == "EPSG:2927" and info["geometry_type"] == "MultiPolygon"
    frame = pyogrio.read_dataframe(geo, layer="parcels")
    source = query(sample_db, "SELECT PIN, Shape FROM MasterParcels")
    source = source[source["PIN"].isin(frame["pin"])].drop_duplicates("PIN").set_index("PIN")
    plain = frame[frame["sync_note"].isna()].set_index("pin")
    expected = shapely.from_wkb(source.loc[plain.index, "Shape"].to_numpy())
    got = plain.geometry.to_numpy()
    assert shapely.equals_exact(
        shapely.normalize(got),
        shapely.normalize(
            np.array([g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in expected])
        ),
        tolerance=1e-6,
    ).all()
    con = sqlite3.connect(geo)
    assert con.execute("SELECT rtreecheck('rtree_parcels_geom')").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM rtree_parcels_geom").fetchone()[0] == len(frame)
    # The R-tree answers a window query exactly like a brute-force scan of the geometries.
    minx, miny, maxx, maxy = frame.total_bounds
    window = shapely.box(
        minx + (maxx - minx) * 0.3, miny + (maxy - miny) * 0.3, minx + (maxx - minx) * 0.5, miny + (maxy - miny) * 0.6
    )
    ids = {
        r[0]
        for r in con.execute(
            "SELECT id FROM rtree_parcels_geom WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?",
            (window.bounds[0], window.bounds[2], window.bounds[1], window.bounds[3]),
        )
    }
    fids = pyogrio.read_dataframe(geo, layer="parcels", fid_as_index=True).index.to_numpy()
    boxes = shapely.box(*shapely.bounds(frame.geometry.to_numpy()).T)
    assert ids == set(fids[shapely.intersects(boxes, window)])
    extent = con.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents").fetchone()
    assert np.allclose(extent, frame.total_bounds)
    assert con.execute("SELECT feature_count FROM gpkg_ogr_contents").fetchone()[0] == len(frame)
    unique = [r for r in con.execute("PRAGMA index_list('parcels')") if r[2] == 1]
    assert unique, "the parcel key must be UNIQUE"
    con.close()
    validate_gpkg(geo)
    ogrinfo = subprocess.run(["ogrinfo", "-so", "-ro", str(geo), "parcels"], capture_output=True, text=True)
    assert ogrinfo.returncode == 0 and f"Feature Count: {len(frame)}" in ogrinfo.stdout


def test_aggregates_equal_a_pandas_groupby_of_the_source(synced, sample_db: Path) -> None:
    settings, _ = synced
    loaded = pyogrio.read_dataframe(settings.output.geo_path, layer="parcels", read_geometry=False)
    source = query(sample_db, "SELECT * FROM MasterParcels").drop_duplicates("PIN", keep=False)
    source = source[source["PIN"].isin(loaded["pin"])]
    assert len(source) == len(loaded)
    aggregates = query(settings.output.stats_path, "SELECT * FROM aggregates").set_index(["dimension", "value"])
    for dimension, column in [
        ("land_use", "LandUseCode"),
        ("zoning", "Zoning"),
        ("neighborhood", "Neighborhood"),
        ("tax_district", "TaxDistrict"),
    ]:
        numbers = source[["Acres", "LandValue", "ImprValue", "TotalValue"]].apply(pd.to_numeric)
        expected = numbers.groupby(source[column].fillna("")).agg(["sum", "count", "mean"])
        got = aggregates.loc[dimension]
        assert sorted(got.index) == sorted(expected.index)
        assert got["parcel_count"].to_dict() == source[column].fillna("").value_counts().to_dict()
        for measure, src in [
            ("acres", "Acres"),
            ("land_value", "LandValue"),
            ("improvement_value", "ImprValue"),
            ("total_value", "TotalValue"),
        ]:
            assert np.allclose(got.loc[expected.index, f"{measure}_sum"], expected[(src, "sum")], rtol=1e-9)
            assert np.allclose(got.loc[expected.index, f"{measure}_mean"], expected[(src, "mean")], rtol=1e-9)


def test_each_bad_record_kind_ends_in_the_errors_table(synced) -> None:
    settings, result = synced
    errors = query(settings.output.working_path, "SELECT * FROM errors")
    # The sample county has no keys with a NUL character (tests/transform/test_messy_regressions.py has them).
    assert set(errors["reason"]) == {r.value for r in Reason} - {Reason.UNKNOWN_SRID.value, Reason.INVALID_KEY.value}
    assert (errors["severity"] == "error").sum() == result.rejected
    assert (errors["severity"] == "warning").sum() == result.repaired
    assert errors.loc[errors["reason"] == "null_key", "pin"].isna().all()
    bad = errors[errors["reason"] == "bad_attribute"]
    assert bad["message"].str.contains("column year_built|column land_value|column last_sale_date").all()
    status = query(
        settings.output.working_path, "SELECT pin, sync_status, sync_reason FROM parcels WHERE sync_status = 'error'"
    )
    rejected_keys = set(errors.loc[(errors["severity"] == "error") & errors["pin"].notna(), "pin"])
    assert set(status["pin"]) == rejected_keys


def test_a_failing_run_leaves_the_previous_outputs_byte_identical(synced) -> None:
    settings, _ = synced
    before = file_digests(settings)

    def crash(stage: str, done: int, total: int | None) -> None:
        if done:
            raise RuntimeError("simulated crash after the first batch")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sync(settings, full=True, progress=crash)
    assert file_digests(settings) == before
    failures = (settings.output.directory / FAILED_RUNS).read_text().splitlines()
    assert len(failures) == 1 and "simulated crash" in failures[0]


KILL_SCRIPT = """
import sys, time, pathlib
from countydatasync.settings import Settings
from countydatasync.sync import run_sync
settings = Settings.model_validate_json(pathlib.Path(sys.argv[1]).read_text())
marker = pathlib.Path(sys.argv[2])
def progress(stage, done, total):
    if done:
        marker.write_text(stage)
        time.sleep(60)
if __name__ == "__main__":
    run_sync(settings, full=True, progress=progress)
"""


def test_a_killed_run_leaves_the_previous_outputs_intact(synced, tmp_path: Path) -> None:
    settings, _ = synced
    before = file_digests(settings)
    (tmp_path / "settings.json").write_text(settings.model_dump_json())
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "settings.json"), str(marker)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the sync never got past its first batch"
    child.send_signal(signal.SIGKILL)
    child.wait()
    for path in (settings.output.working_path, settings.output.geo_path, settings.output.stats_path):
        assert integrity_ok(path)  # opening rolls back the hot journal the killed run left
    assert file_digests(settings) == before
    again = run_sync(settings)  # and the next run completes normally
    assert again.status == "succeeded" and again.unchanged == again.extracted - again.rejected

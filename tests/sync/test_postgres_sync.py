"""End to end from PostGIS: the sample county in a native geometry column -> the three staging databases,
checked against the same county synced from its SQLite file."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pyogrio
import pytest
import shapely

from countydatasync.settings import Settings
from countydatasync.sync import run_sync

from .helpers import query

pytestmark = pytest.mark.postgres


def _pg_settings(pg_url: str, schema: str, staging: Path) -> Settings:
    return Settings(
        source={"url": pg_url, "db_schema": schema, "geometry_encoding": "native", "batch_size": 700},
        output={"directory": staging},
    )


def test_postgis_sync_matches_the_sqlite_sync_of_the_same_county(
    pg_url: str, pg_sample: str, sample_db: Path, make_settings, tmp_path: Path
) -> None:
    pg_settings = _pg_settings(pg_url, pg_sample, tmp_path / "from_pg")
    result = run_sync(pg_settings)
    assert result.status == "succeeded" and result.reconciles
    assert result.extracted == 3_000 and result.inserted > 2_900
    assert "postgresql" in result.source and "MasterParcels" in result.source

    lite_settings = make_settings(sample_db)
    lite = run_sync(lite_settings)
    from_pg = pyogrio.read_dataframe(pg_settings.output.geo_path, layer="parcels").set_index("pin")
    from_lite = pyogrio.read_dataframe(lite_settings.output.geo_path, layer="parcels").set_index("pin")
    # PostgreSQL's typed columns hold NULL where the SQLite sample has 'unknown' or 'N/A', so those rows
    # load from PostGIS and are rejected from SQLite; every other outcome is the same.
    errors = query(lite_settings.output.working_path, "SELECT pin, reason FROM errors WHERE severity = 'error'")
    bad_attribute = set(errors.loc[errors["reason"] == "bad_attribute", "pin"])
    assert set(from_pg.index) - set(from_lite.index) == bad_attribute
    assert set(from_lite.index) <= set(from_pg.index)
    assert result.inserted == lite.inserted + len(bad_attribute)
    common = from_lite.index
    assert shapely.equals_exact(
        shapely.normalize(from_pg.loc[common].geometry.to_numpy()),
        shapely.normalize(from_lite.geometry.to_numpy()),
        tolerance=1e-6,
    ).all()
    assert (from_pg.loc[common, "owner_name"] == from_lite["owner_name"]).all()
    assert (from_pg.loc[common, "total_value"] - from_lite["total_value"]).abs().max() < 0.005
    runs = query(pg_settings.output.stats_path, "SELECT source, extracted FROM runs")
    assert runs["extracted"].tolist() == [3_000]


def test_incremental_sync_from_postgis_picks_up_edits_and_deletes(
    pg_url: str, pg_conninfo: str, pg_schema: str, tmp_path: Path
) -> None:
    from countydatasync.sample.county import SampleCounty
    from countydatasync.sample.postgis import load_sample_postgis

    load_sample_postgis(pg_conninfo, SampleCounty(parcels=1_000, seed=3), schema=pg_schema)
    settings = _pg_settings(pg_url, pg_schema, tmp_path / "staging")
    first = run_sync(settings)
    loaded = pyogrio.read_dataframe(settings.output.geo_path, layer="parcels", read_geometry=False)
    edited, deleted = loaded["pin"].iloc[10], loaded["pin"].iloc[20]
    with psycopg.connect(pg_conninfo, autocommit=True) as con:
        table = f'{pg_schema}."MasterParcels"'
        con.execute(
            f'UPDATE {table} SET "OwnerName" = %s, "LastModified" = now() WHERE "PIN" = %s',
            ("NEW OWNER", edited),
        )
        con.execute(f'DELETE FROM {table} WHERE "PIN" = %s', (deleted,))
    second = run_sync(settings)
    assert second.status == "succeeded" and second.mode == "incremental"
    assert second.updated == 1 and second.deleted == 1 and second.inserted == 0
    after = pyogrio.read_dataframe(settings.output.geo_path, layer="parcels", read_geometry=False).set_index("pin")
    assert after.loc[edited, "owner_name"] == "NEW OWNER"
    assert deleted not in after.index
    assert len(after) == first.inserted - 1

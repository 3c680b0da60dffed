"""Staging databases made once per session by the real pipeline from a small sample county.

Three things are added that the sample county lacks: a parcel whose owner is an HTML payload (put into the
source, so it travels through the sync like any name); a few parcels whose geometry broke after the
first sync, so a second (incremental) sync keeps their last good shape on the map with status error; and a
few parcels changed at the source after that and marked pending by the status check.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.settings import Settings
from countydatasync.sync import run_sync
from countydatasync.sync.status import mark_pending
from countydatasync.web import create_app

SAMPLE_PARCELS = 2_000
XSS_OWNER = "<img src=x onerror=alert(1)>"
TOKEN = "test-token-4f1c9a"  # noqa: S105 (a test fixture, not a secret)


@dataclass(frozen=True)
class Staging:
    settings: Settings
    xss_key: str
    pending_keys: tuple[str, ...]
    broken_keys: tuple[str, ...]

    def working(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.settings.output.working_path}?mode=ro", uri=True)


def make_settings(source: Path, staging: Path, **web: object) -> Settings:
    return Settings(source={"url": f"sqlite:///{source}"}, output={"directory": staging}, web={"token": TOKEN, **web})


@pytest.fixture(scope="session")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Staging:
    root = tmp_path_factory.mktemp("county")
    source = write_sample_county(root / "county.sqlite", SampleCounty(parcels=SAMPLE_PARCELS))
    with sqlite3.connect(source) as con:
        xss_key = con.execute(
            "SELECT PIN FROM MasterParcels WHERE PIN IS NOT NULL ORDER BY rowid LIMIT 1 OFFSET 1000"
        ).fetchone()[0]
        con.execute("UPDATE MasterParcels SET OwnerName = ? WHERE PIN = ?", (XSS_OWNER, xss_key))
    settings = make_settings(source, root / "staging")
    result = run_sync(settings)
    assert result.status == "succeeded" and result.rejected > 0
    with sqlite3.connect(source) as con:
        broken = tuple(
            k
            for (k,) in con.execute(
                "SELECT PIN FROM MasterParcels WHERE PIN IS NOT NULL AND Shape IS NOT NULL AND PIN != ? "
                "ORDER BY rowid LIMIT 3 OFFSET 1500",
                (xss_key,),
            )
        )
        con.executemany(
            "UPDATE MasterParcels SET Shape = NULL, LastModified = '2030-01-01T00:00:00' WHERE PIN = ?",
            [(k,) for k in broken],
        )
        # A reassessment of the payload parcel, so it has a change history.
        con.execute(
            "UPDATE MasterParcels SET LandValue = LandValue + 1000, LastModified = '2030-01-01T00:00:00' WHERE PIN = ?",
            (xss_key,),
        )
    second = run_sync(settings)
    assert second.status == "succeeded" and second.mode == "incremental"
    with sqlite3.connect(settings.output.working_path) as con:
        changed = [
            k
            for (k,) in con.execute(
                "SELECT pin FROM parcels WHERE in_geo = 1 AND sync_status = 'synced' AND pin != ? "
                "ORDER BY pin LIMIT 25 OFFSET 500",
                (xss_key,),
            )
        ]
    with sqlite3.connect(source) as con:
        con.executemany(
            "UPDATE MasterParcels SET ImprValue = ImprValue + 1, LastModified = '2031-01-01T00:00:00' WHERE PIN = ?",
            [(k,) for k in changed],
        )
    mark_pending(settings)  # what `countydatasync status` does
    with sqlite3.connect(f"file:{settings.output.working_path}?mode=ro", uri=True) as con:
        pending = tuple(k for (k,) in con.execute("SELECT pin FROM parcels WHERE sync_status = 'pending'"))
    assert sorted(pending) == sorted(changed)
    return Staging(settings, xss_key, pending, broken)


@pytest.fixture(scope="session")
def client(staging: Staging) -> Iterator[TestClient]:
    with TestClient(create_app(staging.settings)) as test_client:
        yield test_client


@pytest.fixture
def fresh_staging(staging: Staging, tmp_path: Path) -> Staging:
    """A private copy of the staging databases (same source) for tests that start syncs."""
    shutil.copytree(staging.settings.output.directory, tmp_path / "staging")
    source = staging.settings.source.url.removeprefix("sqlite:///")
    return Staging(
        make_settings(Path(source), tmp_path / "staging"), staging.xss_key, staging.pending_keys, staging.broken_keys
    )
